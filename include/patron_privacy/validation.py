"""Validation of a source's extracts with Great Expectations, before anything acts on them.

A retention job that trusts bad data deletes what it should keep or keeps what it
should delete, so every nightly run validates the source first and enforces nothing
on it when a check fails (the pipeline and the CLI refuse; see ``pipeline.validate``).

One mechanism for every source. A source declares a :class:`Suite`: its datasets, each
with typed columns (:class:`Col`), a freshness column and whether rows are always
expected, plus three hooks — how to read a dataset's columns in chunks, where its
known sets of codes come from, and any checks that are naturally SQL (references
between tables). Everything else is here and shared:

* reading in bounded chunks, only the declared (non-personal) columns, each coerced
  to a compact dtype: ints, floats, ``datetime64[ns]`` (out-of-range dates clipped so
  they still fail the range checks), codes as categoricals. Values that do not parse
  (a date that is text, MariaDB's zero dates) are counted per column as the chunk is
  read — the reader's checks;
* one Great Expectations suite per dataset, built from the column declarations and
  run in an ephemeral context on each chunk as it is read, never on the whole table:
  columns exist, keys not null, dates possible, codes from their known set, freshness.
  Per-chunk counts add up to the whole's; what only the whole can answer goes through
  GX once at the end: volume against the median of the last successful runs, and keys
  unique, on the key values spilled by hash to private files (``keyspill``). Memory
  follows ``chunk_rows``, whatever the table's size;
* results reduced at once to counts: an expectation's name, its column, the number of
  rows it looked at and the number it did not like. GX's result objects also carry
  the failing values themselves (``partial_unexpected_list``, observed values,
  exception messages); they are dropped here, never logged, returned or stored.

Thresholds live in one place, :class:`Thresholds`; a library overrides them in the
policy file under ``sources.<name>.validation``.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import cache

# Before Great Expectations is imported anywhere: no usage analytics leave the machine.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pandas.api.types import (  # noqa: E402
    is_bool_dtype,
    is_datetime64_any_dtype,
    is_integer_dtype,
    is_numeric_dtype,
)
from sqlalchemy import Engine, and_, case, column, exists, func, inspect, select, table  # noqa: E402

from patron_privacy import deferred_import  # noqa: E402

# Re-exported: the policy checks thresholds without importing pandas or GX.
from patron_privacy.keyspill import KeySpill, private_directory  # noqa: E402
from patron_privacy.thresholds import Thresholds, ValidationConfigError  # noqa: E402, F401

log = logging.getLogger("patron_privacy.validation")

# Where each source's suite lives; imported only when that source is validated.
# ``module`` (its ``SUITE``) or ``module:NAME`` when one module holds several suites.
SUITES: dict[str, str] = {
    "koha": "patron_privacy.sources.koha.expectations",
    "libki": "patron_privacy.sources.libki.expectations",
    "evergreen": "patron_privacy.sources.evergreen.expectations",
    "signups": "patron_privacy.sources.dropfolder.expectations:SIGNUPS",
    "programs": "patron_privacy.sources.dropfolder.expectations:PROGRAMS",
    "squid": "patron_privacy.sources.squid.expectations",
    "libcal": "patron_privacy.sources.libcal.expectations",
}

KINDS = ("int", "float", "datetime", "code")

# Check names. GX's own expectation types where GX evaluates the check; the reader's
# and SQL checks use the same naming and the same result shape.
EXISTS = "expect_column_to_exist"
NOT_NULL = "expect_column_values_to_not_be_null"
UNIQUE = "expect_column_values_to_be_unique"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
FRESH = "expect_column_max_to_be_between"
VOLUME = "expect_table_row_count_to_be_between"
TYPE = "expect_column_values_to_be_of_type"
ZERO_DATES = "expect_column_values_to_not_be_zero_dates"
UTF8 = "expect_column_values_to_be_valid_utf8"
REFERENCE = "expect_column_values_to_reference_existing_rows"
TABLE = "expect_table_to_exist"
READABLE = "expect_dataset_to_be_readable"
COLUMNS = "expect_table_columns_to_match_set"
EXTRA = "expect_no_undeclared_columns"
SET_ASIDE = "expect_input_to_be_readable"

DESCRIPTIONS = {
    EXISTS: "column missing",
    NOT_NULL: "empty where a value is required",
    UNIQUE: "duplicate keys",
    BETWEEN: "impossible dates (before the floor or after the as-of date)",
    IN_SET: "values outside the known set",
    FRESH: "not fresh: newest record older than allowed",
    VOLUME: "row count outside the expected range",
    TYPE: "values of the wrong type",
    ZERO_DATES: "MariaDB zero dates: month or day 00",
    UTF8: "text that is not valid UTF-8",
    REFERENCE: "references to rows that do not exist",
    TABLE: "table missing",
    READABLE: "could not be read",
    EXTRA: "columns nobody declared",
    COLUMNS: "columns missing",
    SET_ASIDE: "unreadable input set aside: not validated, never acted on",
}

# datetime64[ns] covers 1677-09-21 .. 2262-04-11; dates outside are clipped just
# inside, where they still fail the floor or the as-of bound.
_NS_LOW = pd.Timestamp("1678-01-01")
_NS_HIGH = pd.Timestamp("2262-01-01")
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?$"
_ZERO_DATE = r"^\d{4}-(?:00-\d{2}|\d{2}-00)"
_REPLACEMENT = "\ufffd"
# Rows asked of a source at once, before coercion (see :func:`_read_into`).
READ_ROWS = 10_000


class ValidationFailed(RuntimeError):
    """A source's extract failed validation: nothing may be enforced on it in this run."""


