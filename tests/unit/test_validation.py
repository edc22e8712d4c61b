"""The validation mechanism: coercion and its counts, thresholds, volume history, the
warehouse rows, the Koha suite on hand-made and synthetic libraries, and a second,
non-SQL source built from the same parts."""

from __future__ import annotations

import datetime as dt
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from koha_builders import AS_OF
from koha_validation_builders import (
    drop_new_log_handlers,
    good_koha,
    koha_for_cli,
    raw_sql,
    seed_history,
)
from patron_privacy import connections, pipeline, validation
from patron_privacy.policy import load_policy
from patron_privacy.sources.koha.expectations import SUITE
from patron_privacy.sources.koha.synthetic import build_koha
from patron_privacy.validation import (
    BETWEEN,
    EXTRA,
    FRESH,
    IN_SET,
    NOT_NULL,
    READABLE,
    TYPE,
    UNIQUE,
    VOLUME,
    CheckContext,
    CheckResult,
    Col,
    Dataset,
    Extract,
    Suite,
    Thresholds,
)
from patron_privacy.warehouse import create_warehouse, validation_row_counts, validation_runs
from sqlalchemy import select


@pytest.fixture(autouse=True)
def log_handlers_of_this_test_only():
    before = list(logging.root.handlers)
    yield
    drop_new_log_handlers(before)


def cc(**kw) -> CheckContext:
    return CheckContext("koha", AS_OF, Thresholds(**kw), anonymous_patron=1)


# --- coercion ------------------------------------------------------------------------------------


def test_dates_coerce_to_ns_and_count_what_is_not_a_date():
    counts = validation._ReaderCounts()
    raw = pd.Series(
        [
            "2026-11-29 10:00:00.000000",
            "2026-11-29",
            "0000-00-00 00:00:00",
            "2024-00-15 10:00:00",
            "2999-01-01 00:00:00",
            "0000-01-01",
            "now",
            "today",
            "",
            "2026-13-01",
            "20261129",
            "2026-11-29T10:00:00+02:00",
            None,
        ],
        dtype=object,
    ).astype("str")
    typed = validation._coerce_datetime(raw, counts, "d")
    assert typed.dtype == "datetime64[ns]"
    assert typed[0] == pd.Timestamp("2026-11-29 10:00") and typed[1] == pd.Timestamp("2026-11-29")
    assert typed[4] > pd.Timestamp("2262-01-01") - pd.Timedelta(days=1)  # clipped, still "future"
    assert typed[5] < pd.Timestamp("1900-01-01")  # clipped, still "before 1900"
    assert counts.zero_dates["d"] == 2
    assert counts.type_errors["d"] == 6  # now, today, '', month 13, 20261129, a time zone
    assert typed.isna().sum() == 2 + 6 + 1


def test_mixed_datetime_objects_and_mariadb_zero_date_strings():
    counts = validation._ReaderCounts()
    raw = pd.Series(
        [dt.datetime(2026, 11, 29, 8), "0000-00-00 00:00:00", None, dt.date(2026, 1, 1), 5],
        dtype=object,
    )
    typed = validation._coerce_datetime(raw, counts, "d")
    assert typed[0] == pd.Timestamp("2026-11-29 08:00") and typed[3] == pd.Timestamp("2026-01-01")
    assert (counts.zero_dates["d"], counts.type_errors["d"]) == (1, 1)


def test_numbers_and_ids():
    counts = validation._ReaderCounts()
    ids = validation._coerce_number(pd.Series([1, 2, 3]), counts, "a", integral=True)
    assert ids.dtype == "int64" and counts.type_errors["a"] == 0
    mixed = pd.Series([1, "2", "x", 2.5, None, b"7", True], dtype=object)
    out = validation._coerce_number(mixed, counts, "b", integral=True)
    assert out.tolist()[:2] == [1.0, 2.0] and counts.type_errors["b"] == 4
    money = validation._coerce_number(
        pd.Series(["1.50", "0", "ten"], dtype=object), counts, "c", integral=False
    )
    assert money.tolist()[:2] == [1.5, 0.0] and counts.type_errors["c"] == 1


# --- thresholds and volume -----------------------------------------------------------------------


def test_thresholds_from_the_policy_report_every_problem():
    t = Thresholds.from_options(
        {"freshness_days": 2, "volume_max_ratio": 3, "date_floor": "1950-01-01"}
    )
    assert (t.freshness_days, t.volume_max_ratio, t.date_floor) == (2.0, 3.0, dt.date(1950, 1, 1))
    with pytest.raises(validation.ValidationConfigError) as exc:
        Thresholds.from_options(
            {"freshness": 1, "volume_history_runs": 0, "chunk_rows": "many", "date_floor": "x"}
        )
    msg = str(exc.value)
    for fragment in (
        "validation.freshness: unknown",
        "volume_history_runs",
        "chunk_rows",
        "date_floor",
    ):
        assert fragment in msg
    with pytest.raises(validation.ValidationConfigError, match="above"):
        Thresholds.from_options({"volume_min_ratio": 3, "volume_max_ratio": 2})


