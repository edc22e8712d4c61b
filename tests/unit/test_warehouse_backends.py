"""Warehouse behaviour the pipeline relies on, on SQLite (the demo) and PostgreSQL
(production): facts written once however often a run repeats (and counted honestly),
the audit written and told back, validation history read newest first, one row per
day, and the differential-privacy ledger summed per year."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pytest
from patron_privacy import audit_report, connections, pipeline
from patron_privacy.facts import Pseudonymizer, loan_fact, write_circulation_facts
from patron_privacy.release import dp
from patron_privacy.release.tables import ReleaseInputError
from patron_privacy.warehouse import (
    create_warehouse,
    dp_budget_ledger,
    retention_audit,
    validation_row_counts,
    write_validation,
)
from sqlalchemy import func, inspect, select


@pytest.fixture
def wh(warehouse_db):
    eng = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(eng)
    yield eng
    eng.dispose()


def test_facts_are_written_once_and_counted_honestly(wh):
    p = Pseudonymizer({"2026": "k" * 64})
    rows = [
        loan_fact(
            p, "koha", loan_id=i, patron_id=10, anonymous_patron=1,
            issued=datetime(2026, 3, i), returned=date(2026, 3, 20), birth=date(1980, 1, 1),
            branch="MAIN",
        )
        for i in (1, 2, 3)
    ]  # fmt: skip
    with wh.begin() as c:
        assert write_circulation_facts(c, rows + rows[:1]) == 3
    with wh.begin() as c:
        assert write_circulation_facts(c, rows) == 0, "a rerun writes nothing and says so"
    with wh.begin() as c:
        more = [{**rows[0], "fact_key": "f" * 64}, *rows[1:]]
        assert write_circulation_facts(c, more) == 1


def test_audit_of_a_run_that_could_not_open_its_source_is_written_and_told(wh):
    as_of = datetime(2026, 11, 30)
    n = pipeline.record_outcome(
        "koha", as_of, "run-1", [], failure="source koha: table old_issues is missing\nmore"
    )
    with wh.connect() as c:
        rows = c.execute(select(retention_audit).where(retention_audit.c.run_id == "run-1")).all()
    assert n == len(rows) > 0
    assert {r.error for r in rows} == {"did not run: source koha: table old_issues is missing"}
    assert all(r.as_of == as_of for r in rows)
    text, _ = audit_report.summary("run-1")
    assert text.startswith("Run run-1 — as of 2026-11-30 00:00:00")


@dataclass
class Check:
    dataset: str
    check: str
    element_count: int
    passed: bool = True
    unexpected_count: int = 0
    column: str | None = None


def test_validation_history_is_newest_first_one_per_day(wh):
    def record(run_id: str, day: int, rows: int, passed: bool = True, hour: int = 2) -> None:
        with wh.begin() as c:
            write_validation(
                c,
                run_id=run_id,
                source="koha",
                as_of=datetime(2026, 11, day),
                results=[Check("old_issues", "volume", rows), Check("old_issues", "x", 1, passed)],
                recorded_at=datetime(2026, 11, day, hour),
            )

    record("r1", 1, 100)
    record("r2", 2, 110)
    record("r2b", 2, 120, hour=5)  # a rerun of the same day: the later one counts
    record("r3", 3, 999, passed=False)  # a failed run is no baseline
    record("r2b", 2, 121, hour=6)  # a retried task replaces its own rows
    with wh.connect() as c:
        got = validation_row_counts(c, "koha", "old_issues", datetime(2026, 11, 4), 5, "volume")
    assert got == [121, 100]


def test_dp_budget_is_summed_per_year(wh):
    dp.record_spend(wh, 2026, "2026-10", 0.5, datetime(2026, 11, 2))
    dp.record_spend(wh, 2026, "2026-11", 0.25, datetime(2026, 12, 2))
    dp.record_spend(wh, 2025, "2025-12", 1.0, datetime(2026, 1, 2))
    assert dp.spent(wh, 2026) == pytest.approx(0.75)
    with wh.connect() as c:
        assert c.execute(select(func.count()).select_from(retention_audit)).scalar() == 0


def test_a_warehouse_without_the_budget_ledger_is_refused_not_patched(wh):
    with wh.begin() as c:
        dp_budget_ledger.drop(c)
    with pytest.raises(ReleaseInputError, match="no table dp_budget_ledger.*warehouse upgrade"):
        dp.check_budget(wh, 2026, 0.5, 1.0)
    assert not inspect(wh).has_table("dp_budget_ledger")  # left to the migrations
