"""Benchmark: the retention engine against the raw-SQL floor and Koha's per-patron loop.

What it measures: anonymizing Koha's reading history (``returned_loans`` on
``old_issues``, the shipped policy's rule) on MariaDB, three ways, each on a
freshly reset copy of one identical state:

* the engine: ``enforce_rule`` with facts recorded into a throwaway SQLite
  warehouse, and again with facts disabled, so the cost of facts shows apart,
  both with the policy's ``workers`` sessions; and once more with facts and one
  session, so what the sessions bring shows too;
* the raw-SQL floor: the same conditions as one set-based ``UPDATE``, and as
  that ``UPDATE`` in primary-key ranges (one transaction each); the floor is
  the faster of the two;
* a per-patron loop like Koha's ``batch_anonymise.pl``: the distinct patrons
  with eligible loans, then one ``UPDATE`` and one commit per patron (on a
  fixed random sample of patrons when there are many, extrapolated).

What it touches: only the database named in the URL, which it creates if
missing. It drops and rebuilds that database's tables, so it refuses a
database that has tables but no ``bench_meta`` marker (one it did not build).

How it fails: every end state is checked against the one computed in plain
SQL from the pristine data (row count, anonymized count, sum and CRC of
``borrowernumber``); a mismatch, or a measurement that raised, is reported in
``errors`` and does not stop the others. Data is built and reset with
set-based SQL only (MariaDB's Sequence engine); rows are never fetched into
Python, so the benchmark's own memory stays flat at any size.

The measurement helpers that know nothing of Koha (``measure_engine``,
``check_end_state``, ``summarize``, ``machine_info``, ``rate``, ``ratio``,
``now_iso``, ``rss_kb``) are public: the Evergreen benchmark
(``sources/evergreen/bench.py``) uses the same ones, so both measure and report
the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

import sqlalchemy
from sqlalchemy import Engine, create_engine, make_url, text

from patron_privacy.engine import (
    VALID_DATE_FLOOR,
    Context,
    Rule,
    check_schema,
    enforce_rule,
    inspect_rule,
)
from patron_privacy.facts import Pseudonymizer, write_circulation_facts
from patron_privacy.policy import load_policy
from patron_privacy.sources.koha import schema
from patron_privacy.sources.koha.connector import CONNECTOR
from patron_privacy.warehouse import create_warehouse

log = logging.getLogger("patron_privacy.bench")

SOURCE = "koha"
CATEGORY = "returned_loans"
AS_OF = datetime(2026, 11, 30)
MARKER = "bench_meta"
SAVED = "bench_saved_borrowers"
RANGE_SIZE = 50_000
LOOP_FULL_MAX = 20_000
LOOP_SAMPLE = 5_000
PAST_SPAN_S = 3 * 365 * 86_400
BRANCHES = 5
PURGE_POLL_S = 0.05
PURGE_TIMEOUT_S = 600
# The measurements given as rows per second in the summary.
RATED = ("engine", "engine_no_facts", "engine_one_worker", "floor_single", "floor_ranged", "loop")

# No outstanding fine on the loan: Koha 25 moves a fine's issue_id to
# old_issue_id at check-in, older rows may still carry issue_id (as the
# connector's blocker reads both).
NO_FINE = """
    NOT EXISTS (SELECT 1 FROM accountlines a
                WHERE a.old_issue_id = o.issue_id AND a.amountoutstanding <> 0)
    AND NOT EXISTS (SELECT 1 FROM accountlines a
                    WHERE a.issue_id = o.issue_id AND a.amountoutstanding <> 0)
"""
# The rule's conditions in plain SQL, written independently of the engine:
# past the window, a real date, still identifying, patron has not asked to
# keep history, no outstanding fine on the loan.
ELIGIBLE = f"""
    o.returndate < :cutoff AND o.returndate >= :floor
    AND o.borrowernumber IS NOT NULL AND o.borrowernumber <> :anon
    AND NOT EXISTS (SELECT 1 FROM borrowers b
                    WHERE b.borrowernumber = o.borrowernumber AND b.privacy = 0)
    AND {NO_FINE}
"""
# Keep Koha's ON UPDATE timestamp, as the connector does.
SET_ANON = "SET o.borrowernumber = :anon, o.`timestamp` = o.`timestamp`"


@dataclasses.dataclass(frozen=True)
class Params:
    rows: int
    past: int
    patrons: int
    cutoff: datetime

    @property
    def anon(self) -> int:
        return self.patrons + 1

    @property
    def items(self) -> int:
        return max(100, min(100_000, self.rows // 50))

    @property
    def biblios(self) -> int:
        return max(50, self.items // 2)

    @property
    def fines(self) -> int:
        """Outstanding fines on past-window loans (as many settled ones again)."""
        return min(5_000, max(1, self.past // 20)) if self.past else 0

    def sql(self) -> dict:
        return {"cutoff": self.cutoff, "floor": VALID_DATE_FLOOR, "anon": self.anon}


def rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def loadavg() -> list[float] | None:
    """Other work on the machine skews every timing: recorded next to each one."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def rate(rows: int, seconds: float) -> float | None:
    return round(rows / seconds, 1) if seconds > 0 else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


# --- database and data ------------------------------------------------------------------------


