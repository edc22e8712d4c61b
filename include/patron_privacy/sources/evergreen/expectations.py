"""Evergreen's validation suite: the tables the retention rules act on, and what must hold.

The same mechanism as Koha's (``patron_privacy.validation``); what differs is Evergreen's:
tables live in schemas (``action.circulation``), so datasets are named ``schema.table`` and
read by a hook of their own, and times are stored with their zone, so they are read as the
library's local time (the session's zone, which the connector sets) like every other date.

Only non-personal columns are read: ids, dates and amounts, never a name, card, email,
address, note or phone. The checks:

* keys present and unique; a circulation's, hold's, bill's and activity's patron present;
* event dates possible: not before the floor, not after the as-of (plus slack); due and
  expiry dates may lie ahead;
* freshness: the newest checkout (``action.circulation.xact_start``) is recent, so a stale
  copy of Evergreen is not mistaken for a library where nothing happens;
* volume: row counts against the last successful runs; patrons and circulations are
  never empty in a library that lends;
* references, in SQL: a circulation's, hold's, bill's and activity's patron exists, and a
  circulation's copy exists (aging copies the copy's call number and library into
  ``action.aged_circulation``, so a missing copy would stop the run midway).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from sqlalchemy import Engine, and_, case, exists, func, inspect, select

from patron_privacy.sources.evergreen import schema as S
from patron_privacy.validation import (
    REFERENCE,
    CheckContext,
    CheckResult,
    Col,
    Dataset,
    Extract,
    Suite,
)

SOURCE = "evergreen"


def _dt(name: str, **kw) -> Col:
    return Col(name, "datetime", **kw)


def _id(name: str, **kw) -> Col:
    return Col(name, "int", **kw)


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "action.circulation",
        (
            _id("id", key=True),
            _id("usr", required=True),
            _id("target_copy", required=True),
            _id("circ_lib", required=True),
            _id("parent_circ"),
            _dt("xact_start", required=True),
            _dt("xact_finish"),
            _dt("checkin_time"),
            _dt("due_date", future_ok=True),
        ),
        freshness="xact_start",
        expect_rows=True,
    ),
    Dataset(
        "action.hold_request",
        (
            _id("id", key=True),
            _id("usr", required=True),
            _id("pickup_lib", required=True),
            _dt("request_time", required=True),
            _dt("fulfillment_time"),
            _dt("cancel_time"),
            _dt("expire_time", future_ok=True),
        ),
    ),
    Dataset(
        "money.grocery",
        (
            _id("id", key=True),
            _id("usr", required=True),
            _dt("xact_start", required=True),
            _dt("xact_finish"),
        ),
    ),
    Dataset(
        "money.billing",
        (
            _id("id", key=True),
            _id("xact", required=True),
            _dt("billing_ts", required=True),
            Col("amount", "float", required=True),
        ),
    ),
    Dataset(
        "money.payment",
        (
            _id("id", key=True),
            _id("xact", required=True),
            _dt("payment_ts", required=True),
            Col("amount", "float", required=True),
        ),
    ),
    Dataset(
        "actor.usr",
        (
            _id("id", key=True),
            _id("profile", required=True),
            _id("home_ou", required=True),
            _dt("create_date", required=True),
            _dt("expire_date", required=True, future_ok=True),
        ),
        expect_rows=True,
    ),
    Dataset(
        "actor.usr_activity",
        (
            _id("id", key=True),
            _id("usr"),
            _id("etype", required=True),
            _dt("event_time", required=True),
        ),
    ),
)

# (dataset, column, parent table, parent key)
REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("action.circulation", "usr", "actor.usr", "id"),
    ("action.circulation", "target_copy", "asset.copy", "id"),
    ("action.hold_request", "usr", "actor.usr", "id"),
    ("money.grocery", "usr", "actor.usr", "id"),
    ("actor.usr_activity", "usr", "actor.usr", "id"),
)


def _chunks(engine: Engine, stmt, columns: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    if not columns:
        return
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(
            stmt
        )
        for rows in result.partitions(chunk_rows):
            yield pd.DataFrame.from_records(rows, columns=columns)


def read(engine: Engine, ds: Dataset, chunk_rows: int, tolerant: bool = False) -> Extract:
    """A dataset's declared columns, streamed; instants as local time (the session's zone)."""
    table = S.metadata.tables[ds.name]
    insp = inspect(engine)
    if not insp.has_table(table.name, schema=table.schema):
        return Extract(missing_table=True, missing=tuple(c.name for c in ds.columns))
    have = {c["name"] for c in insp.get_columns(table.name, schema=table.schema)}
    present = [c.name for c in ds.columns if c.name in have]
    missing = tuple(c.name for c in ds.columns if c.name not in have)
    zone = func.current_setting("TimeZone")
    cols = []
    for name in present:
        col = table.c[name]
        if getattr(col.type, "timezone", False):
            cols.append(func.timezone(zone, col).label(name))
        else:
            cols.append(col)
    stmt = select(*cols).select_from(table)
    return Extract(missing=missing, chunks=_chunks(engine, stmt, present, chunk_rows))


def reference_checks(engine: Engine, ds: Dataset, cc: CheckContext) -> list[CheckResult]:
    out = []
    for name, col, parent, key in REFERENCES:
        if name != ds.name:
            continue
        child_t = S.metadata.tables[name].alias("child")
        parent_t = S.metadata.tables[parent].alias("parent")
        ref = child_t.c[col]
        orphan = and_(ref.isnot(None), ~exists().where(parent_t.c[key] == ref))
        stmt = select(
            func.count(ref), func.coalesce(func.sum(case((orphan, 1), else_=0)), 0)
        ).select_from(child_t)
        with engine.connect() as conn:
            element, unexpected = conn.execute(stmt).one()
        out.append(
            CheckResult(ds.name, REFERENCE, col, int(element), int(unexpected), unexpected == 0)
        )
    return out


SUITE = Suite(
    source=SOURCE,
    datasets=DATASETS,
    read=read,
    extra_checks=reference_checks,
)