class MissingSuiteError(ValidationFailed):
    """A source has no validation suite: its data cannot be validated, so nothing may be
    enforced on it (fail closed, never a warning that a pass is assumed)."""


class _DecodeFailure(Exception):
    """A text value is not valid UTF-8 (SQLite): read again, tolerating it, and count it."""


# --- declarations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """One column a check needs: never a name, email, note or other free text."""

    name: str
    kind: str  # one of KINDS
    key: bool = False  # not null and unique
    required: bool = False  # not null
    # A code's known set: the name of a set the suite's ``known_sets`` hook returns
    # (e.g. "branches"), or the values themselves.
    allowed: str | tuple = ()
    future_ok: bool = False  # a scheduled date (due, expiry): no upper bound

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: kind {self.kind!r} is not one of {KINDS}")


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: tuple[Col, ...]
    freshness: str | None = None  # a datetime column whose newest value must be recent
    expect_rows: bool = False  # zero rows fails even before there is any history

    def col(self, name: str) -> Col:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Suite:
    """What a source adds: its datasets and three hooks; the mechanism is shared."""

    source: str
    datasets: tuple[Dataset, ...]
    # (handle, dataset, chunk_rows, tolerant) -> Extract; ``handle`` is the source's
    # engine for a database, or whatever the source reads from (a folder, ...).
    read: Callable[..., Extract]
    # handle -> {set name: codes}
    known_sets: Callable[[object], Mapping[str, Collection]] = lambda handle: {}
    # (handle, dataset, CheckContext) -> results of the same shape, computed outside GX
    extra_checks: Callable[..., list[CheckResult]] = lambda handle, ds, cc: []


@dataclass
class Extract:
    """A dataset as read: which declared columns are missing, and the rows in chunks."""

    missing_table: bool = False
    missing: tuple[str, ...] = ()
    # Columns in the extract that nobody declared: counted, never named (for a file
    # source the header itself could hold anything). SQL sources read only what
    # they declare, so for them it is always 0.
    extra_columns: int = 0
    chunks: Iterator[pd.DataFrame] = field(default_factory=lambda: iter(()))
    # File sources: input the source's reader refused (a malformed row, a wrong encoding,
    # a truncated gzip, a line of the wrong format), one message each naming the file and
    # line, never a value. That input is left out of the chunks, and the source's run
    # leaves it exactly as it is; filled in as the chunks are read.
    set_aside: list[str] = field(default_factory=list)
    # How many units (files, lines) the set-aside messages stand for, and of how many.
    set_aside_count: int = 0
    set_aside_of: int = 0


@dataclass(frozen=True)
class CheckContext:
    """What a check may know about the run: the as-of instant and the thresholds."""

    source: str
    as_of: datetime
    thresholds: Thresholds
    anonymous_patron: int | None = None

    @property
    def latest_possible(self) -> pd.Timestamp:
        return pd.Timestamp(self.as_of + timedelta(days=self.thresholds.future_slack_days))

    @property
    def floor(self) -> pd.Timestamp:
        return pd.Timestamp(self.thresholds.date_floor)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """Counts only. ``unexpected_count`` -1 means the check could not be evaluated."""

    dataset: str
    check: str
    column: str | None
    element_count: int
    unexpected_count: int
    passed: bool
    # The exception's type name when a check could not be evaluated; never its message.
    error: str | None = None
    # False for a finding that does not stop the source: input set aside (never acted on)
    # while the rest, validated, goes ahead. Stored failed all the same, so the run does
    # not count towards the volume history.
    blocking: bool = True

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, source: str) -> str:
        where = ".".join(p for p in (source, self.dataset, self.column) if p)
        what = DESCRIPTIONS.get(self.check, "")
        if self.unexpected_count < 0:
            counts = f"could not be evaluated ({self.error or 'error'})"
        elif self.check in (EXISTS, TABLE):
            counts = "missing"
        elif self.check == VOLUME:
            counts = f"{self.element_count} rows"
        elif self.check == FRESH:
            counts = f"{self.element_count} rows, none recent enough"
        else:
            counts = f"{self.unexpected_count} of {self.element_count} rows"
        return f"{where}: {self.check}{f' ({what})' if what else ''}: {counts}"


@dataclass
class Report:
    source: str
    as_of: datetime
    results: list[CheckResult]
    rows: dict[str, int]
    duration_s: float = 0.0
    run_id: str | None = None

    set_aside: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed or not r.blocking for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.blocking]

    def as_dict(self) -> dict:
        """What travels through XCom and the CLI's JSON: names and counts only."""
        return {
            "source": self.source,
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "passed": self.passed,
            "validated": True,
            "checks": len(self.results),
            "failed": [
                {k: v for k, v in r.as_dict().items() if k != "passed"} for r in self.failed
            ],
            "rows": dict(self.rows),
            "duration_s": self.duration_s,
            # File and line of each piece of input left out (messages name no value).
            "set_aside": list(self.set_aside),
        }


def failure_lines(report: dict) -> list[str]:
    """One line per failed check, from a report dict (as returned by ``Report.as_dict``)."""
    return [CheckResult(passed=False, **r).describe(report["source"]) for r in report["failed"]]


def suite_for(source: str) -> Suite | None:
    """The source's suite; None for a source nobody has written one for yet."""
    where = SUITES.get(source)
    if not where:
        return None
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name or "SUITE")


