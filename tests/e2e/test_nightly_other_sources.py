"""The nightly DAGs of Libki and the sign-up exports end to end: ``airflow dags test`` on
the embedded defaults (SQLite Libki, a drop folder under PATRON_PRIVACY_HOME), as for
Koha in ``test_nightly_dag``. Every row and file is placed by hand, so each assertion
names exactly what must change and what must not. (The enforcing runs of both, with
personal values planted, are in ``tests/test_canary_leak_nightly_dags.py``.)
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta

import pytest
from libki_builders import add_print, add_session_rows, add_user, make_libki
from nightly_harness import (
    migrate_template,
    new_stack,
    run_nightly,
    snapshot,
    warehouse_rows,
    write_keys,
)
from patron_privacy.connections import engine_for_url
from patron_privacy.policy import load_policy

pytestmark = [pytest.mark.airflow, pytest.mark.xdist_group("airflow_e2e")]

AS_OF = "2026-11-30"
T0 = datetime(2026, 11, 30)
DAY = timedelta(days=1)
HEADER = "Reservation Id,Card Number,Patron Name,Phone,Computer,Branch,Start Time,End Time\n"


@pytest.fixture(scope="module")
def airflow_template(tmp_path_factory):
    return migrate_template(tmp_path_factory.mktemp("airflow-template"))


@pytest.fixture
def stack(tmp_path, airflow_template):
    return new_stack(tmp_path, airflow_template)


def libki_db(stack):
    return stack.pp_home / "sources" / "libki.db"


def build_libki(stack) -> None:
    eng = engine_for_url(f"sqlite:///{libki_db(stack)}")
    make_libki(eng)
    with eng.begin() as c:
        name = add_user(c, 10, created=T0 - 400 * DAY)
        add_user(c, 11, created=T0 - 1200 * DAY, updated=T0 - 700 * DAY)  # dormant
        add_session_rows(c, 1, name, T0 - DAY + timedelta(hours=10), 50)  # yesterday
        add_session_rows(c, 3, name, T0 - 120 * DAY, 20)  # past 90 days
        add_print(c, 1, 10, name, T0 - 2 * DAY)
    eng.dispose()
    write_keys(stack)


def libki_rows(stack, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(libki_db(stack))) as c:
        return c.execute(sql).fetchall()


def test_libki_manual_run_defaults_to_dry_run_and_changes_nothing(stack):
    build_libki(stack)
    before = snapshot(libki_db(stack))

    result = run_nightly(stack, {"as_of": AS_OF}, dag_id="libki_nightly_retention")

    assert result.returncode == 0 and result.state == "success", result.describe()
    assert snapshot(libki_db(stack)) == before
    audit = [r for r in warehouse_rows(stack, "retention_audit") if r["run_id"] == result.run_id]
    assert {r["mode"] for r in audit} == {"dry_run", "verify"}
    dry = {r["category"]: r for r in audit if r["mode"] == "dry_run"}
    assert set(dry) == {r.category.name for r in load_policy().rules_for("libki")}
    assert dry["session_statistics"]["remaining"] == 2  # the two rows 120 days old
    assert dry["inactive_accounts"]["remaining"] == 1
    assert all(r["changed"] == 0 for r in dry.values())
    assert warehouse_rows(stack, "pc_session_facts") == []
    # The validation ran first and is on record.
    checks = [r for r in warehouse_rows(stack, "validation_runs") if r["run_id"] == result.run_id]
    assert checks and all(r["passed"] for r in checks)


def test_libki_enforcing_run_changes_past_window_only(stack):
    build_libki(stack)

    result = run_nightly(
        stack, {"dry_run": False, "as_of": AS_OF}, dag_id="libki_nightly_retention"
    )

    assert result.returncode == 0 and result.state == "success", result.describe()
    states = dict(result.task_states)
    assert states.pop("fail_the_run_if_a_check_failed") == "skipped", result.describe()
    # SQLite has one writer: nothing fans out per category, the whole-source pass does it all.
    assert states.pop("enforce_one_category") == "skipped", result.describe()
    assert set(states.values()) == {"success"}, result.describe()
    stats = dict(libki_rows(stack, "SELECT id, username FROM statistics"))
    assert set(stats) == {1, 2}  # the rows 120 days old are gone
    assert stats == {1: None, 2: None}  # yesterday's, kept, without the username
    assert [r[0] for r in libki_rows(stack, "SELECT id FROM users ORDER BY id")] == [1, 10]
    assert libki_rows(stack, "SELECT count(*) FROM print_files") == [(0,)]
    audit = [r for r in warehouse_rows(stack, "retention_audit") if r["run_id"] == result.run_id]
    verify = {r["category"]: r["remaining"] for r in audit if r["mode"] == "verify"}
    assert verify and set(verify.values()) == {0}
    facts = warehouse_rows(stack, "pc_session_facts")
    assert facts and all(f["patron_pseudonym"] for f in facts)


def signup_folder(stack):
    folder = stack.pp_home / "sources" / "signup_exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_signups_stale_exports_fail_validation_and_nothing_changes(stack):
    """Exports that stopped arriving a month ago: freshness fails, no file is touched,
    the audit says the run did not enforce, and the validation failure is on record."""
    write_keys(stack)
    folder = signup_folder(stack)
    (folder / "pc-signups-2026-10-20.csv").write_text(
        HEADER
        + "1,29990000000001,A Person,,MAIN-PC01,MAIN,10/20/2026 10:00,10/20/2026 10:30\n"
        + "2,29990000000002,B Person,,EAST-PC01,EAST,10/21/2026 11:00,10/21/2026 11:30\n"
    )
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    result = run_nightly(
        stack, {"dry_run": False, "as_of": AS_OF}, retries=False, dag_id="signups_nightly_retention"
    )

    assert result.state == "failed", result.describe()
    t = result.task_states
    assert t["validate_source_data"] == "failed", result.describe()
    for task in (
        "record_de_identified_facts",
        "enforce_retention_policy",
        "verify_nothing_past_its_window_identifies",
    ):
        assert t[task] == "upstream_failed", result.describe()
    assert t["write_audit_rows"] == "success", result.describe()
    assert "signups.pc_signups.start: expect_column_max_to_be_between" in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert warehouse_rows(stack, "pc_session_facts") == []
    audit = [r for r in warehouse_rows(stack, "retention_audit") if r["run_id"] == result.run_id]
    assert audit and all(r["changed"] == 0 and r["error"] for r in audit)
    failed = [
        (r["dataset"], r["check_name"])
        for r in warehouse_rows(stack, "validation_runs")
        if r["run_id"] == result.run_id and not r["passed"]
    ]
    assert failed == [("pc_signups", "expect_column_max_to_be_between")]


def test_signups_enforcing_run_strips_and_deletes_past_window(stack):
    write_keys(stack)
    folder = signup_folder(stack)
    (folder / "pc-signups-2026-11-28.csv").write_text(
        HEADER + "1,29990000000001,A Person,860-555-0101,MAIN-PC01,MAIN,11/28/2026 10:00,"
        "11/28/2026 10:30\n"
        + "2,29990000000002,B Person,,MAIN-PC02,MAIN,11/29/2026 15:00,11/29/2026 15:45\n"
    )
    (folder / "pc-signups-2026-07-01.csv").write_text(
        HEADER + "3,29990000000003,C Person,,WEST-PC01,WEST,07/01/2026 09:00,07/01/2026 09:40\n"
    )

    result = run_nightly(
        stack, {"dry_run": False, "as_of": AS_OF}, dag_id="signups_nightly_retention"
    )

    assert result.returncode == 0 and result.state == "success", result.describe()
    assert sorted(p.name for p in folder.iterdir()) == ["pc-signups-2026-11-28.csv"]
    rows = (folder / "pc-signups-2026-11-28.csv").read_text().splitlines()
    assert "29990000000001" not in rows[1] and "A Person" not in rows[1]
    assert "860-555-0101" not in rows[1] and "MAIN-PC01" in rows[1]
    assert "29990000000002" in rows[2] and "B Person" in rows[2]  # inside its window
    facts = warehouse_rows(stack, "pc_session_facts")
    assert len(facts) == 3 and all(f["source"] == "signups" for f in facts)
    audit = [r for r in warehouse_rows(stack, "retention_audit") if r["run_id"] == result.run_id]
    enforce = {r["category"]: r for r in audit if r["mode"] == "enforce"}
    # The July row counts under both rules: past the strip window, and deleted whole.
    assert enforce["signup_identities"]["changed"] == 2
    assert enforce["signup_records"]["changed"] == 1
    verify = {r["category"]: r["remaining"] for r in audit if r["mode"] == "verify"}
    assert verify == {"signup_identities": 0, "signup_records": 0}