def test_volume_bounds_from_history():
    ds = Dataset("d", (Col("k", "int", key=True),), expect_rows=True)
    t = Thresholds()
    assert validation.volume_bounds(ds, [], t) == (1, None)
    assert validation.volume_bounds(ds, [100, 100], t) == (1, None)  # too little history yet
    assert validation.volume_bounds(ds, [100, 90, 110, 100], t) == (50, 200)
    # Only the last 7 count: the 8th (a thousand) is gone.
    assert validation.volume_bounds(ds, [10] * 7 + [1000], t) == (5, 20)
    optional = Dataset("o", (Col("k", "int"),))
    assert validation.volume_bounds(optional, [], t) == (0, None)
    assert validation.volume_bounds(optional, [0, 0, 0], t) == (0, None)


def test_history_counts_only_successful_runs_before_the_as_of(tmp_path):
    wh = connections.engine_for_url(f"sqlite:///{tmp_path}/w.db")
    seed_history(wh, "old_issues", [10, 20, 30])
    create_warehouse(wh)
    from patron_privacy.warehouse import write_validation

    with wh.begin() as w:
        # A failed run the day before: its count must not count.
        write_validation(
            w,
            run_id="failed",
            source="koha",
            as_of=AS_OF - timedelta(hours=12),
            results=[
                CheckResult("old_issues", VOLUME, None, 999, 0, True),
                CheckResult("old_issues", IN_SET, "branchcode", 999, 3, False),
            ],
            recorded_at=datetime(2026, 11, 30),
        )
        # A run on the as-of day itself, and one after: not history for this as-of.
        for i, day in enumerate((AS_OF, AS_OF + timedelta(days=1))):
            write_validation(
                w,
                run_id=f"same-or-later-{i}",
                source="koha",
                as_of=day,
                results=[CheckResult("old_issues", VOLUME, None, 5000, 0, True)],
                recorded_at=datetime(2026, 12, 1),
            )
        # Rewriting a run replaces its rows.
        write_validation(
            w,
            run_id="history-old_issues-1",
            source="koha",
            as_of=AS_OF - timedelta(days=1),
            results=[CheckResult("old_issues", VOLUME, None, 11, 0, True)],
            recorded_at=datetime(2026, 11, 29),
        )
    with wh.connect() as w:
        assert validation_row_counts(w, "koha", "old_issues", AS_OF, 7, VOLUME) == [11, 20, 30]
        assert validation_row_counts(w, "koha", "old_issues", AS_OF, 2, VOLUME) == [11, 20]
        assert validation_row_counts(w, "libki", "old_issues", AS_OF, 7, VOLUME) == []


# --- the Koha suite ------------------------------------------------------------------------------


@pytest.fixture
def koha(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path}/koha.db")
    good_koha(eng)
    return eng


def test_good_koha_passes_with_counts_only(koha):
    report = validation.validate_source(SUITE, koha, cc())
    assert report.passed, [r.describe("koha") for r in report.failed]
    assert report.rows["old_issues"] == 4 and report.rows["reserves"] == 0
    as_dict = report.as_dict()
    assert set(as_dict) == {
        "validated",
        "source",
        "run_id",
        "as_of",
        "passed",
        "checks",
        "failed",
        "rows",
        "duration_s",
        "set_aside",
    }
    assert as_dict["set_aside"] == []  # a database source sets nothing aside
    for r in report.results:
        assert set(r.as_dict()) == {
            "dataset",
            "check",
            "column",
            "element_count",
            "unexpected_count",
            "passed",
            "error",
            "blocking",
        }
        assert isinstance(r.element_count, int) and isinstance(r.unexpected_count, int)
    checks = {r.check for r in report.results}
    assert {NOT_NULL, UNIQUE, BETWEEN, IN_SET, FRESH, VOLUME, TYPE} <= checks
    # Great Expectations evaluates most of the checks.
    gx_kinds = {NOT_NULL, UNIQUE, BETWEEN, IN_SET, FRESH, VOLUME, validation.COLUMNS}
    assert sum(r.check in gx_kinds for r in report.results) > len(report.results) / 3


def test_names_emails_and_notes_are_never_read():
    from patron_privacy.sources.koha.schema import PERSONAL_COLUMNS

    read = {c.name for ds in SUITE.datasets for c in ds.columns}
    patrons = {c.name for ds in SUITE.datasets if ds.name == "borrowers" for c in ds.columns}
    assert not patrons & set(PERSONAL_COLUMNS)
    # search_history.userid is Koha's borrowernumber there, not the login name.
    assert not (read - {"userid"}) & set(PERSONAL_COLUMNS)
    assert not read & {
        "note",
        "reservenotes",
        "content",
        "subject",
        "to_address",
        "info",
        "diff",
        "query_desc",
        "query_cgi",
        "description",
        "other",
    }