def require_suite(source: str) -> Suite:
    """The source's suite, or :class:`MissingSuiteError`: data nobody can validate is
    never acted on."""
    suite = suite_for(source)
    if suite is None:
        raise MissingSuiteError(
            f"source {source}: no validation suite (validation.SUITES): its data cannot be "
            "validated, so nothing is enforced on it"
        )
    return suite


# --- reading and coercion ----------------------------------------------------------------------


def sql_extract(
    engine: Engine, table_name: str, ds: Dataset, chunk_rows: int, tolerant: bool = False
) -> Extract:
    """A SQL table's declared columns, streamed in chunks straight from the DB-API cursor.

    Only the columns that exist are selected; the missing ones are named (they are our
    own declared names, never the database's). Extra columns in the table are normal for
    an ILS that adds columns between versions, and are never read.
    """
    insp = inspect(engine)
    if not insp.has_table(table_name):
        return Extract(missing_table=True, missing=tuple(c.name for c in ds.columns))
    have = {c["name"] for c in insp.get_columns(table_name)}
    present = [c.name for c in ds.columns if c.name in have]
    missing = tuple(c.name for c in ds.columns if c.name not in have)
    stmt = select(*[column(c) for c in present]).select_from(table(table_name))
    sql = str(stmt.compile(dialect=engine.dialect))
    chunks = _cursor_chunks(engine, sql, present, chunk_rows, tolerant)
    return Extract(missing=missing, chunks=chunks)


def _lenient_text(raw: bytes) -> str:
    # U+FFFD for what is not UTF-8: counted per column, and never the bytes themselves.
    return raw.decode("utf-8", "replace")


def _cursor_chunks(
    engine: Engine, sql: str, columns: list[str], chunk_rows: int, tolerant: bool
) -> Iterator[pd.DataFrame]:
    if not columns:
        return
    raw = engine.raw_connection()
    dbapi = raw.driver_connection
    sqlite = engine.dialect.name == "sqlite"
    old_factory = dbapi.text_factory if sqlite else None
    try:
        if sqlite and tolerant:
            dbapi.text_factory = _lenient_text
        if engine.dialect.driver == "pymysql":
            import pymysql.cursors  # noqa: PLC0415 - only for MariaDB/MySQL sources

            cur = dbapi.cursor(pymysql.cursors.SSCursor)  # streams: bounded memory
        else:
            cur = dbapi.cursor()
        with closing(cur):
            try:
                cur.execute(sql)
                while rows := cur.fetchmany(chunk_rows):
                    frame = pd.DataFrame.from_records(rows, columns=columns)
                    del rows  # the driver's tuples go before the chunk is checked
                    yield frame
            except Exception as exc:
                # sqlite3 names the undecodable text in its message: never keep it.
                if sqlite and "decode" in str(exc).lower() and not tolerant:
                    raise _DecodeFailure from None
                raise
    finally:
        if sqlite:
            dbapi.text_factory = old_factory
        raw.close()


@dataclass
class _ReaderCounts:
    type_errors: dict[str, int] = field(default_factory=dict)
    zero_dates: dict[str, int] = field(default_factory=dict)
    bad_utf8: dict[str, int] = field(default_factory=dict)

    def add(self, bucket: dict[str, int], col: str, n: int) -> None:
        bucket[col] = bucket.get(col, 0) + int(n)


def _is_textual(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s.dtype)


def _parse_date_strings(s: pd.Series) -> pd.Series:
    """ISO dates only: 'now', 'today', '20210101', time zones, ... are not a stored date."""
    s = s.astype("str") if s.dtype == object else s
    shaped = s.str.match(_ISO_DATE).fillna(False).astype(bool)
    return pd.to_datetime(s.where(shaped), errors="coerce", format="ISO8601")


def _coerce_datetime(raw: pd.Series, counts: _ReaderCounts, name: str) -> pd.Series:
    present = raw.notna()
    if is_datetime64_any_dtype(raw.dtype):
        typed = raw.dt.tz_localize(None) if getattr(raw.dt, "tz", None) else raw
    elif raw.dtype != object and pd.api.types.is_string_dtype(raw.dtype):
        typed = _parse_date_strings(raw)
    else:
        # Mixed: datetime objects with strings (MariaDB returns zero dates as text),
        # or anything else SQLite's dynamic typing let in.
        values = raw.astype(object)
        is_str = values.map(lambda v: isinstance(v, str))
        is_dt = values.map(lambda v: isinstance(v, datetime | date)) & ~is_str
        typed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
        if is_str.any():
            typed[is_str] = _clip_ns(_parse_date_strings(values[is_str].astype("str")))
        if is_dt.any():
            typed[is_dt] = _clip_ns(pd.to_datetime(values[is_dt], errors="coerce"))
    typed = _clip_ns(typed)
    failed = present & typed.isna()
    n_failed = int(failed.sum())
    zero = 0
    if n_failed:
        bad = raw[failed].astype(object)
        textual = bad[bad.map(lambda v: isinstance(v, str))].astype("str")
        zero = int(textual.str.match(_ZERO_DATE).fillna(False).sum())
    counts.add(counts.zero_dates, name, zero)
    counts.add(counts.type_errors, name, n_failed - zero)
    return typed


def _clip_ns(s: pd.Series) -> pd.Series:
    if not is_datetime64_any_dtype(s.dtype):
        s = pd.to_datetime(s, errors="coerce")
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    if s.dtype != "datetime64[ns]":
        s = s.clip(_NS_LOW, _NS_HIGH).astype("datetime64[ns]")
    return s


