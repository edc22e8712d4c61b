"""Validation chunk by chunk gives the results of validating the whole table at once,
with memory that follows the chunk size, and leaves no spilled key behind.

* a property: for generated datasets (duplicate keys, nulls, dates out of range or not
  dates at all, unknown and mixed-case codes) every check's counts are the same with
  chunks of 1..7 rows, read from the source 1..7 rows at a time, as with one chunk;
* the source is read a piece at a time and the pieces make up chunks of at least the
  chunk size;
* duplicates whose copies are in different chunks are all counted, for int keys (read
  as floats in a chunk with a missing key) and text keys;
* the spill directory is private while it exists and gone afterwards: after a pass,
  a reader that fails part way, GX failing, a check raising, a re-read after bad UTF-8;
* a few hundred thousand rows validate, in a fresh interpreter as a task does, with a
  Python peak far below the whole frame's size (validating the concatenated frame, as
  before, needs several times that).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tracemalloc
from datetime import datetime
from functools import cache
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patron_privacy import connections, keyspill, validation
from patron_privacy.validation import (
    IN_SET,
    READABLE,
    UNIQUE,
    UTF8,
    CheckContext,
    Col,
    Dataset,
    Extract,
    Suite,
    Thresholds,
)
from sqlalchemy import text

AS_OF = datetime(2026, 11, 30)
DS = Dataset(
    "visits",
    (
        Col("visit_id", "int", key=True),
        Col("booking", "code", key=True),
        Col("started", "datetime", required=True),
        Col("due", "datetime", future_ok=True),
        Col("branch", "code", allowed="branches"),
        Col("kind", "int", allowed=(0, 1)),
    ),
    freshness="started",
)
NAMES = [c.name for c in DS.columns]

row = st.tuples(
    st.one_of(st.none(), st.integers(1, 12)),
    st.sampled_from([None, "a", "A", "b", "b ", "c"]),
    st.sampled_from(
        [
            None,
            "2026-11-29 10:00:00",
            "2025-03-01",
            "1600-01-01",
            "3000-01-01",
            "soon",
            "2026-00-10",
        ]
    ),
    st.sampled_from([None, "2027-01-01", "1500-01-01", "later"]),
    st.sampled_from([None, "MAIN", "main ", "Main", "NORTH", "north  ", "ELSEWHERE"]),
    st.sampled_from([None, 0, 1, 2, "x"]),
)
known_sets = st.sampled_from(
    [{"branches": ["MAIN", "north"]}, {"branches": []}, {"branches": None}, {}]
)


@cache
def _runner() -> validation.GXRunner:
    return validation.GXRunner("visits")


def _suite(rows, known=None, missing=(), fail_after=None, decode_failure=False) -> Suite:
    def read(handle, ds, chunk_rows, tolerant=False):
        present = [n for n in NAMES if n not in missing]

        def chunks():
            for i in range(0, max(len(rows), 1), chunk_rows):
                if fail_after is not None and i >= fail_after:
                    raise OSError("the reader failed part way")
                if decode_failure and not tolerant and i > 0:
                    raise validation._DecodeFailure
                frame = pd.DataFrame.from_records(rows[i : i + chunk_rows], columns=NAMES)
                if len(frame):
                    yield frame[present]

        return Extract(missing=tuple(missing), chunks=chunks())

    return Suite("visits", (DS,), read=read, known_sets=lambda handle: known or {})


def _validate(suite: Suite, chunk_rows: int, known=None, history=()):
    cc = CheckContext("visits", AS_OF, Thresholds(chunk_rows=chunk_rows))
    results, rows = validation.validate_dataset(
        suite, None, DS, cc, known=known or {}, history=history, runner=_runner()
    )
    checks = [
        (r.dataset, r.check, r.column, r.element_count, r.unexpected_count, r.passed)
        for r in results
    ]
    return checks, rows


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    rows=st.lists(row, max_size=25),
    known=known_sets,
    chunk_rows=st.integers(1, 7),
    read_rows=st.integers(1, 7),
    missing=st.sampled_from([(), ("due",), ("branch",)]),
    history=st.sampled_from([(), (10, 10, 10, 10, 10)]),
)
def test_chunked_results_equal_one_chunk_check_by_check(
    rows, known, chunk_rows, read_rows, missing, history
):
    suite = _suite(rows, known, missing)
    whole = _validate(suite, 10_000_000, known, history)
    with patch.object(validation, "READ_ROWS", read_rows):
        assert _validate(suite, chunk_rows, known, history) == whole


def test_the_source_is_read_in_pieces_that_make_up_whole_chunks():
    rows = [(i, str(i), "2026-11-29", "0000-00-00", "MAIN", 0) for i in range(20)]
    asked, sizes = [], []
    suite = _suite(rows)
    read = suite.read

    def spy(handle, ds, n, tolerant=False):
        asked.append(n)
        return read(handle, ds, n, tolerant)

    class Sink(list):
        def add(self, frame):
            sizes.append(len(frame))
            self.append(frame)

        def close(self):
            pass

    with patch.object(validation, "READ_ROWS", 3):
        sink, _, counts, _ = validation._read_into(
            Suite("visits", (DS,), read=spy), None, DS, 7, Sink
        )
    assert asked == [3]
    assert sizes == [9, 9, 2]  # three pieces of 3 reach 7; the rest at the end
    assert list(pd.concat(sink)["visit_id"]) == list(range(20))
    assert counts.zero_dates["due"] == 20  # every piece's counts, added up


def _unique(checks, column):
    return next(c for c in checks if c[1] == UNIQUE and c[2] == column)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4, 100])
def test_duplicates_split_across_chunk_boundaries_are_counted_exactly(chunk_rows):
    # visit 1 twice and 2 three times, never within one chunk of 2; a missing visit_id in
    # the second chunk makes that chunk's keys floats (2.0 must still meet 2).
    ids = [1, 2, 3, None, 1, 4, 2, 5, 2, 6]
    bookings = ["x", "y", None, "z", "Y", "x", "w", "v", "x", "u"]  # x three times; Y is not y
    rows = [(i, b, "2026-11-29", None, "MAIN", 0) for i, b in zip(ids, bookings, strict=True)]
    checks, n = _validate(_suite(rows), chunk_rows)
    assert n == 10
    assert _unique(checks, "visit_id") == ("visits", UNIQUE, "visit_id", 10, 5, False)
    assert _unique(checks, "booking") == ("visits", UNIQUE, "booking", 10, 3, False)


def test_unknown_codes_fold_case_and_trailing_spaces_like_the_ils():
    rows = [(i, str(i), "2026-11-29", None, b, 0) for i, b in enumerate(["main ", "Main", "x"])]
    checks, _ = _validate(_suite(rows), 1, known={"branches": ["MAIN"]})
    in_set = next(c for c in checks if c[1] == IN_SET and c[2] == "branch")
    assert in_set == ("visits", IN_SET, "branch", 3, 1, False)


def test_spill_partitions_keep_every_copy_of_a_value_together_in_bounded_groups(tmp_path):
    rng = np.random.default_rng(5)
    values = np.concatenate([np.arange(6_000), rng.integers(0, 6_000, 1_000)])
    rng.shuffle(values)
    spill = keyspill.KeySpill(tmp_path / "k")
    for part in np.array_split(values, 7):
        spill.add(pd.Series(part))
    groups = list(spill.groups(20))  # partitions of ~27 values: split again on the hash
    assert max(len(g) for g in groups) <= 20
    assert sorted(np.concatenate(groups).tolist()) == sorted(values.tolist())
    seen: dict[int, int] = {}
    for i, group in enumerate(groups):
        for v in np.unique(group):
            assert seen.setdefault(int(v), i) == i  # no value in two groups
    dups = pd.Series(values).duplicated(keep=False).sum()
    assert sum(pd.Series(g).duplicated(keep=False).sum() for g in groups) == dups


@pytest.fixture
def spills(monkeypatch, tmp_path):
    """Every spill directory made, with its mode while it existed."""
    monkeypatch.setattr(keyspill.tempfile, "tempdir", str(tmp_path))
    made: list[tuple[Path, int]] = []
    real = keyspill.tempfile.mkdtemp

    def mkdtemp(*args, **kw):
        path = real(*args, **kw)
        made.append((Path(path), stat.S_IMODE(Path(path).stat().st_mode)))
        return path

    monkeypatch.setattr(keyspill.tempfile, "mkdtemp", mkdtemp)
    return made


ROWS = [(i % 7, f"b{i}", "2026-11-29", None, "MAIN", 0) for i in range(20)]


def _assert_gone(made, expected: int) -> None:
    assert len(made) == expected
    for path, mode in made:
        assert mode == 0o700
        assert not path.exists()


def test_the_spill_directory_is_private_and_gone_after_a_pass(spills):
    checks, _ = _validate(_suite(ROWS), 3)
    assert _unique(checks, "visit_id")[4] == 20  # every row's id repeats
    _assert_gone(spills, 1)


def test_the_spill_directory_is_gone_when_the_reader_fails_part_way(spills):
    checks, rows = _validate(_suite(ROWS, fail_after=9), 3)
    assert [c[1] for c in checks] == [READABLE] and rows == 0
    _assert_gone(spills, 1)


def test_the_spill_directory_is_gone_when_gx_fails(spills, monkeypatch):
    prepare = validation.GXRunner.prepare

    def failing_unique(self, name, expectations):
        run = prepare(self, name, expectations)
        if not name.endswith("_unique"):
            return run

        def boom(frame):
            raise MemoryError("GX could not check this group")

        return boom

    monkeypatch.setattr(validation.GXRunner, "prepare", failing_unique)
    checks, _ = _validate(_suite(ROWS), 3)
    assert ("visits", "great_expectations_suite", None, 20, -1, False) in checks
    assert not any(c[1] == UNIQUE for c in checks)  # fail closed: no GX result at all
    _assert_gone(spills, 1)


def test_the_spill_directory_is_gone_when_a_check_raises(spills):
    class Interrupted(BaseException):
        pass

    def extra(handle, ds, cc):
        raise Interrupted

    suite = _suite(ROWS)
    suite = Suite("visits", (DS,), read=suite.read, extra_checks=extra)
    with pytest.raises(Interrupted):
        _validate(suite, 3)
    _assert_gone(spills, 1)


def test_a_re_read_after_bad_utf8_starts_over_and_leaves_no_spill(spills):
    checks, rows = _validate(_suite(ROWS, decode_failure=True), 3)
    assert rows == 20
    assert _unique(checks, "visit_id") == ("visits", UNIQUE, "visit_id", 20, 20, False)
    assert ("visits", UTF8, "visit_id", 20, 0, True) in checks  # the tolerant pass counted
    _assert_gone(spills, 2)  # the abandoned pass's and the re-read's


REPO = Path(__file__).resolve().parents[2]
KOHA_ROWS = 200_000


@pytest.fixture(scope="module")
def loans_db(tmp_path_factory):
    """A table of ``KOHA_ROWS`` loans: ids, two dates and a branch code per row."""
    path = tmp_path_factory.mktemp("big") / "loans.db"
    engine = connections.engine_for_url(f"sqlite:///{path}")
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE TABLE loans (issue_id INTEGER, borrowernumber INTEGER, "
                "itemnumber INTEGER, issuedate TEXT, returndate TEXT, branchcode TEXT)"
            )
        )
        c.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :k) "
                "INSERT INTO loans SELECT i, 1 + i % 5000, 1 + i % 9000, "
                "'2026-10-01 10:00:00', '2026-11-29 12:00:00', "
                "CASE i % 2 WHEN 0 THEN 'MAIN' ELSE 'north ' END FROM n"
            ),
            {"k": KOHA_ROWS},
        )
    yield engine
    engine.dispose()


LOANS = Dataset(
    "loans",
    (
        Col("issue_id", "int", key=True),
        Col("borrowernumber", "int", required=True),
        Col("itemnumber", "int", required=True),
        Col("issuedate", "datetime", required=True),
        Col("returndate", "datetime"),
        Col("branchcode", "code", allowed="branches"),
    ),
    freshness="returndate",
)


def validation_peak(db_path: str) -> dict:
    """Python's peak allocation while validating the loans table a chunk at a time.

    Run in a fresh interpreter (see the test): a long-lived test process carries other
    tests' state, and a validation task runs in a process of its own.
    """
    engine = connections.engine_for_url(f"sqlite:///{db_path}")
    suite = Suite(
        "loans",
        (LOANS,),
        read=lambda e, ds, n, tolerant=False: validation.sql_extract(e, "loans", ds, n, tolerant),
    )
    known = {"branches": ["MAIN", "NORTH"]}
    cc = CheckContext("loans", AS_OF, Thresholds(chunk_rows=5_000))
    runner = validation.GXRunner("loans")
    # Warm up outside the measurement with one whole pass: GX's imports and caches, and
    # the interpreter's own one-off growth (its table of interned strings grows by
    # megabytes at a time, whenever enough new names have come in). A cost that grows
    # with the chunks read would show again in the measured pass.
    validation.validate_dataset(suite, engine, LOANS, cc, known=known, runner=runner)
    tracemalloc.start()
    try:
        results, rows = validation.validate_dataset(
            suite, engine, LOANS, cc, known=known, runner=runner
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        engine.dispose()
    return {"peak": peak, "rows": rows, "failed": [r.check for r in results if not r.passed]}


def test_memory_follows_the_chunk_not_the_table(loans_db):
    code = (
        "import json, sys; import test_validation_chunks as t; "
        "print(json.dumps(t.validation_peak(sys.argv[1])))"
    )
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(Path(__file__).parent)])
    }
    done = subprocess.run(
        [sys.executable, "-c", code, loans_db.url.database],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    # What the whole table costs as one frame of compact dtypes (ints, datetimes, codes).
    whole = KOHA_ROWS * (5 * 8 + 1)

    assert got["rows"] == KOHA_ROWS
    assert got["failed"] == []
    # Validating the concatenated frame, as before, peaked at three times ``whole``; a
    # chunk at a time stays under it (about half of it here, mostly one chunk's raw rows).
    peak = got["peak"]
    assert peak < whole * 0.75, f"peak {peak / 2**20:.1f} MiB for a {whole / 2**20:.1f} MiB table"
