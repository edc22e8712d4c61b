"""Libki's Great Expectations suite: passes on the demo's Libki, fails closed — naming the
check, the column and the count, never a value — on bad input, and a failed validation
stops enforcement on Libki."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import pytest
from libki_builders import AS_OF, add_session_rows, add_stat, add_user, make_libki
from patron_privacy import connections, validation
from patron_privacy.cli import main
from patron_privacy.facts import new_key_file
from patron_privacy.sources.libki import schema
from patron_privacy.sources.libki.expectations import SUITE
from patron_privacy.sources.libki.synthetic import build_libki
from patron_privacy.validation import (
    BETWEEN,
    FRESH,
    IN_SET,
    NOT_NULL,
    REFERENCE,
    CheckContext,
    Thresholds,
)
from sqlalchemy import create_engine, insert, select, text

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def only_this_tests_log_handlers():
    before = list(logging.root.handlers)
    yield
    for h in list(logging.root.handlers):
        if h not in before:
            logging.root.removeHandler(h)


def _cc() -> CheckContext:
    return CheckContext("libki", AS_OF, Thresholds())


def _failed(report) -> set[tuple[str, str, str | None]]:
    return {(r.dataset, r.check, r.column) for r in report.failed}


@pytest.fixture
def good(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path / 'libki.db'}")
    make_libki(eng)
    with eng.begin() as c:
        u = add_user(c, 10)
        add_session_rows(c, 1, u, AS_OF - DAY, 30)
    return eng


def test_the_suite_is_registered_and_reads_no_personal_column():
    assert validation.suite_for("libki") is SUITE
    for ds in SUITE.datasets:
        personal = set(schema.PERSONAL_COLUMNS.get(ds.name, ()))
        assert not personal & {c.name for c in ds.columns}, ds.name


def test_the_demo_libki_passes(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path / 'demo.db'}")
    build_libki(eng, patrons=60, days=40, seed=3, as_of=date(2026, 11, 30))
    report = validation.validate_source(SUITE, eng, _cc())
    assert report.passed, [r.describe("libki") for r in report.failed]
    assert report.rows["statistics"] > 0 and report.rows["users"] >= 60


def test_bad_input_fails_closed_naming_check_column_and_count(good):
    # Raw SQL with foreign keys off: what a damaged or hand-edited Libki can hold.
    raw = create_engine(f"sqlite:///{good.url.database}")
    with raw.begin() as c:
        add_stat(c, 50, "29970000000010", AS_OF - 2 * DAY, action="TELEPORT")  # unknown action
        add_stat(c, 51, "29970000000010", AS_OF + 30 * DAY)  # a login next month
        add_stat(c, 52, "29970000000010", AS_OF - DAY, location="ATLANTIS")  # unknown branch
        c.execute(text("INSERT INTO statistics (id, username, action) VALUES (53, 'x', 'LOGIN')"))
        c.execute(
            insert(schema.reservations),
            [{"id": 1, "client_id": 1, "user_id": 999, "end_time": AS_OF}],
        )
        c.execute(text("UPDATE users SET is_guest = 'Maybe' WHERE id = 10"))
    raw.dispose()
    report = validation.validate_source(SUITE, good, _cc())
    assert not report.passed
    assert _failed(report) >= {
        ("statistics", IN_SET, "action"),
        ("statistics", BETWEEN, "created_on"),
        ("statistics", IN_SET, "client_location"),
        ("statistics", NOT_NULL, "created_on"),
        ("reservations", REFERENCE, "user_id"),
        ("users", IN_SET, "is_guest"),
    }
    text_out = json.dumps(report.as_dict(), default=str)
    for value in ("TELEPORT", "ATLANTIS", "Maybe", "29970000000010"):
        assert value not in text_out
    lines = validation.failure_lines(report.as_dict())
    assert "libki.statistics.action: expect_column_values_to_be_in_set" in "\n".join(lines)


def test_a_stale_copy_fails_freshness(tmp_path):
    # A Libki whose newest statistics row is a month old: a stale copy, not a quiet library.
    eng = connections.engine_for_url(f"sqlite:///{tmp_path / 'stale.db'}")
    make_libki(eng)
    with eng.begin() as c:
        u = add_user(c, 10)
        add_session_rows(c, 1, u, AS_OF - 30 * DAY, 30)
    report = validation.validate_source(SUITE, eng, _cc())
    assert _failed(report) == {("statistics", FRESH, "created_on")}


def test_failed_validation_stops_enforcement_on_libki(home, capsys):
    path = home / "sources" / "libki.db"
    eng = connections.engine_for_url(f"sqlite:///{path}")
    make_libki(eng)
    with eng.begin() as c:
        u = add_user(c, 10)
        add_session_rows(c, 1, u, AS_OF - 3 * DAY, 30)
        add_stat(c, 3, u, AS_OF - 2 * DAY, action="TELEPORT")
    new_key_file(home / "pseudonym_keys.json", ["2026"])
    rc = main(["enforce", "--source", "libki", "--as-of", "2026-11-30", "--run-id", "bad"])
    err = capsys.readouterr().err
    assert rc == 1 and "nothing was changed" in err
    assert "libki.statistics.action: expect_column_values_to_be_in_set" in err
    assert "TELEPORT" not in err and u not in err
    with eng.connect() as c:
        assert set(c.execute(select(schema.statistics.c.username)).scalars()) == {u}