def _coerce_number(raw: pd.Series, counts: _ReaderCounts, name: str, integral: bool) -> pd.Series:
    present = raw.notna()
    if is_integer_dtype(raw.dtype) and not is_bool_dtype(raw.dtype):
        typed = raw.astype("int64") if raw.dtype.kind in "iu" else raw.astype("float64")
        counts.add(counts.type_errors, name, 0)
        return typed
    if is_numeric_dtype(raw.dtype) and not is_bool_dtype(raw.dtype):
        typed = raw.astype("float64")
    else:
        values = raw.astype(object)
        # bytes and booleans are not numbers a database column should hold
        wrong = values.map(lambda v: isinstance(v, bytes | bool | np.bool_))
        typed = pd.to_numeric(values.where(~wrong), errors="coerce").astype("float64")
    if integral:
        fractional = typed.notna() & (typed % 1 != 0)
        typed = typed.where(~fractional)
    failed = int((present & typed.isna()).sum())
    counts.add(counts.type_errors, name, failed)
    if integral and not typed.isna().any():
        return typed.astype("int64")
    return typed


def _coerce_code(raw: pd.Series, counts: _ReaderCounts, name: str) -> pd.Series:
    if raw.dtype == object:
        raw = raw.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore")
    counts.add(counts.type_errors, name, 0)
    return raw.astype("category")


def coerce_chunk(chunk: pd.DataFrame, ds: Dataset, counts: _ReaderCounts, tolerant: bool):
    """One chunk as read (any dtypes) to the declared compact dtypes, counting failures."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning's text could quote a value
        for name in chunk.columns:
            col = ds.col(name)
            raw = chunk[name]
            if tolerant and _is_textual(raw):
                bad = raw.map(lambda v: isinstance(v, str) and _REPLACEMENT in v)
                counts.add(counts.bad_utf8, name, int(bad.sum()))
            if col.kind == "datetime":
                out[name] = _coerce_datetime(raw, counts, name)
            elif col.kind in ("int", "float"):
                out[name] = _coerce_number(raw, counts, name, integral=col.kind == "int")
            else:
                out[name] = _coerce_code(raw, counts, name)
    return pd.DataFrame(out, index=chunk.index)


def _empty_frame(ds: Dataset, present: Sequence[str]) -> pd.DataFrame:
    dtypes = {"int": "int64", "float": "float64", "datetime": "datetime64[ns]", "code": "category"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[ds.col(c).kind]) for c in present})


def _concat(frames: list[pd.DataFrame], ds: Dataset) -> pd.DataFrame:
    if len(frames) == 1:
        return frames[0]
    out = {}
    for name in frames[0].columns:
        parts = [f[name] for f in frames]
        if ds.col(name).kind == "code":
            codes = [p.array for p in parts]
            if len({c.categories.dtype for c in codes}) > 1:
                # A part with no code at all has object categories, the others strings.
                codes = [c.set_categories(c.categories.astype(object)) for c in codes]
            out[name] = pd.Series(pd.api.types.union_categoricals(codes, ignore_order=True))
        else:
            merged = pd.concat(parts, ignore_index=True)
            if ds.col(name).kind == "int" and merged.dtype == object:
                merged = merged.astype("float64")
            out[name] = merged
    return pd.DataFrame(out)


class _Frames(list):
    """Collects a pass's chunks whole (:func:`read_dataset`)."""

    add = list.append

    def close(self) -> None:
        self.clear()


def _read_into(suite: Suite, handle, ds: Dataset, chunk_rows: int, sink_for: Callable[[], object]):
    """Each coerced chunk of a dataset into a fresh ``sink_for()`` (``add(frame)``,
    ``close()``); (sink, extract, reader counts, tolerant).

    The source is read ``READ_ROWS`` at a time and each piece is coerced at once: rows
    as a driver returns them cost some 500 bytes each in Python objects, ten times their
    coerced columns, so only a piece of them is ever held. The coerced pieces make up
    the chunks of ``chunk_rows`` the sink checks.

    An empty dataset still hands the sink one (empty) frame, so its checks run and give
    results of the same shape. A text value that does not decode (SQLite) abandons the
    pass and its sink, and the dataset is read again, tolerating and counting such
    values; any other failure closes the sink and propagates.
    """
    for tolerant in (False, True):
        extract = suite.read(handle, ds, min(chunk_rows, READ_ROWS), tolerant)
        counts = _ReaderCounts()
        sink = sink_for()
        pieces: list[pd.DataFrame] = []
        held = 0
        try:
            empty = True
            for rows in extract.chunks:
                pieces.append(coerce_chunk(rows, ds, counts, tolerant))
                held += len(rows)
                del rows  # as read: not kept while the pieces are gathered and checked
                if held >= chunk_rows:
                    sink.add(_concat(pieces, ds))
                    pieces, held = [], 0
                    empty = False
            if pieces:
                sink.add(_concat(pieces, ds))
                pieces = []
                empty = False
            if empty and not extract.missing_table:
                present = [c.name for c in ds.columns if c.name not in extract.missing]
                sink.add(_empty_frame(ds, present))
        except _DecodeFailure:
            sink.close()
            continue
        except BaseException:
            sink.close()
            raise
        finally:
            close = getattr(extract.chunks, "close", None)
            if close is not None:
                close()
        return sink, extract, counts, tolerant
    raise RuntimeError("the tolerant read cannot fail to decode")


def read_dataset(suite: Suite, handle, ds: Dataset, chunk_rows: int):
    """(frame, extract, reader counts, tolerant): the whole dataset in one frame of its
    declared columns. For small data and inspection; validation itself never holds it."""
    frames, extract, counts, tolerant = _read_into(suite, handle, ds, chunk_rows, _Frames)
    return _concat(frames, ds), extract, counts, tolerant