def ensure_database(url: str) -> str:
    u = make_url(url)
    if u.get_backend_name() not in ("mysql", "mariadb"):
        raise ValueError(f"the benchmark runs on MariaDB, not {u.get_backend_name()}")
    name = u.database or ""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"expected a database name of letters, digits and _, got {name!r}")
    server = create_engine(u.set(database=""))
    try:
        with server.begin() as c:
            c.execute(
                text(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
    finally:
        server.dispose()
    return name


def admin_sql(root_url: str, sql: str) -> None:
    """One statement outside a transaction (CREATE or DROP DATABASE) on a server's
    administrative database; the PostgreSQL benchmarks make their databases with it."""
    root = create_engine(root_url, isolation_level="AUTOCOMMIT")
    try:
        with root.connect() as c:
            c.execute(text(sql))
    finally:
        root.dispose()


def drop_tables(db: Engine, name: str) -> None:
    with db.connect() as c:
        tables = list(c.execute(text("SHOW TABLES")).scalars())
        if tables and MARKER not in tables:
            raise RuntimeError(
                f"database {name} has tables but no {MARKER} marker: the benchmark only "
                "rebuilds a database that is empty or that it built itself"
            )
        c.execute(text("SET SESSION foreign_key_checks = 0"))
        try:
            for t in tables:
                c.execute(text(f"DROP TABLE IF EXISTS `{t}`"))
        finally:
            c.execute(text("SET SESSION foreign_key_checks = 1"))
        c.commit()


def build_old_issues(db: Engine, p: Params) -> dict:
    """The Koha state, set-based; returns seconds per step."""
    steps: dict[str, float] = {}
    seq = "seq_1_to_{}".format
    statements = [
        (
            "branches",
            f"INSERT INTO branches (branchcode, branchname) "
            f"SELECT CONCAT('BR', seq), CONCAT('Branch ', seq) FROM {seq(BRANCHES)}",
        ),
        (
            "categories",
            "INSERT INTO categories (categorycode, description, category_type) VALUES "
            "('PT', 'Adult', 'A'), ('CH', 'Child', 'C'), ('ST', 'Staff', 'S'), "
            "('ANON', 'Anonymous', 'X')",
        ),
        (
            "itemtypes",
            "INSERT INTO itemtypes (itemtype, description) VALUES "
            "('BK', 'Book'), ('DVD', 'DVD'), ('CD', 'Audio CD'), ('MAG', 'Magazine')",
        ),
        (
            "biblio",
            f"INSERT INTO biblio (biblionumber, title, author, datecreated) "
            f"SELECT seq, CONCAT('Title ', seq), CONCAT('Author ', seq % 997), '2020-01-01' "
            f"FROM {seq(p.biblios)}",
        ),
        (
            "items",
            f"INSERT INTO items (itemnumber, biblionumber, biblioitemnumber, barcode, "
            f"dateaccessioned, homebranch, holdingbranch, itype, ccode) "
            f"SELECT seq, 1 + (seq - 1) % {p.biblios}, 1 + (seq - 1) % {p.biblios}, "
            f"CONCAT('39', LPAD(seq, 10, '0')), '2019-01-01', "
            f"CONCAT('BR', 1 + seq % {BRANCHES}), CONCAT('BR', 1 + seq % {BRANCHES}), "
            f"ELT(1 + seq % 5, 'BK', 'BK', 'BK', 'DVD', 'CD'), "
            f"ELT(1 + seq % 3, 'FIC', 'NFIC', 'JUV') "
            f"FROM {seq(p.items)}",
        ),
        (
            "borrowers",
            f"INSERT INTO borrowers (borrowernumber, cardnumber, surname, firstname, email, "
            f"dateofbirth, branchcode, categorycode, dateenrolled, dateexpiry, privacy) "
            f"SELECT seq, CONCAT('2', LPAD(seq, 12, '0')), CONCAT('Surname', seq), "
            f"CONCAT('First', seq), CONCAT('p', seq, '@example.org'), "
            f"DATE '1940-01-01' + INTERVAL (CRC32(CONCAT('dob', seq)) % 29000) DAY, "
            f"CONCAT('BR', 1 + seq % {BRANCHES}), "
            f"CASE WHEN seq % 500 = 0 THEN 'ST' WHEN seq % 8 = 0 THEN 'CH' ELSE 'PT' END, "
            f"DATE '2015-01-01' + INTERVAL (seq % 3000) DAY, "
            f"DATE '2027-01-01' + INTERVAL (seq % 1000) DAY, "
            # ~5% asked Koha to keep their reading history (privacy = 0)
            f"IF(CRC32(CONCAT('privacy', seq)) % 100 < 5, 0, 1) "
            f"FROM {seq(p.patrons)}",
        ),
        (
            "anonymous_patron",
            f"INSERT INTO borrowers (borrowernumber, cardnumber, surname, branchcode, "
            f"categorycode, privacy) VALUES ({p.anon}, 'ANONYMOUS', 'Anonymous', 'BR1', 'ANON', 1)",
        ),
        (
            "systempreferences",
            f"INSERT INTO systempreferences (variable, value, explanation, type) VALUES "
            f"('AnonymousPatron', '{p.anon}', 'Patron used for anonymized history', 'Integer')",
        ),
        (
            # issue_id follows time; ids 1..past were returned before the cutoff, the rest
            # after it (and before as-of). Patrons and items are spread by hash.
            "old_issues",
            f"INSERT INTO old_issues (issue_id, borrowernumber, itemnumber, date_due, "
            f"branchcode, returndate, checkin_library, renewals_count, `timestamp`, "
            f"issuedate, onsite_checkout) "
            f"SELECT g.n, 1 + CRC32(CONCAT('b', g.n)) % {p.patrons}, "
            f"1 + CRC32(CONCAT('i', g.n)) % {p.items}, "
            f"g.ret - INTERVAL g.days DAY + INTERVAL 21 DAY, "
            f"CONCAT('BR', 1 + g.n % {BRANCHES}), g.ret, "
            f"CONCAT('BR', 1 + CRC32(CONCAT('c', g.n)) % {BRANCHES}), "
            f"CRC32(CONCAT('r', g.n)) % 3, g.ret, g.ret - INTERVAL g.days DAY, 0 "
            f"FROM (SELECT CAST(seq AS SIGNED) AS n, "
            f"  IF(seq <= {p.past}, "
            f"     CAST(:cutoff AS DATETIME) - INTERVAL "
            f"       (1 + ({p.past} - CAST(seq AS SIGNED)) * {PAST_SPAN_S} DIV {max(p.past, 1)}) "
            f"       SECOND, "
            f"     CAST(:cutoff AS DATETIME) + INTERVAL "
            f"       ((CAST(seq AS SIGNED) - {p.past} - 1) * {recent_span_s(p)} "
            f"        DIV {max(p.rows - p.past, 1)}) SECOND) AS ret, "
            f"  1 + CRC32(CONCAT('d', seq)) % 28 AS days "
            f"  FROM {seq(p.rows)}) AS g",
        ),
        # Fresh statistics before anything joins these tables: planned as if empty, the
        # fines' join below scans old_issues once per fine. InnoDB statistics only, as on
        # a typical Koha server (no histograms).
        *(
            (f"analyze_{t}", f"ANALYZE TABLE `{t}` PERSISTENT FOR COLUMNS () INDEXES ()")
            for t in ("borrowers", "items", "old_issues")
        ),
    ]
    if p.fines:
        stride = max(1, p.past // (2 * p.fines))
        statements.append(
            (
                # Odd fines are still owed (they block), even ones are settled (they do
                # not). Both issue_id (what the connector reads) and old_issue_id (where
                # Koha 25 keeps a returned loan's id) name the loan.
                "accountlines",
                f"INSERT INTO accountlines (issue_id, old_issue_id, borrowernumber, itemnumber, "
                f"date, amount, amountoutstanding, description, debit_type_code, status, "
                f"interface, branchcode) "
                f"SELECT o.issue_id, o.issue_id, o.borrowernumber, o.itemnumber, o.returndate, "
                f"2.50, IF(f.seq % 2 = 1, 2.50, 0), 'Overdue fine', 'OVERDUE', "
                f"IF(f.seq % 2 = 1, 'UNRETURNED', 'RETURNED'), 'intranet', o.branchcode "
                f"FROM {seq(2 * p.fines)} f STRAIGHT_JOIN old_issues o "
                f"ON o.issue_id = 1 + ((f.seq - 1) * {stride}) % {p.past}",
            )
        )
    statements.append(
        ("analyze_accountlines", "ANALYZE TABLE accountlines PERSISTENT FOR COLUMNS () INDEXES ()")
    )
    with db.connect() as c:
        c.execute(text("SET SESSION foreign_key_checks = 0, unique_checks = 0"))
        try:
            for name, sql in statements:
                t = perf_counter()
                result = c.execute(text(sql), {"cutoff": p.cutoff})
                if result.returns_rows:
                    result.all()
                c.commit()
                steps[name] = round(perf_counter() - t, 2)
                log.info("built %s in %.1fs", name, steps[name])
        finally:
            c.execute(text("SET SESSION foreign_key_checks = 1, unique_checks = 1"))
        t = perf_counter()
        c.execute(
            text(
                f"CREATE TABLE `{SAVED}` (issue_id INT NOT NULL PRIMARY KEY, borrowernumber INT) "
                "ENGINE=InnoDB"
            )
        )
        c.execute(
            text(
                f"INSERT INTO `{SAVED}` SELECT issue_id, borrowernumber FROM old_issues o "
                "WHERE o.returndate < :cutoff ORDER BY issue_id"
            ),
            {"cutoff": p.cutoff},
        )
        c.commit()
        steps["saved_copy"] = round(perf_counter() - t, 2)
    return steps


def recent_span_s(p: Params) -> int:
    """Loans inside the window were returned in [cutoff, as-of - 1 hour)."""
    return int((AS_OF - p.cutoff).total_seconds()) - 3600


def mark(db: Engine, table: str, params, built_by: str) -> None:
    """The marker that lets a later run drop what this one built, and nothing else."""
    with db.begin() as c:
        c.execute(text(f"CREATE TABLE {table} (k VARCHAR(64) PRIMARY KEY, v TEXT)"))
        c.execute(
            text(f"INSERT INTO {table} (k, v) VALUES (:k, :v)"),
            [
                {"k": "params", "v": json.dumps(dataclasses.asdict(params), default=str)},
                {"k": "built_by", "v": built_by},
            ],
        )


def row_counts(db: Engine, tables: list[str]) -> dict[str, int]:
    with db.connect() as c:
        return {t: c.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}


def mark_built(db: Engine, p: Params) -> None:
    mark(db, f"`{MARKER}`", p, "patron_privacy.bench")


def data_counts(db: Engine) -> dict:
    out = row_counts(db, ["borrowers", "items", "old_issues", "accountlines", SAVED])
    with db.connect() as c:
        out["accountlines_outstanding"] = c.execute(
            text("SELECT COUNT(*) FROM accountlines WHERE amountoutstanding <> 0")
        ).scalar_one()
        out["patrons_keep_history"] = c.execute(
            text("SELECT COUNT(*) FROM borrowers WHERE privacy = 0")
        ).scalar_one()
    return out


# --- end states -------------------------------------------------------------------------------


def loan_state(db: Engine, p: Params) -> dict:
    """The whole borrowernumber column, summarised: what every method must agree on."""
    with db.connect() as c:
        row = c.execute(
            text(
                "SELECT COUNT(*), COALESCE(SUM(borrowernumber = :anon), 0), "
                "COALESCE(SUM(borrowernumber), 0), "
                "BIT_XOR(CRC32(CONCAT(issue_id, ':', IFNULL(borrowernumber, 'N')))) "
                "FROM old_issues"
            ),
            {"anon": p.anon},
        ).one()
    return {"rows": int(row[0]), "anonymized": int(row[1]), "sum": int(row[2]), "crc": int(row[3])}


def expected_outcome(db: Engine, p: Params, pristine: dict) -> dict:
    """Counts by reason on the pristine data, and the end state every method must reach."""
    with db.connect() as c:
        r = (
            c.execute(
                text(
                    f"""
                SELECT COUNT(*) AS past_rows,
                       COALESCE(SUM(ident), 0) AS past_identifying,
                       COALESCE(SUM(ident AND kh), 0) AS keep_history,
                       COALESCE(SUM(ident AND NOT kh AND fine), 0) AS outstanding_balance,
                       COALESCE(SUM(e), 0) AS eligible,
                       COUNT(DISTINCT IF(e, borrowernumber, NULL)) AS eligible_patrons,
                       COALESCE(SUM(IF(e, borrowernumber, 0)), 0) AS eligible_sum,
                       BIT_XOR(IF(e, CRC32(CONCAT(issue_id, ':', borrowernumber))
                                     ^ CRC32(CONCAT(issue_id, ':', :anon)), 0)) AS crc_delta
                FROM (
                    SELECT d.*, (ident AND NOT kh AND NOT fine) AS e FROM (
                        SELECT o.issue_id, o.borrowernumber,
                               (o.borrowernumber IS NOT NULL AND o.borrowernumber <> :anon)
                                   AS ident,
                               EXISTS (SELECT 1 FROM borrowers b
                                       WHERE b.borrowernumber = o.borrowernumber
                                         AND b.privacy = 0) AS kh,
                               NOT ({NO_FINE}) AS fine
                        FROM old_issues o
                        WHERE o.returndate < :cutoff AND o.returndate >= :floor
                    ) AS d
                ) AS x
                """
                ),
                p.sql(),
            )
            .mappings()
            .one()
        )
    counts = {k: int(v) for k, v in r.items()}
    n = counts["eligible"]
    end = {
        "rows": pristine["rows"],
        "anonymized": pristine["anonymized"] + n,
        "sum": pristine["sum"] - counts["eligible_sum"] + p.anon * n,
        "crc": pristine["crc"] ^ counts["crc_delta"],
    }
    return {"counts": counts, "end_state": end}


def _purge_state(db: Engine) -> tuple[int, int] | None:
    """(next transaction number, transactions purged below it) from InnoDB's status."""
    with db.connect() as c:
        status = c.execute(text("SHOW ENGINE INNODB STATUS")).one()[2]
    counter = re.search(r"Trx id counter (\d+)", status)
    purged = re.search(r"Purge done for trx's n:o < (\d+)", status)
    if not (counter and purged):
        return None
    return int(counter.group(1)), int(purged.group(1))


def wait_for_purge(db: Engine) -> dict:
    """Wait until InnoDB has purged every transaction committed so far.

    An UPDATE leaves its old index entries to InnoDB's background purge. A
    single big transaction is purged only after it commits, after its timer
    stopped; batches are purged while later batches run, inside theirs.
    Timing up to the end of purge compares the two fairly, and waiting before
    each measurement starts it on the same footing. Other sessions' open
    transactions can hold purge back: then it gives up after PURGE_TIMEOUT_S.
    """
    t = perf_counter()
    state = _purge_state(db)
    if state is None:
        return {"purge_s": None, "purge_timed_out": False}
    target = state[0]
    while perf_counter() - t < PURGE_TIMEOUT_S:
        state = _purge_state(db)
        if state is None or state[1] >= target:
            return {"purge_s": round(perf_counter() - t, 2), "purge_timed_out": False}
        time.sleep(PURGE_POLL_S)
    return {"purge_s": round(perf_counter() - t, 2), "purge_timed_out": True}


def reset_loans(db: Engine, p: Params, pristine: dict) -> dict:
    """Put borrowernumber back from the saved copy (untimed by the caller's measurement)."""
    t = perf_counter()
    with db.begin() as c:
        c.execute(
            text(
                f"UPDATE old_issues o JOIN `{SAVED}` s ON s.issue_id = o.issue_id "
                "SET o.borrowernumber = s.borrowernumber, o.`timestamp` = o.`timestamp` "
                "WHERE NOT (o.borrowernumber <=> s.borrowernumber)"
            )
        )
    reset_s = round(perf_counter() - t, 1)
    state = loan_state(db, p)
    if state != pristine:
        raise RuntimeError(f"reset did not restore the pristine state: {state} != {pristine}")
    return {"reset_s": reset_s, "purge_wait_s_after_reset": wait_for_purge(db)["purge_s"]}


def add_purge_time(m: dict, purge: dict) -> None:
    """Time through the end of InnoDB's purge, beside the time to commit."""
    m["purge_after_s"] = purge["purge_s"]
    m["purge_timed_out"] = purge["purge_timed_out"]
    if m.get("seconds_is_extrapolated"):
        # The sampled loop's purge includes the untimed completion: not comparable.
        m["seconds_incl_purge"] = m["rows_per_s_incl_purge"] = None
        return
    if purge["purge_s"] is None or purge["purge_timed_out"] or m.get("seconds") is None:
        m["seconds_incl_purge"] = m["rows_per_s_incl_purge"] = None
        return
    total = m["seconds"] + purge["purge_s"]
    m["seconds_incl_purge"] = round(total, 3)
    m["rows_per_s_incl_purge"] = rate(m["rows_changed"], total)


def check_end_state(name: str, m: dict, state: dict, expected: dict, errors: list[str]) -> None:
    m["end_state"] = state
    want_rows = expected["counts"]["eligible"]
    m["end_state_matches"] = state == expected["end_state"] and m["rows_changed"] == want_rows
    if not m["end_state_matches"]:
        errors.append(
            f"{name}: end state differs: changed {m['rows_changed']} (expected {want_rows}), "
            f"state {state} (expected {expected['end_state']})"
        )


# --- the measurements -------------------------------------------------------------------------


def engine_context(db: Engine, opts: dict) -> Context:
    ctx = Context(as_of=AS_OF, holds_loader=lambda: [], options=opts)
    CONNECTOR.prepare(db, opts, ctx)  # resolves AnonymousPatron, as a real run does
    return ctx


def _pseudonymizer(db: Engine) -> tuple[Pseudonymizer, list[str]]:
    with db.connect() as c:
        lo, hi = c.execute(
            text("SELECT YEAR(MIN(issuedate)), YEAR(MAX(issuedate)) FROM old_issues")
        ).one()
    return bench_pseudonymizer(lo, hi)


def measure_engine(
    db: Engine,
    rule: Rule,
    ctx: Context,
    batch_size: int,
    *,
    facts: bool,
    pseudo: Pseudonymizer | None = None,
    trace: bool = False,
    workers: int = 1,
) -> dict:
    cat = rule.category
    split = {"before_change_s": 0.0, "recording_s": 0.0, "warehouse_write_s": 0.0}
    tmp = None
    wh = None
    if facts:
        tmp = tempfile.TemporaryDirectory(prefix="pp-bench-warehouse-")
        wh = create_engine(f"sqlite:///{tmp.name}/warehouse.db")
        create_warehouse(wh)

        def sink(rows: list[dict]) -> int:
            t = perf_counter()
            with wh.begin() as w:
                n = write_circulation_facts(w, rows)
            split["warehouse_write_s"] += perf_counter() - t
            return n

        record = cat.before_change

        def timed_before_change(conn, where, c):
            t = perf_counter()
            try:
                recording = record(conn, where, c)
            finally:
                split["before_change_s"] += perf_counter() - t

            def timed_recording() -> int:
                t = perf_counter()
                try:
                    return recording()
                finally:
                    split["recording_s"] += perf_counter() - t

            return timed_recording

        cat = dataclasses.replace(cat, before_change=timed_before_change)
        run_ctx = dataclasses.replace(ctx, facts_sink=sink, pseudonymizer=pseudo)
    else:
        cat = dataclasses.replace(cat, before_change=None)
        run_ctx = dataclasses.replace(ctx, facts_sink=None, pseudonymizer=None)
    run_rule = dataclasses.replace(rule, category=cat)

    marks: list[float] = []
    traced: list[int] = []

    def after_batch(n: int) -> None:
        marks.append(perf_counter())
        if trace:
            traced.append(tracemalloc.get_traced_memory()[0])

    try:
        if trace:
            tracemalloc.start()
        t0 = perf_counter()
        result = enforce_rule(
            db, run_rule, run_ctx, batch_size=batch_size, workers=workers, after_batch=after_batch
        )
        seconds = perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if trace else None
    finally:
        if trace:
            tracemalloc.stop()
    out = {
        "seconds": round(seconds, 3),
        "rows_changed": result.changed,
        "rows_per_s": rate(result.changed, seconds),
        "batches": result.batches,
        "batch_size": batch_size,
        "workers": workers,
        "verification_s": round(t0 + seconds - marks[-1], 2) if marks else None,
        "result": result.as_dict(),
    }
    if marks:
        durations = sorted(b - a for a, b in zip([t0, *marks[:-1]], marks, strict=True))
        out["batch_s"] = {
            "min": round(durations[0], 3),
            "median": round(durations[len(durations) // 2], 3),
            "max": round(durations[-1], 3),
        }
    if facts:
        with wh.connect() as w:
            stored = w.execute(text("SELECT COUNT(*) FROM circulation_facts")).scalar_one()
        out["facts_recorded"] = result.facts_recorded
        out["facts_in_warehouse"] = stored
        out["facts_read_s"] = round(split["before_change_s"], 2)
        out["facts_recording_s"] = round(split["recording_s"], 2)
        out["facts_warehouse_write_s"] = round(split["warehouse_write_s"], 2)
        out["note"] = (
            "facts_read_s: reading the batch's rows on the source connection; "
            "facts_recording_s: pseudonymizing and writing them, alongside the change"
        )
        wh.dispose()
        tmp.cleanup()
    if trace:
        out["tracemalloc"] = {
            "peak_bytes": peak,
            "after_first_batch_bytes": traced[0] if traced else None,
            "after_last_batch_bytes": traced[-1] if traced else None,
            "max_between_batches_bytes": max(traced) if traced else None,
        }
    return out


def loan_floors(db: Engine, p: Params) -> dict[str, Callable[[], dict]]:
    single = text(f"UPDATE old_issues o {SET_ANON} WHERE {ELIGIBLE}")
    ranged = text(
        f"UPDATE old_issues o {SET_ANON} WHERE o.issue_id BETWEEN :lo AND :hi AND {ELIGIBLE}"
    )
    bounds = text(
        "SELECT MIN(issue_id), MAX(issue_id) FROM old_issues o "
        "WHERE o.returndate < :cutoff AND o.returndate >= :floor"
    )
    return {
        "floor_single": lambda: measure_floor_single(db, single, p.sql()),
        "floor_ranged": lambda: measure_floor_ranged(db, ranged, bounds, p.sql()),
    }


def measure_koha_loop(db: Engine, p: Params, expected: dict, full_max: int, sample: int) -> dict:
    """Koha's batch_anonymise.pl: patrons with eligible loans, one UPDATE and commit each."""
    sampled = expected["counts"]["eligible_patrons"] > full_max
    # Left to itself MariaDB reads the patrons in borrowernumber order through the patron
    # index, one random row lookup per loan in the table (minutes at 5M rows): the loop is
    # given the plan the floor gets (the returndate range or one scan) instead.
    loans = "old_issues o IGNORE INDEX (old_issuesborridx, old_issues_old_bordate)"
    if sampled:
        select = text(
            f"SELECT d.borrowernumber FROM (SELECT DISTINCT o.borrowernumber FROM {loans} "
            f"WHERE {ELIGIBLE}) AS d "
            f"ORDER BY CRC32(CONCAT('sample', d.borrowernumber)), d.borrowernumber LIMIT :n"
        )
    else:
        select = text(
            f"SELECT DISTINCT o.borrowernumber FROM {loans} WHERE {ELIGIBLE} "
            f"ORDER BY o.borrowernumber"
        )
    update = text(
        f"UPDATE old_issues o {SET_ANON} "
        "WHERE o.borrowernumber = :patron AND o.returndate < :cutoff AND o.returndate >= :floor "
        f"AND {NO_FINE}"
    )
    finish = text(f"UPDATE old_issues o {SET_ANON} WHERE {ELIGIBLE}")
    loop = Loop(select=select, update=update, finish=finish)
    return measure_loop(db, loop, {**p.sql(), "n": sample}, expected, sampled)


# --- measurements both benchmarks share ---------------------------------------------------------


def measure_floor_single(db: Engine, stmt, params: dict) -> dict:
    """The floor as one set-based statement in one transaction."""
    t0 = perf_counter()
    with db.begin() as c:
        n = c.execute(stmt, params).rowcount
    seconds = perf_counter() - t0
    return {"seconds": round(seconds, 3), "rows_changed": n, "rows_per_s": rate(n, seconds)}


def measure_floor_ranged(db: Engine, stmt, bounds, params: dict) -> dict:
    """The floor's statement over primary-key ranges (``:lo``..``:hi``), one commit each.

    ``bounds`` selects the lowest and highest key that can qualify; finding them is timed.
    """
    n = 0
    ranges = 0
    t0 = perf_counter()
    with db.connect() as c:
        lo, hi = c.execute(bounds, params).one()
        c.rollback()
        if lo is not None:
            for start in range(int(lo), int(hi) + 1, RANGE_SIZE):
                with c.begin():
                    span = {"lo": start, "hi": start + RANGE_SIZE - 1}
                    n += c.execute(stmt, {**params, **span}).rowcount
                ranges += 1
    seconds = perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "rows_changed": n,
        "rows_per_s": rate(n, seconds),
        "range_size": RANGE_SIZE,
        "ranges": ranges,
    }


@dataclasses.dataclass(frozen=True)
class Loop:
    """A per-patron loop: ``select`` lists the patrons, ``update`` runs once per ``:patron``.

    ``finish`` completes the patrons a sample left out, untimed, so the end state can be
    checked in full.
    """

    select: object
    update: object
    finish: object


def measure_loop(db: Engine, loop: Loop, params: dict, expected: dict, sampled: bool) -> dict:
    """One statement and one commit per patron, extrapolated from a sample when sampled."""
    changed = 0
    with db.connect() as c:
        t0 = perf_counter()
        # At most full_max (or sample) ids: bounded, whatever the table's size.
        patrons = list(c.execute(loop.select, params).scalars())
        c.rollback()
        select_s = perf_counter() - t0
        t1 = perf_counter()
        for patron in patrons:
            with c.begin():
                changed += c.execute(loop.update, {**params, "patron": patron}).rowcount
        update_s = perf_counter() - t1
    out = {
        "patrons_total": expected["counts"]["eligible_patrons"],
        "patrons_run": len(patrons),
        "select_s": round(select_s, 2),
        "update_s": round(update_s, 2),
    }
    if not sampled:
        seconds = select_s + update_s
        return out | {
            "sampled": False,
            "seconds": round(seconds, 3),
            "seconds_is_extrapolated": False,
            "rows_changed": changed,
            "rows_per_s": rate(changed, seconds),
        }
    eligible = expected["counts"]["eligible"]
    per_row = update_s / changed if changed else 0.0
    est = select_s + per_row * eligible
    with db.begin() as c:
        rest = c.execute(loop.finish, params).rowcount
    return out | {
        "sampled": True,
        "sample_rows_changed": changed,
        "sample_rows_per_s": rate(changed, update_s),
        "seconds": round(est, 3),
        "seconds_is_extrapolated": True,
        "rows_per_s": rate(eligible, est),
        "completed_untimed_rows": rest,
        "rows_changed": changed + rest,
    }


def bench_pseudonymizer(first_year: int, last_year: int) -> tuple[Pseudonymizer, list[str]]:
    """Throwaway keys, one per year the loans span, for a throwaway warehouse."""
    years = [str(y) for y in range(int(first_year), int(last_year) + 1)]
    keys = {y: hashlib.sha256(f"pp-bench-{y}".encode()).hexdigest() for y in years}
    return Pseudonymizer(keys, "bench"), years


def check_dry_run(db: Engine, rule: Rule, ctx: Context, expected: dict, report: dict) -> None:
    """The engine's dry run must count what the independent SQL counts."""
    dry = inspect_rule(db, rule, ctx, "dry_run")
    report["engine_dry_run"] = {
        "kept": dry.kept,
        "remaining": dry.remaining,
        "duration_s": dry.duration_s,
    }
    if dry.remaining != expected["counts"]["eligible"]:
        report["errors"].append(
            f"engine dry run counts {dry.remaining} to change, raw SQL counts "
            f"{expected['counts']['eligible']}"
        )


def standard_plan(
    db: Engine,
    rule: Rule,
    ctx: Context,
    batch_size: int,
    pseudo: Pseudonymizer,
    floors: dict[str, Callable[[], dict]],
    loop: Callable[[], dict],
    *,
    workers: int = 1,
    trace_memory: bool = False,
) -> list[tuple[str, Callable[[], dict]]]:
    """Engine with and without facts, with the policy's ``workers`` sessions and (when
    that is more than one) with one, the floors, the loop; then, if asked, the engine again
    under ``tracemalloc``, which shows whether Python's memory stays flat between batches
    but runs about three times slower (at 5M rows, most of an hour). Peak RSS is always
    reported.
    """

    def engine(facts: bool, trace: bool = False, sessions: int = workers) -> Callable[[], dict]:
        return lambda: measure_engine(
            db,
            rule,
            ctx,
            batch_size,
            facts=facts,
            pseudo=pseudo if facts else None,
            trace=trace,
            workers=sessions,
        )

    plan = [
        ("engine", engine(True)),
        ("engine_no_facts", engine(False)),
        *([("engine_one_worker", engine(True, sessions=1))] if workers > 1 else []),
        *floors.items(),
        ("loop", loop),
    ]
    if trace_memory:
        plan.append(("engine_tracemalloc", engine(True, trace=True)))
    return plan


def run_plan(
    plan: list[tuple[str, Callable[[], dict]]],
    measurements: dict[str, dict],
    *,
    state: Callable[[], dict],
    expected: dict,
    reset: Callable[[], dict],
    errors: list[str],
    rss: dict[str, int],
    settle: Callable[[dict], None] | None = None,
) -> None:
    """Each measurement on the same pristine state, its end state checked, then reset.

    Results go into ``measurements`` as they come, so a reset that fails still leaves
    the ones before it for the report. ``settle`` runs after a measurement, before its
    end state is read (MariaDB waits for purge there). A measurement that raises is
    reported and the others still run.
    """
    for key, measure in plan:
        log.info("measuring %s", key)
        m: dict = {"started_at": now_iso(), "loadavg_before": loadavg()}
        try:
            m.update(measure())
            if settle is not None:
                settle(m)
            check_end_state(key, m, state(), expected, errors)
        except Exception as exc:  # noqa: BLE001 - reported in the JSON; the others still run
            log.exception("%s failed", key)
            m["error"] = f"{type(exc).__name__}: {exc}"
            errors.append(f"{key}: {m['error']}")
        m["loadavg_after"] = loadavg()
        rss[f"after_{key}"] = rss_kb()
        m.update(reset())
        measurements[key] = m
        log.info("%s: %s rows/s", key, m.get("rows_per_s"))


def write_report(report: dict, measurements: dict, rss: dict[str, int], out: str) -> None:
    summarize(report, measurements, rss)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


# --- facts about the run ----------------------------------------------------------------------


def machine_info() -> dict:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = None
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": loadavg(),
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlalchemy": sqlalchemy.__version__,
    }


def server_info(db: Engine) -> dict:
    names = (
        "innodb_buffer_pool_size",
        "innodb_flush_log_at_trx_commit",
        "innodb_flush_method",
        "innodb_log_file_size",
        "innodb_change_buffering",
        "innodb_io_capacity",
        "optimizer_switch",
    )
    with db.connect() as c:
        version = c.execute(text("SELECT VERSION()")).scalar_one()
        rows = c.execute(
            text("SHOW GLOBAL VARIABLES WHERE Variable_name IN :names").bindparams(
                sqlalchemy.bindparam("names", expanding=True)
            ),
            {"names": list(names)},
        ).all()
    return {"version": version, "variables": {k: v for k, v in rows}}


# --- the run ----------------------------------------------------------------------------------


def _code_versions() -> dict[str, str]:
    """Which engine and connector were measured: both change while results are compared."""
    from patron_privacy import engine  # noqa: PLC0415 - only its file is wanted
    from patron_privacy.sources.koha import connector  # noqa: PLC0415

    files = {
        "engine.py": engine.__file__,
        "koha/connector.py": connector.__file__,
        "bench.py": __file__,
    }
    return {k: hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16] for k, f in files.items()}


def policy_rule(source: str, category: str, defaults: dict) -> tuple[Rule, dict, str]:
    """The shipped policy's rule and options: the benchmark measures what a run enforces."""
    policy = load_policy()
    rule = next(r for r in policy.rules_for(source) if r.category.name == category)
    return rule, {**defaults, **policy.options(source)}, policy.version


def check_sizes(rows: int, past: int, patrons: int) -> None:
    if rows < 1 or patrons < 1 or not 0 <= past <= rows:
        raise ValueError(
            f"expected rows >= 1, patrons >= 1 and 0 <= past <= rows; got "
            f"rows={rows}, past={past}, patrons={patrons}"
        )


def run(
    url: str,
    rows: int,
    past: int,
    patrons: int,
    out: str,
    *,
    loop_full_max: int = LOOP_FULL_MAX,
    loop_sample: int = LOOP_SAMPLE,
    trace_memory: bool = False,
) -> dict:
    """Build the state, measure engine, floor and loop on it, write and return the JSON."""
    check_sizes(rows, past, patrons)
    rule, opts, policy_version = policy_rule(SOURCE, CATEGORY, CONNECTOR.default_options)
    batch_size = int(opts.get("batch_size", 10_000))
    workers = int(opts.get("workers", 1))
    p = Params(rows=rows, past=past, patrons=patrons, cutoff=AS_OF - rule.cutoff_delta)
    errors: list[str] = []
    rss: dict[str, int] = {"start": rss_kb()}
    report: dict = {
        "benchmark": f"{SOURCE}.{CATEGORY}: engine vs raw-SQL floor vs per-patron loop",
        "started_at": now_iso(),
        "machine": machine_info(),
        "params": {
            "database": None,
            "rows": rows,
            "past": past,
            "patrons": patrons,
            "as_of": AS_OF.isoformat(),
            "window": rule.window_text,
            "cutoff": p.cutoff.isoformat(),
            "blockers": list(rule.blockers),
            "policy_version": policy_version,
            "batch_size": batch_size,
            "workers": workers,
            "range_size": RANGE_SIZE,
            "items": p.items,
            "fines_outstanding": p.fines,
            "fines_settled": p.fines,
            "anonymous_patron": p.anon,
        },
        "code_sha256": _code_versions(),
        "errors": errors,
    }
    name = ensure_database(url)
    report["params"]["database"] = name
    db = create_engine(url, pool_pre_ping=True)
    measurements: dict[str, dict] = {}
    try:
        report["mariadb"] = server_info(db)
        t = perf_counter()
        drop_tables(db, name)
        schema.create_schema(db)
        mark_built(db, p)
        steps = build_old_issues(db, p)
        report["build_s"] = round(perf_counter() - t, 2)
        report["build_steps_s"] = steps
        rss["after_build"] = rss_kb()
        log.info("built %s rows in %.1fs", rows, report["build_s"])

        pristine = loan_state(db, p)
        expected = expected_outcome(db, p, pristine)
        report["data"] = {"counts": data_counts(db), **expected["counts"]}
        report["pristine_state"] = pristine
        report["expected_end_state"] = expected["end_state"]
        report["purge_wait_s_after_build"] = wait_for_purge(db)["purge_s"]

        ctx = engine_context(db, opts)
        if ctx.anonymous_patron != p.anon:
            errors.append(f"AnonymousPatron resolved to {ctx.anonymous_patron}, not {p.anon}")
        with db.connect() as c:
            check_schema(c, [rule], ctx)
        pseudo, years = _pseudonymizer(db)
        report["params"]["pseudonym_periods"] = years
        check_dry_run(db, rule, ctx, expected, report)
        plan = standard_plan(
            db,
            rule,
            ctx,
            batch_size,
            pseudo,
            loan_floors(db, p),
            lambda: measure_koha_loop(db, p, expected, loop_full_max, loop_sample),
            workers=workers,
            trace_memory=trace_memory,
        )
        run_plan(
            plan,
            measurements,
            state=lambda: loan_state(db, p),
            expected=expected,
            reset=lambda: reset_loans(db, p, pristine),
            errors=errors,
            rss=rss,
            settle=lambda m: add_purge_time(m, wait_for_purge(db)),
        )
    except Exception as exc:
        errors.append(f"fatal: {type(exc).__name__}: {exc}")
        raise
    finally:
        db.dispose()
        write_report(report, measurements, rss, out)
    return report


def summarize(report: dict, measurements: dict[str, dict], rss: dict[str, int]) -> None:
    report["measurements"] = measurements
    if "engine_tracemalloc" in measurements:
        measurements["engine_tracemalloc"]["note"] = (
            "same run under tracemalloc, for memory only: its time is not comparable"
        )
    floors = {
        k: measurements[k]["rows_per_s"]
        for k in ("floor_single", "floor_ranged")
        if measurements.get(k, {}).get("rows_per_s")
    }
    floor_key = max(floors, key=floors.get) if floors else None
    floor_rps = floors.get(floor_key) if floor_key else None
    rps = {k: measurements.get(k, {}).get("rows_per_s") for k in RATED}
    report["floor"] = {"method": floor_key, "rows_per_s": floor_rps}
    report["rows_per_s"] = rps
    engine_s = measurements.get("engine", {}).get("seconds")
    bare_s = measurements.get("engine_no_facts", {}).get("seconds")
    report["ratios"] = {
        "engine_vs_floor": ratio(rps["engine"], floor_rps),
        "engine_no_facts_vs_floor": ratio(rps["engine_no_facts"], floor_rps),
        "engine_one_worker_vs_floor": ratio(rps["engine_one_worker"], floor_rps),
        "engine_vs_loop": ratio(rps["engine"], rps["loop"]),
        "engine_no_facts_vs_loop": ratio(rps["engine_no_facts"], rps["loop"]),
        "facts_cost_s": round(engine_s - bare_s, 2) if engine_s and bare_s else None,
    }
    # The same, timed through the end of InnoDB's purge (see wait_for_purge).
    purged = {
        k: measurements.get(k, {}).get("rows_per_s_incl_purge")
        for k in ("engine", "engine_no_facts", "engine_one_worker", "floor_single", "floor_ranged")
    }
    floors_p = {k: purged[k] for k in ("floor_single", "floor_ranged") if purged[k]}
    floor_p_key = max(floors_p, key=floors_p.get) if floors_p else None
    floor_p = floors_p.get(floor_p_key) if floor_p_key else None
    report["incl_purge"] = {
        "rows_per_s": purged,
        "floor": {"method": floor_p_key, "rows_per_s": floor_p},
        "engine_vs_floor": ratio(purged["engine"], floor_p),
        "engine_no_facts_vs_floor": ratio(purged["engine_no_facts"], floor_p),
        "engine_one_worker_vs_floor": ratio(purged["engine_one_worker"], floor_p),
    }
    loop = measurements.get("loop", {})
    report["loop_sampled_patrons"] = loop.get("patrons_run") if loop.get("sampled") else None
    report["end_states_match"] = bool(measurements) and all(
        m.get("end_state_matches") for m in measurements.values()
    )
    traced = measurements.get("engine_tracemalloc", {}).get("tracemalloc", {})
    rss["end"] = rss_kb()
    report["memory"] = {
        "ru_maxrss_kb": rss["end"],
        "ru_maxrss_kb_by_phase": rss,
        "engine_tracemalloc_peak_bytes": traced.get("peak_bytes"),
    }
    if isinstance(report.get("machine"), dict):
        report["machine"]["loadavg_at_end"] = loadavg()
    report["finished_at"] = now_iso()
