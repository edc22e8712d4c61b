"""Validation on a real MariaDB: zero dates (which only MariaDB/MySQL store), partial zero
dates, and Koha's case-insensitive codes. Each zero date fails validation by name, and
``enforce`` afterwards changes nothing."""

from __future__ import annotations

import logging

import pytest
from koha_builders import ANON, T
from koha_validation_builders import (
    AS_OF_TEXT,
    drop_new_log_handlers,
    good_koha,
    snapshot_engine,
)
from patron_privacy import connections
from patron_privacy.cli import main
from patron_privacy.facts import new_key_file
from patron_privacy.validation import ZERO_DATES
from sqlalchemy import select, text

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def log_handlers_of_this_test_only():
    before = list(logging.root.handlers)
    yield
    drop_new_log_handlers(before)


@pytest.fixture
def koha_maria(mariadb_url, home, monkeypatch):
    eng = connections.engine_for_url(mariadb_url)
    good_koha(eng)
    monkeypatch.setenv("AIRFLOW_CONN_KOHA_DB", mariadb_url.replace("mysql+pymysql", "mysql"))
    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2018, 2028)])
    yield eng
    eng.dispose()


def _zero(eng, statement: str) -> None:
    with eng.begin() as c:
        c.execute(text("SET SESSION sql_mode = ''"))  # what lets zero dates into Koha
        c.execute(text(statement))


ZERO_DATE_CASES = [
    (
        "old_issues.returndate",
        "UPDATE old_issues SET returndate = '0000-00-00 00:00:00' WHERE issue_id = 2",
    ),
    ("old_issues.issuedate", "UPDATE old_issues SET issuedate = '2024-00-15 10:00:00'"),
    (
        "borrowers.dateexpiry",
        "UPDATE borrowers SET dateexpiry = '0000-00-00' WHERE borrowernumber = 10",
    ),
    ("borrowers.dateenrolled", "UPDATE borrowers SET dateenrolled = '2019-04-00'"),
    ("statistics.datetime", "UPDATE statistics SET datetime = '0000-00-00 00:00:00' LIMIT 1"),
    ("accountlines.date", "UPDATE accountlines SET date = '0000-00-00 00:00:00'"),
    ("search_history.time", "UPDATE search_history SET time = '0000-00-00 00:00:00'"),
]


def test_good_koha_passes_on_mariadb(koha_maria, capsys):
    assert main(["validate", "--source", "koha", "--as-of", AS_OF_TEXT]) == 0
    assert "validation passed" in capsys.readouterr().out


@pytest.mark.parametrize("where,statement", ZERO_DATE_CASES, ids=[c[0] for c in ZERO_DATE_CASES])
def test_zero_dates_fail_validation_and_nothing_changes(koha_maria, capsys, where, statement):
    _zero(koha_maria, statement)
    before = snapshot_engine(koha_maria)
    assert main(["validate", "--source", "koha", "--as-of", AS_OF_TEXT]) == 1
    err = capsys.readouterr().err
    assert f"koha.{where}: {ZERO_DATES}" in err, err
    for value in ("0000-00-00", "2024-00-15", "2019-04-00"):
        assert value not in err
    assert main(["enforce", "--source", "koha", "--as-of", AS_OF_TEXT]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert snapshot_engine(koha_maria) == before


def test_codes_compare_as_koha_does_on_mariadb(koha_maria, capsys):
    # utf8mb4_unicode_ci: 'main ' is the MAIN branch; the foreign keys agree.
    with koha_maria.begin() as c:
        c.execute(text("UPDATE old_issues SET branchcode = 'main ' WHERE issue_id = 2"))
    assert main(["validate", "--source", "koha", "--as-of", AS_OF_TEXT]) == 0
    assert main(["enforce", "--source", "koha", "--as-of", AS_OF_TEXT]) == 0
    with koha_maria.connect() as c:
        oi = T["old_issues"]
        assert c.execute(select(oi.c.borrowernumber).where(oi.c.issue_id == 1)).scalar() == ANON