# --- the GX suite ------------------------------------------------------------------------------


def _fold(code) -> str:
    # Koha's MariaDB compares codes case-insensitively and ignores trailing spaces
    # (utf8mb4_unicode_ci, PAD SPACE): 'main ' is the MAIN branch there.
    return str(code).upper().rstrip(" ")


def _value_set(col: Col, known: Mapping[str, Collection]) -> list:
    allowed = known.get(col.allowed, ()) if isinstance(col.allowed, str) else col.allowed
    if col.kind != "code":
        return list(allowed)
    # Folded, as the column's values are before GX sees them (:func:`_folded`): one set
    # serves every chunk, whatever codes each holds.
    return sorted({_fold(v) for v in allowed})


def _folded(codes: pd.Series) -> pd.Series:
    """A code column with its categories folded (``'main '`` is ``'MAIN'``): per category,
    not per row, so it costs nothing next to the chunk."""
    to, categories = pd.factorize(np.array([_fold(c) for c in codes.cat.categories], object))
    old = codes.cat.codes.to_numpy()
    new = np.full(len(old), -1, dtype=np.int64)
    present = old >= 0
    new[present] = to[old[present]]
    return pd.Series(pd.Categorical.from_codes(new, categories), index=codes.index)


def _in_set_checked(c: Col, known: Mapping[str, Collection]) -> bool:
    # A named set the source does not configure (None) is not checked; an empty one is,
    # and every value fails it.
    return bool(c.allowed) and not (isinstance(c.allowed, str) and known.get(c.allowed, ()) is None)


def _expectations(ds, columns, known, cc: CheckContext, volume: tuple[int, int | None]):
    """The dataset's whole suite over the ``columns`` read, as if run on one frame."""
    _gx()  # GX's import, the one way: with what no suite uses deferred
    import great_expectations.expectations as gxe  # noqa: PLC0415 - heavy, only when validating

    # One table-level check for every declared column (one GX expectation per column
    # cost as much again as the data checks); missing ones are named from our own list.
    out = [gxe.ExpectTableColumnsToMatchSet(column_set=[c.name for c in ds.columns])]
    for c in ds.columns:
        if c.name not in columns:
            continue
        if c.key or c.required:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=c.name))
        if c.key:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=c.name))
        if c.kind == "datetime":
            out.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=c.name,
                    min_value=cc.floor,
                    max_value=None if c.future_ok else cc.latest_possible,
                )
            )
        if _in_set_checked(c, known):
            out.append(
                gxe.ExpectColumnValuesToBeInSet(column=c.name, value_set=_value_set(c, known))
            )
    if ds.freshness and ds.freshness in columns:
        oldest_ok = pd.Timestamp(cc.as_of - timedelta(days=cc.thresholds.freshness_days))
        out.append(gxe.ExpectColumnMaxToBeBetween(column=ds.freshness, min_value=oldest_ok))
    lo, hi = volume
    out.append(gxe.ExpectTableRowCountToBeBetween(min_value=lo, max_value=hi))
    return out


def volume_bounds(ds: Dataset, history: Sequence[int], t: Thresholds) -> tuple[int, int | None]:
    """Row-count bounds from the last successful runs' counts (newest first)."""
    recent = list(history)[: t.volume_history_runs]
    if len(recent) >= t.volume_min_history:
        median = statistics.median(recent)
        if median > 0:
            return max(1, math.ceil(median * t.volume_min_ratio)), math.floor(
                median * t.volume_max_ratio
            )
    return (1 if ds.expect_rows else 0), None


def _raised(info) -> bool:
    if not isinstance(info, dict):
        return False
    if info.get("raised_exception"):
        return True
    return any(_raised(v) for v in info.values() if isinstance(v, dict))


def _counts_from(r, rows: int) -> tuple[str, str | None, int, int, bool, str | None]:
    """Reduce one GX result to counts at once; nothing else of it survives this call."""
    cfg = r.expectation_config
    kind, col = cfg.type, cfg.kwargs.get("column")
    if _raised(r.exception_info):
        return kind, col, rows, -1, False, "evaluation error"
    res = r.result or {}
    ok = bool(r.success)
    if "unexpected_count" in res:
        element = int(res.get("element_count", rows))
        return kind, col, element, int(res["unexpected_count"]), ok, None
    if kind == VOLUME:
        return kind, col, rows, 0 if ok else 1, ok, None
    if kind == COLUMNS:
        return kind, col, 0, 0 if ok else 1, ok, None
    return kind, col, rows, 0 if ok else 1, ok, None


@contextmanager
def _quiet_gx():
    """GX logs and warns with values in its messages; silence it while it runs."""
    gx_log = logging.getLogger("great_expectations")
    level, propagate = gx_log.level, gx_log.propagate
    gx_log.setLevel(logging.CRITICAL + 1)
    gx_log.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        gx_log.setLevel(level)
        gx_log.propagate = propagate


# What GX imports for an expectation and a chart no suite here uses: loaded on first use.
GX_DEFERRED = ("scipy.stats", "altair")


@cache
def _gx():
    deferred_import.defer(*GX_DEFERRED)
    with _quiet_gx():
        import great_expectations as gx  # noqa: PLC0415
        from great_expectations.data_context.types.base import (  # noqa: PLC0415
            ProgressBarsConfig,
        )
    return gx, ProgressBarsConfig


