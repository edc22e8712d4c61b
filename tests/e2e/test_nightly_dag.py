"""The nightly Koha DAG end to end: ``airflow dags test`` on SQLite, as ``make demo`` runs it.

Every row of the Koha state is placed by hand (``koha_builders``), so each
assertion names the exact records that must change and those that must not.
The Airflow metadata DB is migrated once per module and copied per test.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import date, datetime

import pytest
from koha_builders import ANON, add_fine, add_old_issue, add_patron, make_koha
from nightly_harness import (
    koha_engine,
    migrate_template,
    new_stack,
    run_nightly,
    snapshot,
    warehouse_rows,
    write_keys,
)
from patron_privacy.policy import load_policy
from patron_privacy.sources.koha import schema
from sqlalchemy import insert

pytestmark = [pytest.mark.airflow, pytest.mark.xdist_group("airflow_e2e")]

AS_OF = "2026-11-30"
T = schema.metadata.tables

# returned_loans (window P30D, as of 2026-11-30 00:00 local): the cutoff is 2026-10-31 00:00.
PAST_LOANS = {201: 10, 202: 10, 206: 10}  # issue_id -> borrowernumber before the run
INSIDE_LOANS = {203: 10, 207: 10}
KEPT_BY_PRIVACY = {204: 11}  # patron 11 chose to keep their history
KEPT_BY_FINE = {205: 12}  # a fine is still owed on this loan
EXPIRED_PATRON = 13  # card expired 2022-01-01: more than three years before as-of


def build_koha(stack, *, anonymous_patron: int | None = ANON) -> None:
    engine = koha_engine(stack)
    make_koha(engine, anonymous_patron=anonymous_patron)
    with engine.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11, privacy=0)
        add_patron(c, 12)
        add_patron(c, EXPIRED_PATRON, dateexpiry=date(2022, 1, 1))
        add_old_issue(c, 201, 10, datetime(2026, 9, 1, 10, 0))
        add_old_issue(c, 202, 10, datetime(2026, 10, 15, 16, 30), item=2)
        add_old_issue(c, 206, 10, datetime(2026, 10, 30, 23, 59, 59), item=3)  # last past second
        add_old_issue(c, 207, 10, datetime(2026, 10, 31, 0, 0, 0), item=4)  # first inside second
        # The newest return is within validation's freshness window (7 days before as-of).
        add_old_issue(c, 203, 10, datetime(2026, 11, 27, 12, 0), item=5)
        add_old_issue(c, 204, 11, datetime(2026, 9, 1, 10, 0), item=6)
        add_old_issue(c, 205, 12, datetime(2026, 8, 1, 10, 0), item=7)
        add_fine(c, 1, 12, 205, 1.5, datetime(2026, 8, 2))
        # opac_search_history (P1D, delete): cutoff 2026-11-29 00:00.
        c.execute(
            insert(T["search_history"]),
            [
                {
                    "id": 1,
                    "userid": 10,
                    "sessionid": "s1",
                    "query_desc": "old search",
                    "query_cgi": "q=old",
                    "total": 3,
                    "time": datetime(2026, 11, 1, 9, 0),
                },
                {
                    "id": 2,
                    "userid": 10,
                    "sessionid": "s2",
                    "query_desc": "recent search",
                    "query_cgi": "q=recent",
                    "total": 3,
                    "time": datetime(2026, 11, 29, 9, 0),
                },
            ],
        )
    engine.dispose()
    write_keys(stack)


def loan_owners(stack) -> dict[int, int | None]:
    return dict(koha_rows(stack, "SELECT issue_id, borrowernumber FROM old_issues"))


def koha_rows(stack, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(stack.koha_db)) as c:
        return c.execute(sql).fetchall()


def koha_categories() -> set[str]:
    return {r.category.name for r in load_policy().rules_for("koha")}


@pytest.fixture(scope="module")
def airflow_template(tmp_path_factory):
    return migrate_template(tmp_path_factory.mktemp("airflow-template"))


@pytest.fixture
def stack(tmp_path, airflow_template):
    return new_stack(tmp_path, airflow_template)


def test_enforcing_run_anonymizes_past_window_only_and_audits(stack):
    build_koha(stack)
    before = loan_owners(stack)
    assert before == {**PAST_LOANS, **INSIDE_LOANS, **KEPT_BY_PRIVACY, **KEPT_BY_FINE}

    result = run_nightly(stack, {"dry_run": False, "as_of": AS_OF})

    assert result.returncode == 0, result.describe()
    assert result.state == "success", result.describe()
    # Every task succeeded; the one that fails the run after a failed check was skipped.
    states = dict(result.task_states)
    assert states.pop("fail_the_run_if_a_check_failed") == "skipped", result.describe()
    # SQLite has one writer: nothing fans out per category, the whole-source pass does it all.
    assert states.pop("enforce_one_category") == "skipped", result.describe()
    assert states.pop("read_categories_to_enforce_side_by_side") == "success"
    assert set(states.values()) == {"success"}, result.describe()

    # Koha: past-window loans point at the anonymous patron; everything else is untouched.
    after = loan_owners(stack)
    assert {i: after[i] for i in PAST_LOANS} == dict.fromkeys(PAST_LOANS, ANON)
    assert {i: after[i] for i in INSIDE_LOANS} == INSIDE_LOANS
    assert {i: after[i] for i in KEPT_BY_PRIVACY} == KEPT_BY_PRIVACY
    assert {i: after[i] for i in KEPT_BY_FINE} == KEPT_BY_FINE
    assert koha_rows(stack, "SELECT id FROM search_history") == [(2,)]
    patrons = {
        bn: (surname, card, anonymized)
        for bn, surname, card, anonymized in koha_rows(
            stack, "SELECT borrowernumber, surname, cardnumber, anonymized FROM borrowers"
        )
    }
    assert patrons[EXPIRED_PATRON][2] == 1
    assert not patrons[EXPIRED_PATRON][0] and patrons[EXPIRED_PATRON][1] is None
    assert patrons[10] == ("Surname10", "20000000000010", 0)

    # Warehouse: one audit row per category and mode, for this run, verification clean.
    audit = [r for r in warehouse_rows(stack, "retention_audit") if r["run_id"] == result.run_id]
    assert result.run_id and audit, result.describe()
    categories = koha_categories()
    by_mode: dict[str, dict[str, dict]] = {}
    for r in audit:
        by_mode.setdefault(r["mode"], {})[r["category"]] = r
    assert set(by_mode) == {"enforce", "verify"}
    assert set(by_mode["enforce"]) == categories
    assert set(by_mode["verify"]) == categories
    assert len(audit) == 2 * len(categories)
    assert {c: r["remaining"] for c, r in by_mode["verify"].items()} == dict.fromkeys(categories, 0)
    loans = by_mode["enforce"]["returned_loans"]
    assert loans["changed"] == len(PAST_LOANS)
    assert json.loads(loans["kept_by_blocker"]) == {"keep_history": 1, "outstanding_balance": 1}
    assert by_mode["enforce"]["opac_search_history"]["changed"] == 1
    assert by_mode["enforce"]["expired_patrons"]["changed"] == 1
    assert {r["as_of"][:19] for r in audit} == {"2026-11-30 00:00:00"}

    # Facts: every loan returned before as-of, each recorded while still linked.
    facts = warehouse_rows(stack, "circulation_facts")
    assert len(facts) == len(before)
    assert all(f["patron_pseudonym"] for f in facts)


def test_manual_run_defaults_to_dry_run_and_changes_nothing(stack):
    build_koha(stack)
    before = snapshot(stack.koha_db)

    result = run_nightly(stack, {"as_of": AS_OF})  # no dry_run: the param's default applies

    assert result.returncode == 0, result.describe()
    assert result.state == "success", result.describe()
    assert "dry_run" not in (result.conf or {})
    assert snapshot(stack.koha_db) == before

    audit = [r for r in warehouse_rows(stack, "retention_audit") if r["run_id"] == result.run_id]
    modes = {r["mode"] for r in audit}
    assert modes == {"dry_run", "verify"}, audit
    dry = {r["category"]: r for r in audit if r["mode"] == "dry_run"}
    assert set(dry) == koha_categories()
    assert all(r["changed"] == 0 for r in dry.values())
    # The preview counts what an enforcing run would change, and why the rest is kept.
    assert dry["returned_loans"]["remaining"] == len(PAST_LOANS)
    assert json.loads(dry["returned_loans"]["kept_by_blocker"]) == {
        "keep_history": 1,
        "outstanding_balance": 1,
    }
    assert dry["opac_search_history"]["remaining"] == 1
    assert dry["expired_patrons"]["remaining"] == 1
    assert warehouse_rows(stack, "circulation_facts") == []


def test_missing_anonymous_patron_fails_the_run_before_any_change(stack):
    build_koha(stack, anonymous_patron=999)  # AnonymousPatron names no borrower
    before = snapshot(stack.koha_db)

    # retries=False: the failure must be final, not a retry five minutes later.
    result = run_nightly(stack, {"dry_run": False, "as_of": AS_OF}, retries=False)

    assert result.returncode != 0, result.describe()
    assert result.state == "failed", result.describe()
    # The first task to open the run refuses; nothing that changes Koha ever runs.
    assert result.task_states["validate_source_data"] == "failed", result.describe()
    assert result.task_states["record_de_identified_facts"] == "upstream_failed"
    assert result.task_states["enforce_retention_policy"] == "upstream_failed"
    assert result.task_states["verify_nothing_past_its_window_identifies"] == "upstream_failed"
    assert "the anonymous patron 999 does not exist in borrowers" in result.output
    assert snapshot(stack.koha_db) == before
    if stack.warehouse_db.exists():
        assert warehouse_rows(stack, "circulation_facts") == []
        # The audit still records the run: every rule, marked as not run.
        audit = warehouse_rows(stack, "retention_audit")
        assert audit and all(r["changed"] == 0 and r["error"] for r in audit)
