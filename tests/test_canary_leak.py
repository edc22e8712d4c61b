"""The canary leak test: known personal values go into Koha, the nightly DAG runs end to
end, and not one of them may turn up in anything the run leaves behind.

Artifacts searched (``leak_scan``): the warehouse (every cell, and the raw bytes of
the file and its -wal), PATRON_PRIVACY_HOME outside the Koha source itself (exports,
keys, ...), everything under AIRFLOW_HOME (task logs, config, the metadata DB's raw
bytes), every cell of every table of the Airflow metadata DB (XCom, rendered fields,
dag_run conf, ...), the output of ``airflow dags test`` (where ``dags test`` writes the
task logs), and stdout/stderr of ``python -m patron_privacy enforce/verify/validate/summary``.

The Koha source is the one place the values may stay: the inside-window rows are
meant to keep them.
"""

from __future__ import annotations

import sqlite3
import zlib
from contextlib import closing
from datetime import date, datetime

import pytest
from koha_builders import add_old_issue, add_patron, make_koha
from leak_scan import digit_forms, files_scanned, scan_sqlite, scan_text, scan_tree
from nightly_harness import (
    koha_engine,
    migrate_template,
    new_stack,
    run_cli,
    run_nightly,
    warehouse_rows,
    write_keys,
)
from patron_privacy.sources.koha import schema
from sqlalchemy import insert

T = schema.metadata.tables
AS_OF = "2026-11-30"
OLD, NEW = 20, 21  # OLD: card expired 2021, every row past its window; NEW: active patron

OLD_PATRON = {
    "surname": "Zqxcanaryoldsurname",
    "firstname": "Zqxcanaryoldfirst",
    "cardnumber": "29977100000420",
    "userid": "zqxcanary.old.login",
    "email": "zqxcanary.old@example.org",
    "phone": "860-555-7731",
    "address": "4417 Zqxcanaryold Lane",
    "dateofbirth": date(1977, 3, 29),
    "borrowernotes": "Zqxcanaryoldnote: asked staff for books on leaving a spouse",
}
NEW_PATRON = {
    "surname": "Zqxcanarynewsurname",
    "firstname": "Zqxcanarynewfirst",
    "cardnumber": "29977100000538",
    "userid": "zqxcanary.new.login",
    "email": "zqxcanary.new@example.org",
    "phone": "(203) 555-8842",
    "address": "5523 Zqxcanarynew Road",
    "dateofbirth": date(1983, 8, 14),
    "borrowernotes": "Zqxcanarynewnote: reads up on a medical diagnosis",
}
# Free text in activity rows: (table, column) -> value, past-window and inside-window.
ACTIVITY = {
    "search_old_desc": "zqxcanary-search-past: symptoms of early onset dementia",
    "search_old_cgi": "q=zqxcanarycgipast+dementia",
    "search_new_desc": "zqxcanary-search-inside: bankruptcy chapter 7",
    "search_new_cgi": "q=zqxcanarycgiinside+bankruptcy",
    "notice_old_subject": "Zqxcanary overdue notice past",
    "notice_old_content": "Dear Zqxcanaryoldfirst, 'Zqxcanarytitlepast' is overdue",
    "notice_new_subject": "Zqxcanary hold notice inside",
    "notice_new_content": "Dear Zqxcanarynewfirst, 'Zqxcanarytitleinside' is waiting",
    "log_old_info": "zqxcanary-log-past changed address of Zqxcanaryoldsurname",
    "log_new_info": "zqxcanary-log-inside changed phone of Zqxcanarynewsurname",
    "note_old": "Zqxcanary loan note past: returned with a letter inside",
    "note_new": "Zqxcanary loan note inside: patron asked to hold a second copy",
    "attribute_old": "Zqxcanary attribute past: Riverside High",
    "attribute_new": "Zqxcanary attribute inside: Oak Hill Middle",
    "housebound_old": "Zqxcanary housebound past: oxygen tank, knock loudly",
    "list_old": "Zqxcanary list past: leaving my marriage",
}


def _date_forms(d: date) -> list[str]:
    return [d.isoformat(), d.strftime("%Y%m%d"), d.strftime("%m/%d/%Y")]


def literal_values() -> list[str]:
    """Every canary exactly as written into Koha."""
    out = []
    for patron in (OLD_PATRON, NEW_PATRON):
        out += [v.isoformat() if isinstance(v, date) else v for v in patron.values()]
    return out + list(ACTIVITY.values())


def needles() -> list[str]:
    """Every form a canary could take in an artifact."""
    out = ["zqxcanary"]  # the common stem: any fragment of any canary
    for patron in (OLD_PATRON, NEW_PATRON):
        for key, value in patron.items():
            if isinstance(value, date):
                out += _date_forms(value)
            elif key in ("phone", "cardnumber"):
                out += digit_forms(value)
            else:
                out.append(value)
    out += ACTIVITY.values()
    return list(dict.fromkeys(out))


