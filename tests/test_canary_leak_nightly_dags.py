"""The canary leak test for the nightly DAGs of Libki, the sign-up exports and LibCal.

Known personal values go into each source (Libki usernames, names, a printed document;
sign-up exports with card numbers, names, phones, among them a malformed row and a
formula-injection cell that the run must set aside; LibCal registrants), each source's
nightly DAG runs end to end through ``airflow dags test`` on the embedded defaults, and
not one value may turn up in anything the runs leave behind: the warehouse (every
cell, raw bytes), the Airflow metadata DB (XCom, task instances, logs tables), the
task logs under AIRFLOW_HOME, the run's stdout/stderr, PATRON_PRIVACY_HOME outside
the sources themselves (rows inside their window keep their values there, and a file
set aside is left exactly as it was), and every alert the DAGs' failure callbacks send,
as received by an SMTP server and a webhook endpoint on 127.0.0.1.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from email.message import EmailMessage

import pytest
from alert_servers import smtp_server
from leak_scan import digit_forms, scan_bytes, scan_sqlite, scan_text, scan_tree
from nightly_harness import (
    Stack,
    migrate_template,
    new_stack,
    run_nightly,
    warehouse_rows,
    write_keys,
)
from test_canary_leak_libki_libcal import (
    Webhook,
    libcal_values,
    literal_values,
    seed_libcal,
    seed_libki,
)

pytestmark = [pytest.mark.airflow, pytest.mark.xdist_group("airflow_e2e")]

AS_OF = "2026-11-30"
HEADER = "Reservation Id,Card Number,Patron Name,Phone,Computer,Branch,Start Time,End Time\n"
SIGNUP_PEOPLE = {
    "card": "29977300003141",
    "name": "Zqxcanarysignupname",
    "phone": "(860) 555-2718",
}
BAD_ROW_PEOPLE = {"card": "29977300005926", "name": "Zqxcanarybadrowname"}
FORMULA = '=HYPERLINK("http://zqxcanary.example/x","Zqxcanaryformula")'


def signup_values() -> list[str]:
    return [*SIGNUP_PEOPLE.values(), *BAD_ROW_PEOPLE.values(), FORMULA]


def needles() -> list[str]:
    out = ["zqxcanary"]
    for value in literal_values() + libcal_values() + signup_values():
        out += digit_forms(value)
    return list(dict.fromkeys(out))


def seed_signups(stack) -> dict[str, bytes]:
    """Exports as the shipped policy maps them; returns the two files that must be set
    aside, with their bytes (they must be left exactly as they are)."""
    folder = stack.pp_home / "sources" / "signup_exports"
    folder.mkdir(parents=True)
    p = SIGNUP_PEOPLE
    (folder / "pc-signups-2026-11-28.csv").write_text(
        HEADER + f'1,{p["card"]},{p["name"]},"{p["phone"]}",MAIN-PC01,MAIN,11/28/2026 10:00,'
        "11/28/2026 10:30\n"
        + f'2,{p["card"]},{p["name"]},"{p["phone"]}",MAIN-PC02,MAIN,11/29/2026 15:00,'
        "11/29/2026 15:45\n"
    )
    b = BAD_ROW_PEOPLE
    bad = {
        # line 3: a row cut short (four fields where the header has eight)
        "pc-signups-2026-11-27.csv": (
            HEADER
            + "3,29977300000011,Other Person,,MAIN-PC01,MAIN,11/27/2026 09:00,11/27/2026 09:20\n"
            + f"4,{b['card']},{b['name']},MAIN-PC03\n"
        ).encode(),
        # line 2: a cell a spreadsheet would run
        "pc-signups-2026-11-26.csv": (
            HEADER
            + f'5,{b["card"]},"{FORMULA}",,MAIN-PC01,MAIN,11/26/2026 09:00,11/26/2026 09:20\n'
        ).encode(),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return bad


@pytest.fixture(scope="module")
def airflow_template(tmp_path_factory):
    return migrate_template(tmp_path_factory.mktemp("airflow-template"))


def _scan_emails(emails) -> list:
    found = []
    for i, (_, msg) in enumerate(emails):
        # Decoded, part by part: a body sent base64 or quoted-printable hides its bytes.
        parts = [str(v) for v in msg.values()]
        parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
        found += scan_text("\n".join(parts), needles(), f"alert email #{i + 1}")
    return found


def _scan(stack, runs, emails=(), posted=()) -> list:
    found = _scan_emails(emails)
    for i, body in enumerate(posted):
        found += scan_bytes(body, needles(), f"alert #{i + 1} posted to the webhook")
    found += scan_sqlite(stack.warehouse_db, needles())
    found += scan_sqlite(stack.airflow_db, needles())
    found += scan_tree(stack.airflow_home, needles())  # task logs, cfg, raw DB bytes
    found += scan_tree(stack.pp_home, needles(), skip=[stack.pp_home / "sources"])
    for name, run in runs.items():
        found += scan_text(run.stdout, needles(), f"{name}: airflow dags test stdout")
        found += scan_text(run.stderr, needles(), f"{name}: airflow dags test stderr")
    return found


def test_no_canary_reaches_any_artifact_of_the_libki_signups_and_libcal_dags(
    tmp_path, airflow_template, monkeypatch
):
    stack = new_stack(tmp_path, airflow_template)
    seed_libki(stack)
    seed_libcal(stack)
    bad_files = seed_signups(stack)
    write_keys(stack)
    conf = {"dry_run": False, "as_of": AS_OF}

    hook = Webhook()
    with smtp_server() as (inbox, smtp_conn):
        env = {
            **stack.env,
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_conn,
            "AIRFLOW_CONN_ALERTS_WEBHOOK": hook.conn,
        }
        monkeypatch.setattr(Stack, "env", property(lambda self: env))
        try:
            runs = {
                name: run_nightly(stack, conf, retries=False, dag_id=f"{name}_nightly_retention")
                for name in ("libki", "signups", "libcal")
            }
        finally:
            hook.stop()
        emails = inbox.messages()

    # The runs really worked on the canary rows (a run that did nothing leaks nothing).
    libki = runs["libki"]
    assert libki.state == "success", libki.describe()
    audit = warehouse_rows(stack, "retention_audit")
    by_run = {
        name: {(r["category"], r["mode"]): r for r in audit if r["run_id"] == run.run_id}
        for name, run in runs.items()
    }
    assert by_run["libki"][("session_statistics_link", "enforce")]["changed"] == 6
    assert by_run["libki"][("inactive_accounts", "enforce")]["changed"] == 1
    assert by_run["libki"][("print_files", "enforce")]["changed"] == 1

    # Sign-ups: the good file enforced, both bad files set aside and named by file and
    # line, and the run ends failed so that a person looks at them.
    signups = runs["signups"]
    assert signups.state == "failed", signups.describe()
    assert signups.task_states["enforce_retention_policy"] == "success", signups.describe()
    assert signups.task_states["verify_nothing_past_its_window_identifies"] == "failed"
    assert "pc-signups-2026-11-27.csv line 3" in signups.output
    assert "pc-signups-2026-11-26.csv line 2" in signups.output
    assert by_run["signups"][("signup_identities", "enforce")]["changed"] == 1
    folder = stack.pp_home / "sources" / "signup_exports"
    for name, data in bad_files.items():
        assert (folder / name).read_bytes() == data, f"{name} was changed"
    good = (folder / "pc-signups-2026-11-28.csv").read_text()
    assert SIGNUP_PEOPLE["card"] in good  # the 11-29 row is inside its window: kept whole
    assert good.count(SIGNUP_PEOPLE["card"]) == 1  # the 11-28 row's card number is gone
    # The verify task's failure callback told a person, naming the files and lines.
    subjects = [msg["Subject"] for _, msg in emails]
    aside = [msg for _, msg in emails if "signups: input set aside" in msg["Subject"]]
    assert len(aside) == 1, subjects
    body = aside[0].get_body(preferencelist=("plain", "html")).get_content()
    assert "pc-signups-2026-11-27.csv line 3" in body, body
    assert "pc-signups-2026-11-26.csv line 2" in body, body
    assert "run " + signups.run_id in aside[0]["Subject"]
    assert len(hook.bodies) == len(emails), subjects

    # LibCal: facts recorded and the registrations the vendor holds past the window found.
    libcal = runs["libcal"]
    assert libcal.task_states["record_de_identified_facts"] == "success", libcal.describe()
    assert by_run["libcal"][("program_registrations", "verify")]["remaining"] == 2
    assert len(warehouse_rows(stack, "program_facts")) == 2
    assert len(warehouse_rows(stack, "pc_session_facts")) >= 3

    with closing(sqlite3.connect(stack.airflow_db)) as c:
        xcoms = c.execute("SELECT count(*) FROM xcom").fetchone()[0]
        validated = c.execute(
            "SELECT count(*) FROM xcom WHERE key = 'validation' AND task_id = ?",
            ("validate_source_data",),
        ).fetchone()[0]
    assert xcoms > 0 and validated == 3

    found = _scan(stack, runs, emails, hook.bodies)
    assert not found, "personal values leaked:\n" + "\n".join(str(f) for f in found)


def test_the_scan_would_find_a_canary_in_the_task_logs(tmp_path, airflow_template):
    """The scan above can fail: a canary written where task logs live is found."""
    stack = new_stack(tmp_path, airflow_template)
    logs = stack.airflow_home / "logs" / "dag_id=x" / "run_id=y"
    logs.mkdir(parents=True)
    (logs / "attempt=1.log").write_text(f"{datetime(2026, 11, 30)} {SIGNUP_PEOPLE['name']}\n")
    found = scan_tree(stack.airflow_home, needles())
    assert {f.needle for f in found} >= {SIGNUP_PEOPLE["name"]}


def test_the_scan_would_find_a_canary_in_an_alert_email():
    """An alert's body goes base64 or quoted-printable: the scan reads it decoded."""
    msg = EmailMessage()
    msg["Subject"] = "[patron-privacy] signups: input set aside"
    msg.set_content(f"line 3: {BAD_ROW_PEOPLE['name']}", cte="base64")
    assert BAD_ROW_PEOPLE["name"].encode() not in msg.as_bytes()
    found = _scan_emails([(["to@library.example"], msg)])
    assert {f.needle for f in found} >= {BAD_ROW_PEOPLE["name"]}