class GXRunner:
    """One ephemeral GX context per validation; one pandas asset and suite per dataset."""

    # Counts, no values: BASIC with an empty partial list. (BOOLEAN_ONLY has no counts;
    # SUMMARY and COMPLETE carry the failing values.)
    RESULT_FORMAT = {
        "result_format": "BASIC",
        "partial_unexpected_count": 0,
        "include_unexpected_rows": False,
        "return_unexpected_index_query": False,
    }

    def __init__(self, source: str):
        gx, progress = _gx()
        with _quiet_gx():
            self._gx = gx
            self.context = gx.get_context(mode="ephemeral")
            self.context.variables.progress_bars = progress(
                globally=False, metric_calculations=False
            )
            self.datasource = self.context.data_sources.add_pandas(name=source)
            # One asset and batch definition for every dataset: the DataFrame comes with
            # each run (batch_parameters); only the suite differs.
            asset = self.datasource.add_dataframe_asset(name="extract")
            self.batch = asset.add_batch_definition_whole_dataframe(name="whole_extract")
        self._suites = 0

    def prepare(self, name: str, expectations: list) -> Callable[[pd.DataFrame], list[tuple]]:
        """Register a suite once; the function returned runs it on a frame and gives counts
        (as :func:`_counts_from`), so one suite serves every chunk of a dataset."""
        gx = self._gx
        self._suites += 1
        name = f"{name}_{self._suites}"
        with _quiet_gx():
            # Expectations go in with the suite: add_expectation on a stored suite
            # re-saves the whole suite each time (quadratic, ~30 ms per expectation).
            suite = self.context.suites.add(
                gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations)
            )
            vd = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{name}_validation", data=self.batch, suite=suite)
            )
        store = self.context.validation_results_store

        def run(frame: pd.DataFrame) -> list[tuple]:
            with _quiet_gx():
                result = vd.run(
                    batch_parameters={"dataframe": frame}, result_format=self.RESULT_FORMAT
                )
                try:
                    return [_counts_from(r, len(frame)) for r in result.results]
                finally:
                    del result  # the detailed results go now, with whatever values they hold
                    # and so does the context's stored copy of them: one per chunk would
                    # otherwise pile up in memory, over a table of any size.
                    for key in store.list_keys():
                        store.remove_key(key)

        return run

    def run(self, name: str, frame: pd.DataFrame, expectations: list) -> list[tuple]:
        """One suite, once, on one frame."""
        return self.prepare(name, expectations)(frame)


def _gx_order(expectations: list) -> list[tuple[str, str | None]]:
    """(check, column) in the order GX reports a suite's results: grouped by column in order
    of first appearance, table-level checks as one group
    (``Validator.process_expectations_for_validation``)."""
    groups: dict[str | None, list] = {}
    for e in expectations:
        col = e.configuration.kwargs.get("column")
        groups.setdefault(col if isinstance(col, str) else None, []).append(
            (e.configuration.type, col)
        )
    return [key for group in groups.values() for key in group]


@dataclass
class _Tally:
    """One check's counts, merged over the runs (chunks, key groups) that evaluated it."""

    check: str
    column: str | None
    element: int = 0
    unexpected: int = 0
    passed: bool = False
    error: str | None = None
    seen: bool = False

    def add(self, element: int, unexpected: int, ok: bool, err: str | None, rows: int) -> None:
        if err:
            self.error = err  # one chunk that could not be evaluated fails the whole, closed
        if self.check == FRESH:
            # The newest of all is recent enough iff the newest of some chunk is; a chunk
            # without rows has no newest and says nothing.
            if rows:
                self.element += rows
                self.passed = self.passed or ok
                self.unexpected = 0 if self.passed else 1
                self.seen = True
        elif self.check == COLUMNS:
            if not self.seen:  # every chunk has the same columns
                self.element, self.unexpected, self.passed = element, unexpected, ok
                self.seen = True
        else:
            self.element += element
            self.unexpected += max(unexpected, 0)
            self.passed = self.unexpected == 0
            self.seen = True

    def counts(self) -> tuple[str, str | None, int, int, bool, str | None]:
        if self.error:
            return self.check, self.column, self.element, -1, False, self.error
        return self.check, self.column, self.element, self.unexpected, self.passed, None


