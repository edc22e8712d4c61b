"""Koha's validation suite: the tables the retention rules act on, and what must hold in them.

Only non-personal columns are read: ids, dates, codes, amounts and flags — never a
name, card number, email, address, note or message. Each dataset is one Koha table
(the rules act on it, or its blockers read it); the checks follow the Koha schema:

* keys (``issue_id``, ``borrowernumber``, ...) are present and unique;
* event dates are possible: not before the floor (1900), not after the as-of date
  plus a day, and not MariaDB's zero dates; scheduled dates (due, expiry) may lie in
  the future;
* codes come from Koha's own reference tables (``branches``, ``itemtypes``,
  ``categories``) or Koha's fixed values (``privacy`` 0/1/2, notice statuses);
* freshness: the newest return in ``old_issues`` and the newest ``statistics`` row
  are at most ``freshness_days`` before the as-of (a stale copy of Koha must not be
  mistaken for a library where nothing happens);
* volume: each table's row count against the median of the last successful runs;
  ``borrowers`` and ``old_issues`` are never empty in a library that lends;
* references, in SQL: a loan's, hold's, fine's or notice's patron exists (NULL, or
  the anonymous patron, is allowed), and a loan's item exists. ``statistics``,
  ``search_history`` and ``action_logs`` have no foreign key in Koha and keep the
  numbers of deleted patrons by design, so they are not checked.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from patron_privacy.sources.koha import schema
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

SOURCE = "koha"
T = schema.metadata.tables

BRANCHES, ITEMTYPES, CATEGORIES = "branches", "itemtypes", "categories"
PRIVACY = (0, 1, 2)  # 0 keep history forever, 1 default, 2 never keep
FLAG = (0, 1)
NOTICE_STATUS = ("sent", "pending", "failed", "deleted")


def _dt(name: str, **kw) -> Col:
    return Col(name, "datetime", **kw)


def _id(name: str, **kw) -> Col:
    return Col(name, "int", **kw)


def _code(name: str, allowed, **kw) -> Col:
    return Col(name, "code", allowed=allowed, **kw)


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "old_issues",
        (
            _id("issue_id", key=True),
            _id("borrowernumber"),
            _id("itemnumber"),
            _dt("issuedate"),
            _dt("returndate"),
            _dt("date_due", future_ok=True),
            _code("branchcode", BRANCHES),
            _id("renewals_count"),
        ),
        freshness="returndate",
        expect_rows=True,
    ),
    Dataset(
        "issues",
        (
            _id("issue_id", key=True),
            _id("borrowernumber", required=True),
            _id("itemnumber", required=True),
            _dt("issuedate"),
            _dt("date_due", future_ok=True),
            _code("branchcode", BRANCHES),
        ),
    ),
    Dataset(
        "borrowers",
        (
            _id("borrowernumber", key=True),
            _code("branchcode", BRANCHES, required=True),
            _code("categorycode", CATEGORIES, required=True),
            _dt("dateenrolled"),
            _dt("dateexpiry", future_ok=True),
            Col("privacy", "int", required=True, allowed=PRIVACY),
            Col("anonymized", "int", required=True, allowed=FLAG),
            Col("protected", "int", required=True, allowed=FLAG),
        ),
        expect_rows=True,
    ),
    Dataset(
        "accountlines",
        (
            _id("accountlines_id", key=True),
            _id("borrowernumber"),
            _id("issue_id"),
            _id("old_issue_id"),
            _dt("date"),
            Col("amount", "float"),
            Col("amountoutstanding", "float"),
            _code("branchcode", BRANCHES),
        ),
    ),
    Dataset(
        "statistics",
        (
            _dt("datetime"),
            _code("branch", BRANCHES),
            _code("itemtype", ITEMTYPES),
            _code("categorycode", CATEGORIES),
            _id("borrowernumber"),
            _id("itemnumber"),
            Col("value", "float"),
        ),
        freshness="datetime",
    ),
    Dataset(
        "old_reserves",
        (
            _id("reserve_id", key=True),
            _id("borrowernumber"),
            _dt("reservedate"),
            _dt("timestamp"),
            _dt("expirationdate", future_ok=True),
            _code("branchcode", BRANCHES),
            _code("itemtype", ITEMTYPES),
        ),
    ),
    Dataset(
        "reserves",
        (
            _id("reserve_id", key=True),
            _id("borrowernumber", required=True),
            _dt("reservedate"),
            _dt("expirationdate", future_ok=True),
            _code("branchcode", BRANCHES),
        ),
    ),
    Dataset(
        "message_queue",
        (
            _id("message_id", key=True),
            _id("borrowernumber"),
            _dt("time_queued"),
            _code("status", NOTICE_STATUS, required=True),
        ),
    ),
    Dataset(
        "action_logs",
        (
            _id("action_id", key=True),
            _dt("timestamp", required=True),
            _id("object"),
        ),
    ),
    Dataset(
        "search_history",
        (
            _id("id", key=True),
            _id("userid", required=True),
            _dt("time", required=True),
        ),
    ),
)

# (dataset, column, parent table, parent key); NULL and the anonymous patron are allowed.
REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("old_issues", "borrowernumber", "borrowers", "borrowernumber"),
    ("old_issues", "itemnumber", "items", "itemnumber"),
    ("issues", "borrowernumber", "borrowers", "borrowernumber"),
    ("issues", "itemnumber", "items", "itemnumber"),
    ("accountlines", "borrowernumber", "borrowers", "borrowernumber"),
    ("old_reserves", "borrowernumber", "borrowers", "borrowernumber"),
    ("reserves", "borrowernumber", "borrowers", "borrowernumber"),
    ("message_queue", "borrowernumber", "borrowers", "borrowernumber"),
)


def read(engine: Engine, ds: Dataset, chunk_rows: int, tolerant: bool = False) -> Extract:
    return sql_extract(engine, ds.name, ds, chunk_rows, tolerant)


def known_sets(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {
            BRANCHES: list(conn.execute(select(T["branches"].c.branchcode)).scalars()),
            ITEMTYPES: list(conn.execute(select(T["itemtypes"].c.itemtype)).scalars()),
            CATEGORIES: list(conn.execute(select(T["categories"].c.categorycode)).scalars()),
        }


def reference_checks(engine: Engine, ds: Dataset, cc: CheckContext) -> list[CheckResult]:
    allowed = (cc.anonymous_patron,) if cc.anonymous_patron is not None else ()
    return [
        sql_orphans(
            engine,
            ds,
            ds.name,
            col,
            parent,
            key,
            allowed=allowed if parent == "borrowers" else (),
        )
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
