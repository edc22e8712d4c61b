"""Libki's validation suite: the tables its retention rules act on, and what must hold in them.

The same mechanism as Koha's (``patron_privacy.validation``). Only non-personal columns
are read — ids, times, codes and flags; never a username, name, file name, note, the
``info`` JSON or a printed document. The checks follow Libki's schema:

* keys (``statistics.id``, ``users.id``, ...) present and unique;
* times possible: not before the floor (1900), not after the as-of date plus a day, and
  not MariaDB's zero dates (Libki's ``statistics.created_on`` is a TIMESTAMP, the clock
  of two rules); a reservation's end and a ban's end may lie ahead;
* codes from their known sets: ``statistics.action`` from the actions Libki writes,
  ``is_guest`` and ``is_troublemaker`` Yes/No, a statistics row's ``client_location``
  from Libki's own ``locations`` (a row at an unknown branch becomes a fact at an
  unknown branch);
* freshness: the newest statistics row is recent (a stale copy of Libki must not look
  like a library whose computers nobody uses);
* volume against the last successful runs; ``users`` and ``statistics`` never empty;
* references, in SQL: a session's, reservation's and print job's account exists.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from patron_privacy.sources.libki import schema
from patron_privacy.validation import (
    CheckContext,
    CheckResult,
    Col,
    Dataset,
    Extract,
    Suite,
    sql_extract,
    sql_orphans,
)

SOURCE = "libki"
LOCATIONS = "locations"
YES_NO = schema.YES_NO


def _dt(name: str, **kw) -> Col:
    return Col(name, "datetime", **kw)


def _id(name: str, **kw) -> Col:
    return Col(name, "int", **kw)


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "statistics",
        (
            _id("id", key=True),
            Col("action", "code", allowed=schema.ACTIONS),
            Col("client_location", "code", allowed=LOCATIONS),
            _dt("created_on", required=True),
            Col("anonymized", "int", allowed=(0, 1)),
        ),
        freshness="created_on",
        expect_rows=True,
    ),
    Dataset(
        "users",
        (
            _id("id", key=True),
            Col("is_guest", "code", required=True, allowed=YES_NO),
            Col("is_troublemaker", "code", required=True, allowed=YES_NO),
            _dt("troublemaker_until", future_ok=True),
            _dt("created_on", required=True),
            _dt("updated_on", required=True),
        ),
        expect_rows=True,
    ),
    Dataset(
        "sessions",
        (
            _id("user_id", key=True),
            _id("client_id", required=True),
            Col("status", "code", required=True, allowed=("active", "locked")),
        ),
    ),
    Dataset(
        "reservations",
        (
            _id("id", key=True),
            _id("user_id", required=True),
            _dt("begin_time", future_ok=True),
            _dt("end_time", required=True, future_ok=True),
        ),
    ),
    Dataset(
        "print_jobs",
        (
            _id("id", key=True),
            _id("user_id"),
            _dt("created_on", required=True),
        ),
    ),
    Dataset(
        "print_files",
        (
            _id("id", key=True),
            _id("user_id"),
            _dt("created_on", required=True),
        ),
    ),
)

# (dataset, column, parent table, parent key)
REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("sessions", "user_id", "users", "id"),
    ("reservations", "user_id", "users", "id"),
    ("print_jobs", "user_id", "users", "id"),
)


def read(engine: Engine, ds: Dataset, chunk_rows: int, tolerant: bool = False) -> Extract:
    return sql_extract(engine, ds.name, ds, chunk_rows, tolerant)


def known_sets(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {LOCATIONS: list(conn.execute(select(schema.locations.c.code)).scalars())}


def reference_checks(engine: Engine, ds: Dataset, cc: CheckContext) -> list[CheckResult]:
    return [
        sql_orphans(engine, ds, ds.name, col, parent, key)
        for name, col, parent, key in REFERENCES
        if name == ds.name
    ]


SUITE = Suite(
    source=SOURCE,
    datasets=DATASETS,
    read=read,
    known_sets=known_sets,
    extra_checks=reference_checks,
)