class _ChunkedChecks:
    """One dataset's GX suite run on each chunk as it is read, merged at once to counts.

    The suite is built from the first chunk's columns and registered once. Checks that
    count rows (not null, between, in set) add up over chunks; freshness passes if any
    chunk's newest row is recent enough. Two checks are about the whole dataset and go
    to GX at the end instead: the row count, GX's expectation judging the sum of the
    chunks' counts, and the uniqueness of each key, on its values spilled by hash
    (:mod:`patron_privacy.keyspill`) and read back a group at a time. A chunk is dropped
    once checked, so memory follows ``chunk_rows``, not the table.
    """

    def __init__(self, runner: GXRunner, ds: Dataset, known, cc: CheckContext, volume):
        self.rows = 0
        self.error: str | None = None  # GX itself failed: its type name, no results
        self._runner, self._ds, self._known, self._cc, self._volume = runner, ds, known, cc, volume
        self._max_rows = cc.thresholds.chunk_rows
        self._run = None
        self._order: list[tuple[str, str | None]] = []
        self._tallies: dict[tuple[str, str | None], _Tally] = {}
        self._fold: list[str] = []
        self._keys: dict[str, KeySpill] = {}
        self._spill = ExitStack()

    def _start(self, columns) -> None:
        ds, known = self._ds, self._known
        suite = _expectations(ds, columns, known, self._cc, self._volume)
        self._order = _gx_order(suite)
        self._tallies = {key: _Tally(*key) for key in self._order}
        self._fold = [
            c.name
            for c in ds.columns
            if c.name in columns and c.kind == "code" and _in_set_checked(c, known)
        ]
        per_chunk = [e for e in suite if e.configuration.type not in (UNIQUE, VOLUME)]
        self._volume_check = [e for e in suite if e.configuration.type == VOLUME]
        self._unique = {
            e.configuration.kwargs["column"]: [e] for e in suite if e.configuration.type == UNIQUE
        }
        if self._unique:
            where = self._spill.enter_context(private_directory())
            self._keys = {c: KeySpill(where / str(i)) for i, c in enumerate(self._unique)}
        self._run = self._runner.prepare(ds.name, per_chunk)

    def add(self, frame: pd.DataFrame) -> None:
        if self._run is None:
            self._start(frame.columns)
        self.rows += len(frame)
        if self.error:
            return
        for name, spill in self._keys.items():
            spill.add(frame[name])
        if self._fold:
            frame = frame.assign(**{c: _folded(frame[c]) for c in self._fold})
        self._merge(self._run, frame)

    def _merge(self, run, frame: pd.DataFrame) -> None:
        try:
            counts = run(frame)
        except Exception as exc:  # noqa: BLE001 - GX itself failed: fail closed, type name only
            self.error = type(exc).__name__
            return
        for check, col, element, unexpected, ok, err in counts:
            self._tallies[(check, col)].add(element, unexpected, ok, err, len(frame))

    def finish(self) -> list[tuple]:
        """The merged counts, in the order GX reports the whole suite; none when GX failed."""
        try:
            self._whole_dataset_checks()
        except Exception as exc:  # noqa: BLE001 - fail closed, type name only
            self.error = self.error or type(exc).__name__
        if self.error:
            return []
        return [self._tallies[key].counts() for key in self._order if self._tallies[key].seen]

    def _whole_dataset_checks(self) -> None:
        for name, spill in self._keys.items():
            run = self._runner.prepare(f"{self._ds.name}_{name}_unique", self._unique[name])
            for values in spill.groups(self._max_rows):
                if self.error:
                    break
                self._merge(run, pd.DataFrame({name: values}))
            # Every row of the dataset, as GX counts it on the whole column (nulls too).
            self._tallies[(UNIQUE, name)].element = self.rows
        for volume in self._volume_check:
            # GX's own verdict, given the row count: GX's ``table.row_count`` is the
            # frame's length, which adds up over chunks. Not on a frame of that many rows,
            # even one with no columns: GX fingerprints every batch it is handed
            # (``hash_pandas_object``, index included), some 20 bytes a row at once.
            try:
                with _quiet_gx():
                    verdict = volume._validate(metrics={"table.row_count": self.rows})  # noqa: SLF001
                ok, err = bool(verdict["success"]), None
            except Exception:  # noqa: BLE001 - fail closed, like GX's own evaluation errors
                ok, err = False, "evaluation error"
            self._tallies[(VOLUME, None)].add(self.rows, 0 if ok else 1, ok, err, self.rows)

    def close(self) -> None:
        self._keys = {}
        self._spill.close()


# --- one source --------------------------------------------------------------------------------


def validate_dataset(
    suite: Suite,
    handle,
    ds: Dataset,
    cc: CheckContext,
    *,
    known: Mapping[str, Collection],
    history: Sequence[int] = (),
    runner: GXRunner | None = None,
    set_aside: list[str] | None = None,
) -> tuple[list[CheckResult], int]:
    """All checks of one dataset: reader counts, the GX suite, then the suite's SQL checks.

    The GX suite runs on each chunk as it is read (:class:`_ChunkedChecks`): nothing here
    ever holds the whole dataset.
    """
    t = cc.thresholds
    runner = runner or GXRunner(cc.source)
    volume = volume_bounds(ds, history, t)
    try:
        checks, extract, counts, tolerant = _read_into(
            suite, handle, ds, t.chunk_rows, lambda: _ChunkedChecks(runner, ds, known, cc, volume)
        )
    except Exception as exc:  # noqa: BLE001 - fail closed, keep only the type name
        log.warning("dataset %s.%s could not be read (%s)", cc.source, ds.name, type(exc).__name__)
        return [CheckResult(ds.name, READABLE, None, 0, -1, False, type(exc).__name__)], 0
    try:
        if extract.missing_table:
            return [CheckResult(ds.name, TABLE, None, 1, 1, False)], 0
        return _dataset_results(suite, handle, ds, cc, checks, extract, counts, tolerant, set_aside)
    finally:
        checks.close()  # the spilled keys go, however this ends