def seed_koha(stack) -> None:
    engine = koha_engine(stack)
    make_koha(engine)
    with engine.begin() as c:
        add_patron(c, OLD, dateexpiry=date(2021, 6, 30), **OLD_PATRON)
        add_patron(c, NEW, dateexpiry=date(2030, 1, 1), **NEW_PATRON)
        # returned_loans (P30D): cutoff 2026-10-31.
        add_old_issue(c, 301, OLD, datetime(2026, 9, 1, 11, 0), note=ACTIVITY["note_old"])
        add_old_issue(c, 302, NEW, datetime(2026, 8, 1, 11, 0), item=2, note=ACTIVITY["note_old"])
        # Inside the window, and fresh enough for validation (at most 7 days before as-of).
        add_old_issue(c, 303, NEW, datetime(2026, 11, 27, 11, 0), item=3, note=ACTIVITY["note_new"])
        # opac_search_history (P1D): cutoff 2026-11-29 00:00.
        c.execute(
            insert(T["search_history"]),
            [
                {
                    "userid": OLD,
                    "sessionid": "zz1",
                    "query_desc": ACTIVITY["search_old_desc"],
                    "query_cgi": ACTIVITY["search_old_cgi"],
                    "total": 4,
                    "time": datetime(2026, 11, 1, 14, 0),
                },
                {
                    "userid": NEW,
                    "sessionid": "zz2",
                    "query_desc": ACTIVITY["search_old_desc"],
                    "query_cgi": ACTIVITY["search_old_cgi"],
                    "total": 4,
                    "time": datetime(2026, 10, 1, 14, 0),
                },
                {
                    "userid": NEW,
                    "sessionid": "zz3",
                    "query_desc": ACTIVITY["search_new_desc"],
                    "query_cgi": ACTIVITY["search_new_cgi"],
                    "total": 2,
                    "time": datetime(2026, 11, 29, 15, 0),
                },
            ],
        )
        # notices (P30D, delete).
        c.execute(
            insert(T["message_queue"]),
            [
                {
                    "borrowernumber": OLD,
                    "subject": ACTIVITY["notice_old_subject"],
                    "content": ACTIVITY["notice_old_content"],
                    "to_address": OLD_PATRON["email"],
                    "message_transport_type": "email",
                    "status": "sent",
                    "time_queued": datetime(2026, 9, 2, 8, 0),
                },
                {
                    "borrowernumber": NEW,
                    "subject": ACTIVITY["notice_new_subject"],
                    "content": ACTIVITY["notice_new_content"],
                    "to_address": NEW_PATRON["email"],
                    "message_transport_type": "email",
                    "status": "sent",
                    "time_queued": datetime(2026, 11, 25, 8, 0),
                },
            ],
        )
        # Registration extras go with the registration: OLD's once expired_patrons has
        # anonymized it in this run, NEW's stay.
        c.execute(
            insert(T["borrower_attributes"]),
            [
                {"borrowernumber": OLD, "code": "SCHOOL", "attribute": ACTIVITY["attribute_old"]},
                {"borrowernumber": NEW, "code": "SCHOOL", "attribute": ACTIVITY["attribute_new"]},
            ],
        )
        c.execute(
            insert(T["housebound_profile"]),
            [
                {
                    "borrowernumber": OLD,
                    "day": "monday",
                    "frequency": "every_week",
                    "notes": ACTIVITY["housebound_old"],
                }
            ],
        )
        c.execute(
            insert(T["virtualshelves"]),
            [
                {
                    "shelfname": ACTIVITY["list_old"],
                    "owner": OLD,
                    "created_on": datetime(2020, 5, 1, 12, 0),
                }
            ],
        )
        # patron_action_logs (P180D, delete): cutoff 2026-06-03.
        c.execute(
            insert(T["action_logs"]),
            [
                {
                    "timestamp": datetime(2026, 1, 15, 10, 0),
                    "user": 2,
                    "module": "MEMBERS",
                    "action": "MODIFY",
                    "object": OLD,
                    "info": ACTIVITY["log_old_info"],
                    "interface": "intranet",
                },
                {
                    "timestamp": datetime(2026, 10, 1, 10, 0),
                    "user": 2,
                    "module": "MEMBERS",
                    "action": "MODIFY",
                    "object": NEW,
                    "info": ACTIVITY["log_new_info"],
                    "interface": "intranet",
                },
            ],
        )
    engine.dispose()
    write_keys(stack)


@pytest.fixture(scope="module")
def airflow_template(tmp_path_factory):
    return migrate_template(tmp_path_factory.mktemp("airflow-template"))