def test_thresholds_change_the_verdict(koha):
    raw_sql(
        koha.url.database,
        "UPDATE old_issues SET returndate = datetime(returndate, '-9 days')",
        "UPDATE statistics SET datetime = datetime(datetime, '-9 days')",
    )
    assert not validation.validate_source(SUITE, koha, cc()).passed
    assert validation.validate_source(SUITE, koha, cc(freshness_days=30)).passed


def test_a_dataset_that_cannot_be_read_fails_closed(koha):
    def boom(handle, ds, chunk_rows, tolerant=False):
        raise OSError(f"cannot read {ds.name}: secret value zqx@example.org")

    broken = Suite("koha", SUITE.datasets[:2], read=boom)
    report = validation.validate_source(broken, koha, cc())
    assert not report.passed
    assert {(r.check, r.unexpected_count, r.error) for r in report.results} == {
        (READABLE, -1, "OSError")
    }
    assert "zqx" not in repr(report.as_dict())


def test_synthetic_library_passes(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path}/synthetic.db")
    build_koha(eng, patrons=200, years=1, seed=11, as_of=dt.date(2025, 1, 31))
    report = validation.validate_source(
        SUITE, eng, CheckContext("koha", datetime(2025, 1, 31), Thresholds(), anonymous_patron=1)
    )
    assert report.passed, [r.describe("koha") for r in report.failed]
    assert report.rows["old_issues"] > 1000


# --- pipeline and warehouse ----------------------------------------------------------------------


def test_pipeline_validate_records_counts_and_reads_the_policy(tmp_path, home, monkeypatch):
    koha_for_cli(tmp_path, home, monkeypatch)
    policy_file = tmp_path / "policy.yaml"
    text = Path(load_policy().path).read_text()
    policy_file.write_text(
        text.replace(
            "    batch_size: 10000\n",
            "    batch_size: 10000\n    validation:\n      freshness_days: 0.5\n",
        )
    )
    policy = load_policy(policy_file)
    run = pipeline.open_run("koha", AS_OF, policy)
    report = pipeline.validate(run, run_id="r-1")
    assert report["run_id"] == "r-1" and not report["passed"]
    assert {(f["dataset"], f["check"]) for f in report["failed"]} == {
        ("old_issues", FRESH),
        ("statistics", FRESH),
    }
    again = pipeline.validate(run, run_id="r-1")  # a retried task: rows replaced, not doubled
    with run.warehouse.connect() as w:
        rows = w.execute(select(validation_runs).where(validation_runs.c.run_id == "r-1")).all()
    assert len(rows) == again["checks"] == report["checks"]
    assert {r.source for r in rows} == {"koha"} and {r.as_of for r in rows} == {AS_OF}


def test_volume_history_drives_the_verdict(tmp_path, home, monkeypatch):
    koha_for_cli(tmp_path, home, monkeypatch)
    policy = load_policy()
    run = pipeline.open_run("koha", AS_OF, policy)
    seed_history(run.warehouse, "old_issues", [40, 40, 40])
    report = pipeline.validate(run)
    assert [(f["dataset"], f["check"], f["element_count"]) for f in report["failed"]] == [
        ("old_issues", VOLUME, 4)
    ]


# --- a second source, not SQL, from the same parts -----------------------------------------------


def test_a_file_source_adds_a_suite_without_a_second_mechanism():
    ds = Dataset(
        "sessions",
        (
            Col("session_id", "int", key=True),
            Col("started", "datetime", required=True),
            Col("branch", "code", allowed="branches"),
        ),
        freshness="started",
        expect_rows=True,
    )
    frame = pd.DataFrame(
        {
            "session_id": [1, 2, 2],
            "started": ["2026-11-29 10:00:00", "not a time", "2026-11-28 09:00:00"],
            "branch": ["MAIN", "MAIN", "ELSEWHERE"],
        }
    )

    def read(handle, dataset, chunk_rows, tolerant=False):
        return Extract(extra_columns=1, chunks=iter([frame]))

    suite = Suite("files", (ds,), read=read, known_sets=lambda handle: {"branches": ["MAIN"]})
    report = validation.validate_source(suite, None, CheckContext("files", AS_OF, Thresholds()))
    failed = {(r.check, r.column): r.unexpected_count for r in report.failed}
    assert failed == {
        (EXTRA, None): 1,
        (TYPE, "started"): 1,
        (UNIQUE, "session_id"): 2,
        (NOT_NULL, "started"): 1,
        (IN_SET, "branch"): 1,
    }