def _dataset_results(suite, handle, ds, cc, checks, extract, counts, tolerant, set_aside):
    rows = checks.rows
    results: list[CheckResult] = []
    if set_aside is not None:
        set_aside.extend(extract.set_aside)
    if extract.set_aside_of or extract.set_aside_count:
        n = extract.set_aside_count
        results.append(
            CheckResult(ds.name, SET_ASIDE, None, extract.set_aside_of, n, n == 0, blocking=False)
        )
    if extract.extra_columns:
        results.append(CheckResult(ds.name, EXTRA, None, rows, extract.extra_columns, False))
    for c in ds.columns:
        if c.name in extract.missing:
            continue
        if c.kind != "code":
            n = counts.type_errors.get(c.name, 0)
            results.append(CheckResult(ds.name, TYPE, c.name, rows, n, n == 0))
        if c.kind == "datetime":
            n = counts.zero_dates.get(c.name, 0)
            results.append(CheckResult(ds.name, ZERO_DATES, c.name, rows, n, n == 0))
        if tolerant:
            n = counts.bad_utf8.get(c.name, 0)
            results.append(CheckResult(ds.name, UTF8, c.name, rows, n, n == 0))
    gx_counts = checks.finish()
    if checks.error:
        results.append(
            CheckResult(ds.name, "great_expectations_suite", None, rows, -1, False, checks.error)
        )
    for kind, col, element, unexpected, ok, err in gx_counts:
        if kind == COLUMNS and not err and (extract.missing or ok):
            # Per missing column, by our declared name; one row when all are there.
            results.extend(CheckResult(ds.name, EXISTS, c, 1, 1, False) for c in extract.missing)
            if ok:
                results.append(CheckResult(ds.name, COLUMNS, None, len(ds.columns), 0, True))
            continue
        results.append(CheckResult(ds.name, kind, col, element, unexpected, ok, err))
    if ds.freshness and ds.freshness not in extract.missing and rows == 0:
        # Nothing to be fresh: the volume check says whether rows were expected.
        results.append(CheckResult(ds.name, FRESH, ds.freshness, 0, 0, True))
    try:
        results.extend(suite.extra_checks(handle, ds, cc))
    except Exception as exc:  # noqa: BLE001
        results.append(CheckResult(ds.name, REFERENCE, None, rows, -1, False, type(exc).__name__))
    return results, rows


def validate_source(
    suite: Suite,
    handle,
    cc: CheckContext,
    *,
    history: Callable[[str], Sequence[int]] = lambda dataset: (),
    datasets: Sequence[str] | None = None,
) -> Report:
    """Every dataset of a source; ``history(dataset)`` gives past row counts, newest first."""
    started = time.perf_counter()
    try:
        known = suite.known_sets(handle)
    except Exception as exc:  # noqa: BLE001 - no known sets: every code check fails, closed
        log.warning("source %s: known sets could not be read (%s)", cc.source, type(exc).__name__)
        known = {}
    runner = GXRunner(cc.source)
    results: list[CheckResult] = []
    rows: dict[str, int] = {}
    set_aside: list[str] = []
    for ds in suite.datasets:
        if datasets is not None and ds.name not in datasets:
            continue
        res, n = validate_dataset(
            suite,
            handle,
            ds,
            cc,
            known=known,
            history=history(ds.name),
            runner=runner,
            set_aside=set_aside,
        )
        results.extend(res)
        rows[ds.name] = n
    report = Report(
        cc.source,
        cc.as_of,
        results,
        rows,
        round(time.perf_counter() - started, 3),
        set_aside=set_aside,
    )
    log.info(
        "source %s: validation %s: %d checks, %d failed, rows %s",
        cc.source,
        "passed" if report.passed else "FAILED",
        len(results),
        len(report.failed),
        rows,
    )
    return report


def validate_and_record(
    source: str,
    handle,
    as_of: datetime,
    options: Mapping | None,
    warehouse: Engine,
    *,
    run_id: str,
    anonymous_patron: int | None = None,
) -> dict:
    """Run the source's suite on ``handle`` and store the result (counts only) in the
    warehouse's ``validation_runs``; the volume check reads the same table's history.

    Every kind of source comes through here (a database, a folder of exports, a log
    folder, what an API answered), so they are validated, stored and reported alike.
    Raises :class:`MissingSuiteError` for a source without a suite.
    """
    from patron_privacy.warehouse import validation_row_counts, write_validation  # noqa: PLC0415

    suite = require_suite(source)
    thresholds = Thresholds.from_options((options or {}).get("validation"))
    cc = CheckContext(
        source=source, as_of=as_of, thresholds=thresholds, anonymous_patron=anonymous_patron
    )

    def history(dataset: str) -> list[int]:
        with warehouse.connect() as w:
            return validation_row_counts(
                w, source, dataset, as_of, thresholds.volume_history_runs, VOLUME
            )

    report = validate_source(suite, handle, cc, history=history)
    report.run_id = run_id
    with warehouse.begin() as w:
        write_validation(
            w,
            run_id=run_id,
            source=source,
            as_of=as_of,
            results=report.results,
            recorded_at=datetime.now(),  # when the rows were written, not the run's as-of
        )
    out = report.as_dict()
    for line in out["set_aside"]:
        log.warning("set aside (not validated, left as it is): %s", line)
    if not out["passed"]:
        for line in failure_lines(out):
            log.warning("validation failed: %s", line)
    return out


# --- helpers for SQL sources -------------------------------------------------------------------


def sql_orphans(
    engine: Engine,
    ds: Dataset,
    child: str,
    col: str,
    parent: str,
    parent_key: str,
    allowed: Sequence[int] = (),
) -> CheckResult:
    """Rows whose ``col`` names a ``parent`` row that does not exist (NULL is allowed)."""
    c = table(child, column(col)).alias("c")
    p = table(parent, column(parent_key)).alias("p")
    ref = c.c[col]
    cond = [ref.isnot(None)]
    if allowed:
        cond.append(ref.notin_(list(allowed)))
    orphan = and_(*cond, ~exists().where(p.c[parent_key] == ref))
    stmt = select(
        func.count(ref), func.coalesce(func.sum(case((orphan, 1), else_=0)), 0)
    ).select_from(c)
    with engine.connect() as conn:
        element, unexpected = conn.execute(stmt).one()
    return CheckResult(ds.name, REFERENCE, col, int(element), int(unexpected), unexpected == 0)