@pytest.mark.airflow
@pytest.mark.xdist_group("airflow_e2e")
def test_no_canary_reaches_any_artifact_of_a_nightly_run(tmp_path, airflow_template):
    stack = new_stack(tmp_path, airflow_template)
    seed_koha(stack)
    # The seed is really there, in the exact forms searched for: a scan that finds
    # nothing below is meaningful only because this one finds everything.
    seeded = {f.needle for f in scan_sqlite(stack.koha_db, literal_values())}
    assert seeded == set(literal_values())

    run = run_nightly(stack, {"dry_run": False, "as_of": AS_OF})
    assert run.returncode == 0 and run.state == "success", run.describe()

    # The run really worked on the canary rows (a run that did nothing leaks nothing).
    audit = {
        r["category"]: r
        for r in warehouse_rows(stack, "retention_audit")
        if r["run_id"] == run.run_id and r["mode"] == "enforce"
    }
    changed = {
        c: audit[c]["changed"]
        for c in (
            "returned_loans",
            "opac_search_history",
            "notices",
            "patron_action_logs",
            "expired_patrons",
            "patron_attributes",
            "housebound_profiles",
            "patron_reading_lists",
        )
    }
    assert changed == {
        "returned_loans": 2,
        "opac_search_history": 2,
        "notices": 1,
        "patron_action_logs": 1,
        "expired_patrons": 1,
        "patron_attributes": 1,
        "housebound_profiles": 1,
        "patron_reading_lists": 1,
    }, run.describe()
    assert len(warehouse_rows(stack, "circulation_facts")) == 3
    with closing(sqlite3.connect(stack.airflow_db)) as c:
        xcoms = c.execute("SELECT count(*) FROM xcom WHERE run_id = ?", (run.run_id,)).fetchone()[0]
    assert xcoms > 0
    assert "returned_loans" in run.output  # the task logs are in the captured output

    cli = {
        "enforce": run_cli(stack, "-v", "enforce", "--source", "koha", "--as-of", AS_OF, "--json"),
        "verify": run_cli(stack, "-v", "verify", "--source", "koha", "--as-of", AS_OF),
        "validate": run_cli(
            stack, "-v", "validate", "--source", "koha", "--as-of", AS_OF, "--json"
        ),
        "summary": run_cli(stack, "summary"),
    }
    for name, proc in cli.items():
        assert proc.returncode == 0, f"{name}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"

    found = []
    found += scan_sqlite(stack.warehouse_db, needles())
    found += scan_sqlite(stack.airflow_db, needles())
    found += scan_tree(stack.airflow_home, needles())  # logs/ recursively, cfg, raw DB bytes
    found += scan_tree(stack.pp_home, needles(), skip=[stack.koha_db.parent])
    found += scan_tree(stack.pp_home / "exports", needles())
    found += scan_text(run.stdout, needles(), "airflow dags test stdout (task logs)")
    found += scan_text(run.stderr, needles(), "airflow dags test stderr (task logs)")
    for name, proc in cli.items():
        found += scan_text(proc.stdout, needles(), f"patron_privacy {name} stdout")
        found += scan_text(proc.stderr, needles(), f"patron_privacy {name} stderr")
    assert not found, "personal values leaked:\n" + "\n".join(str(f) for f in found)


# --- the scanner can fail: each kind of scan finds a canary planted on purpose ----------


def test_scanner_finds_a_canary_planted_in_a_log_file(tmp_path):
    logs = tmp_path / "airflow" / "logs" / "dag_id=x" / "run_id=y" / "task_id=z"
    logs.mkdir(parents=True)
    (logs / "attempt=1.log").write_text(f"INFO matched patron {OLD_PATRON['surname'].upper()}\n")
    (logs / "attempt=2.log").write_text("INFO counts only\n")
    found = scan_tree(tmp_path / "airflow", needles())
    assert files_scanned(tmp_path / "airflow") == 2
    assert {(f.where.rsplit("/", 1)[-1], f.needle) for f in found} == {
        ("attempt=1.log", "zqxcanary"),
        ("attempt=1.log", OLD_PATRON["surname"]),
    }


def test_scanner_finds_digit_and_date_forms_in_text():
    text = "sms to 8605557731 for card 29977100000420, born 1977-03-29"
    found = {f.needle for f in scan_text(text, needles())}
    assert found == {"8605557731", "29977100000420", "1977-03-29"}
    assert scan_text("nothing personal here: 16 rows anonymized", needles()) == []


def test_scanner_finds_canaries_in_sqlite_cells_compressed_blobs_and_raw_bytes(tmp_path):
    db = tmp_path / "planted.db"
    with closing(sqlite3.connect(db)) as c:
        c.execute("CREATE TABLE xcom (key TEXT, value BLOB)")
        c.execute("CREATE TABLE other (n INTEGER, note TEXT)")
        c.execute("INSERT INTO xcom VALUES ('plain', 'counts only')")
        c.execute(
            "INSERT INTO xcom VALUES ('packed', ?)",
            (zlib.compress(f'{{"email": "{NEW_PATRON["email"]}"}}'.encode()),),
        )
        c.execute("INSERT INTO other VALUES (1, ?)", (ACTIVITY["log_new_info"],))
        c.commit()
    found = scan_sqlite(db, needles())
    cells = {(f.where, f.needle) for f in found if "raw bytes" not in f.where}
    assert ("planted.db:xcom.value", NEW_PATRON["email"]) in cells  # found only once inflated
    assert ("planted.db:other.note", ACTIVITY["log_new_info"]) in cells
    assert any("raw bytes" in f.where and f.needle == ACTIVITY["log_new_info"] for f in found)
