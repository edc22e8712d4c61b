"""Benchmark: the retention engine against the raw-SQL floor and a per-patron loop, on Evergreen.

The Koha benchmark (``patron_privacy.bench``) told for Evergreen on PostgreSQL: aging
finished circulations (``finished_circulations`` on ``action.circulation``, the shipped
policy's rule) three ways, each on a freshly reset copy of one identical state:

* the engine: ``enforce_rule`` with facts recorded into a throwaway SQLite warehouse, and
  again with facts disabled, so the cost of facts shows apart;
* the raw-SQL floor: the same conditions as one set-based statement (renewal chains walked
  once with a recursive CTE from their first circulation, then ``DELETE ... RETURNING``
  feeding ``INSERT INTO action.aged_circulation``), and the same statement for ranges of
  chain-head ids (one transaction each); the floor is the faster of the two;
* a per-patron loop: the distinct patrons with eligible circulations, then one statement
  and one commit per patron (on a fixed sample of patrons when there are many,
  extrapolated), as a per-patron purge script would do it.

The data: ``rows`` circulations, ``past`` of them finished before the cutoff, ``patrons``
patrons. One loan in ten is renewed twice (a chain of three circulations linked by
``parent_circ``); one chain in 33 is still open at its last renewal (so none of it may be
aged) and one single loan in 100 still owes money (``xact_finish`` NULL).

What it touches: only the database named in the URL, which it creates if missing. It drops
and rebuilds that database's Evergreen schemas, so it refuses a database that has tables
but no ``public.bench_meta`` marker (one it did not build).

How it fails: every end state is checked against the one computed in plain SQL from the
pristine data (rows left and aged, sums of their ids, and a hash over what each aged row
kept); a mismatch, or a measurement that raised, is reported in ``errors`` and does not stop
the others. Data is built and reset with set-based SQL only; rows are never fetched into
Python, so the benchmark's own memory stays flat at any size. The measurement helpers are
the Koha benchmark's own.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from datetime import datetime
from time import perf_counter

from sqlalchemy import Engine, create_engine, make_url, text

from patron_privacy import bench as common
from patron_privacy.engine import VALID_DATE_FLOOR, Context, Rule, batch_workers, check_schema
from patron_privacy.facts import Pseudonymizer
from patron_privacy.sources.evergreen import schema
from patron_privacy.sources.evergreen.connector import CONNECTOR, use_time_zone

log = logging.getLogger("patron_privacy.bench.evergreen")

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/pp_bench_evergreen"
SOURCE = "evergreen"
CATEGORY = "finished_circulations"
AS_OF = common.AS_OF
MARKER = "bench_meta"
SAVED = "bench_saved_circulation"
RANGE_SIZE = 50_000
LOOP_FULL_MAX = common.LOOP_FULL_MAX
LOOP_SAMPLE = common.LOOP_SAMPLE
PAST_SPAN_S = common.PAST_SPAN_S
BRANCHES = 5
CHAIN = 10  # one loan in CHAIN is renewed twice

AGED_COLUMNS = [c.name for c in schema.aged_circulation.c]


@dataclasses.dataclass(frozen=True)
class Params:
    rows: int
    past: int
    patrons: int
    cutoff: datetime

    @property
    def items(self) -> int:
        return max(100, min(100_000, self.rows // 50))

    @property
    def biblios(self) -> int:
        return max(50, self.items // 2)

    def sql(self) -> dict:
        return {"cutoff": self.cutoff, "floor": VALID_DATE_FLOOR}


def _h(expr: str, salt: str) -> str:
    """A stable pseudo-random non-negative integer from an integer expression."""
    return f"(('x' || substr(md5('{salt}' || ({expr})::text), 1, 8))::bit(32)::bigint)"


# --- the rule in plain SQL, written independently of the engine -----------------------------


def _eligible_cte(head_filter: str) -> str:
    """Chains whose first circulation matches ``head_filter`` and whose every circulation is
    finished, the last before the cutoff. The first circulation finishes before its
    renewals, so a chain can only qualify if its first one finished before the cutoff."""
    return f"""
    WITH RECURSIVE heads AS (
        SELECT h.id FROM action.circulation h
        WHERE h.parent_circ IS NULL AND h.xact_finish IS NOT NULL
          AND h.xact_finish < :cutoff AND ({head_filter})
    ), walk(id, head) AS (
        SELECT id, id FROM heads
        UNION ALL
        SELECT c.id, w.head FROM action.circulation c JOIN walk w ON c.parent_circ = w.id
    ), chain AS (
        SELECT w.head, bool_and(c.xact_finish IS NOT NULL) AS done, max(c.xact_finish) AS fin
        FROM walk w JOIN action.circulation c ON c.id = w.id
        GROUP BY w.head
    ), elig AS (
        SELECT w.id FROM walk w JOIN chain ch ON ch.head = w.head
        WHERE ch.done AND ch.fin < :cutoff AND ch.fin >= :floor
    )"""


_KEPT = {
    "usr_post_code": "COALESCE(ma.post_code, ba.post_code)",
    "usr_home_ou": "u.home_ou",
    "usr_profile": "u.profile",
    "usr_birth_year": "EXTRACT(YEAR FROM u.dob)::int",
    "copy_call_number": "cp.call_number",
    "copy_owning_lib": "cn.owning_lib",
    "copy_circ_lib": "cp.circ_lib",
    "copy_bib_record": "cn.record",
}
_JOINS = """
    LEFT JOIN actor.usr u ON u.id = m.usr
    LEFT JOIN actor.usr_address ma ON ma.id = u.mailing_address
    LEFT JOIN actor.usr_address ba ON ba.id = u.billing_address
    LEFT JOIN asset.copy cp ON cp.id = m.target_copy
    LEFT JOIN asset.call_number cn ON cn.id = cp.call_number"""
# What an aged row kept, hashed: the end-state check compares it with the pristine data.
_AGED_HASH = (
    "hashtext(concat_ws(':', {id}, {home_ou}, {birth_year}, {post_code}, {call_number}, "
    "{xact_finish}))"
)


def _age_sql(head_filter: str) -> str:
    select_list = ", ".join(_KEPT.get(c, f"m.{c}") for c in AGED_COLUMNS)
    return (
        _eligible_cte(head_filter)
        + f""", moved AS (
        DELETE FROM action.circulation c USING elig WHERE c.id = elig.id RETURNING c.*
    )
    INSERT INTO action.aged_circulation ({", ".join(AGED_COLUMNS)})
    SELECT {select_list} FROM moved m {_JOINS}"""
    )


# --- database and data ------------------------------------------------------------------------


def _ensure_database(url: str) -> str:
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"the Evergreen benchmark runs on PostgreSQL, not {u.get_backend_name()}")
    name = u.database or ""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"expected a database name of letters, digits and _, got {name!r}")
    server = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as c:
            exists = c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists.first():
                c.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        server.dispose()
    return name


def _drop_tables(db: Engine, name: str) -> None:
    with db.begin() as c:
        tables = (
            c.execute(
                text(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema = ANY(:schemas)"
                ),
                {"schemas": ["public", *schema.SCHEMAS]},
            )
            .scalars()
            .all()
        )
        if tables and f"public.{MARKER}" not in tables:
            raise RuntimeError(
                f"database {name} has tables but no {MARKER} marker: the benchmark only "
                "rebuilds a database that is empty or that it built itself"
            )
        for s in schema.SCHEMAS:
            c.execute(text(f"DROP SCHEMA IF EXISTS {s} CASCADE"))
        for t in (MARKER, SAVED):
            c.execute(text(f"DROP TABLE IF EXISTS public.{t}"))


def recent_span_s(p: Params) -> int:
    """Circulations inside the window finished in [cutoff, as-of - 1 hour)."""
    return int((AS_OF - p.cutoff).total_seconds()) - 3600


def _build(db: Engine, p: Params) -> dict:
    """The Evergreen state, set-based; returns seconds per step."""
    head = f"(CASE n % {CHAIN} WHEN 2 THEN n - 1 WHEN 3 THEN n - 2 ELSE n END)"
    fin = (
        f"(CASE WHEN n <= {p.past} THEN CAST(:cutoff AS timestamp) - make_interval(secs => "
        f"1 + ({p.past} - n)::bigint * {PAST_SPAN_S} / {max(p.past, 1)}) "
        f"ELSE CAST(:cutoff AS timestamp) + make_interval(secs => "
        f"(n - {p.past} - 1)::bigint * {recent_span_s(p)} / {max(p.rows - p.past, 1)}) END)"
    )
    is_tail = f"(n % {CHAIN} = 3)"
    in_chain = f"(n % {CHAIN} IN (1, 2, 3) AND {head} + 2 <= {p.rows})"
    # One chain in 33 is still open at its last renewal; one single loan in 100 owes money.
    open_ = (
        f"(({is_tail} AND {_h(head, 'open')} % 33 = 0) OR "
        f"(NOT {in_chain} AND {_h('n', 'owes')} % 100 = 0))"
    )
    steps: dict[str, float] = {}
    statements = [
        (
            "org_units",
            "INSERT INTO actor.org_unit_type (id, name, opac_label, depth, parent) VALUES "
            "(1, 'Consortium', 'Everywhere', 0, NULL), (2, 'Branch', 'This Branch', 1, 1)",
            "INSERT INTO actor.org_unit (id, parent_ou, ou_type, shortname, name) VALUES "
            "(1, NULL, 1, 'CONS', 'Consortium')",
            "INSERT INTO actor.org_unit (id, parent_ou, ou_type, shortname, name) "
            f"SELECT 1 + g, 1, 2, 'BR' || g, 'Branch ' || g FROM generate_series(1, {BRANCHES}) g",
        ),
        (
            "groups_locations",
            "INSERT INTO permission.grp_tree (id, name, parent) VALUES "
            "(1, 'Users', NULL), (2, 'Patrons', 1), (3, 'Staff', 1)",
            "INSERT INTO asset.copy_location (id, name, owning_lib) VALUES (1, 'Stacks', 1)",
        ),
        (
            "call_numbers",
            "INSERT INTO asset.call_number (id, creator, editor, record, owning_lib, label, "
            f"label_class) SELECT g, 1, 1, 1 + (g - 1) % {p.biblios}, 2 + g % {BRANCHES}, "
            f"'CN ' || g, 1 FROM generate_series(1, {p.items}) g",
        ),
        (
            "copies",
            "INSERT INTO asset.copy (id, circ_lib, creator, editor, call_number, location, "
            "loan_duration, fine_level, barcode, circ_modifier) "
            f"SELECT g, 2 + g % {BRANCHES}, 1, 1, g, 1, 2, 2, '39' || lpad(g::text, 10, '0'), "
            "(ARRAY['book', 'book', 'book', 'dvd', 'audiobook'])[1 + g % 5] "
            f"FROM generate_series(1, {p.items}) g",
        ),
        (
            "patrons",
            "INSERT INTO actor.usr_address (id, usr, street1, city, country, post_code) "
            "SELECT g, g, g || ' Main St', 'Hartford', 'US', "
            "'061' || lpad((g % 100)::text, 2, '0') "
            f"FROM generate_series(1, {p.patrons}) g",
            "INSERT INTO actor.usr (id, profile, usrname, email, ident_type, first_given_name, "
            "family_name, home_ou, dob, create_date, expire_date, mailing_address) "
            "SELECT g, 2, 'u' || g, 'p' || g || '@example.org', 1, 'First' || g, 'Family' || g, "
            f"2 + g % {BRANCHES}, DATE '1940-01-01' + ({_h('g', 'dob')} % 29000)::int, "
            "'2015-01-01', '2030-01-01', g "
            f"FROM generate_series(1, {p.patrons}) g",
        ),
        (
            # id follows time: ids 1..past finished before the cutoff, the rest after it.
            # A renewal (n % 10 in 2, 3) renews n - 1, for the same patron and copy.
            "circulation",
            "INSERT INTO action.circulation (id, usr, xact_start, xact_finish, target_copy, "
            "circ_lib, circ_staff, renewal_remaining, grace_period, due_date, checkin_time, "
            "stop_fines, stop_fines_time, duration_rule, recurring_fine_rule, max_fine_rule, "
            "parent_circ, copy_location, create_time) "
            f"SELECT n, 1 + {_h(head, 'usr')} % {p.patrons}, fin - days, "
            f"CASE WHEN {open_} THEN NULL ELSE fin END, 1 + {_h(head, 'copy')} % {p.items}, "
            f"2 + {head} % {BRANCHES}, 1, 2, interval '1 day', fin - days + interval '21 days', "
            f"fin, CASE WHEN {in_chain} AND NOT {is_tail} THEN 'RENEW' ELSE 'CHECKIN' END, fin, "
            "'default', 'default', 'default', "
            f"CASE WHEN n % {CHAIN} IN (2, 3) THEN n - 1 END, 1, fin - days "
            f"FROM (SELECT n, {fin} AS fin, "
            f"make_interval(days => 1 + ({_h('n', 'days')} % 28)::int) AS days "
            f"FROM generate_series(1, {p.rows}) n) g",
        ),
    ]
    with db.connect() as c:
        for name, *sqls in statements:
            t = perf_counter()
            for sql in sqls:
                c.execute(text(sql), {"cutoff": p.cutoff})
            c.commit()
            steps[name] = round(perf_counter() - t, 2)
            log.info("built %s in %.1fs", name, steps[name])
        t = perf_counter()
        c.execute(
            text(
                f"CREATE TABLE public.{SAVED} AS SELECT * FROM action.circulation WHERE id <= "
                "(SELECT COALESCE(MAX(id), 0) + 2 FROM action.circulation WHERE xact_finish < "
                ":cutoff) ORDER BY id"
            ),
            {"cutoff": p.cutoff},
        )
        c.execute(text(f"ALTER TABLE public.{SAVED} ADD PRIMARY KEY (id)"))
        c.commit()
        steps["saved_copy"] = round(perf_counter() - t, 2)
    _vacuum(db)
    return steps


def _vacuum(db: Engine) -> float:
    """VACUUM ANALYZE the tables the run changes, so every run starts from the same footing."""
    t = perf_counter()
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for table in ("action.circulation", "action.aged_circulation", "actor.usr"):
            c.execute(text(f"VACUUM (ANALYZE) {table}"))
    return round(perf_counter() - t, 1)


def _mark(db: Engine, p: Params) -> None:
    common.mark(db, f"public.{MARKER}", p, "patron_privacy.sources.evergreen.bench")


def _counts(db: Engine) -> dict:
    tables = ["actor.usr", "asset.copy", "action.circulation", f"public.{SAVED}"]
    out = common.row_counts(db, tables)
    with db.connect() as c:
        out["renewals"] = c.execute(
            text("SELECT COUNT(*) FROM action.circulation WHERE parent_circ IS NOT NULL")
        ).scalar_one()
        out["unfinished"] = c.execute(
            text("SELECT COUNT(*) FROM action.circulation WHERE xact_finish IS NULL")
        ).scalar_one()
    return out


# --- end states -------------------------------------------------------------------------------


def _state(db: Engine) -> dict:
    aged_hash = _AGED_HASH.format(
        id="id",
        home_ou="usr_home_ou",
        birth_year="usr_birth_year",
        post_code="usr_post_code",
        call_number="copy_call_number",
        xact_finish="xact_finish",
    )
    with db.connect() as c:
        row = c.execute(
            text(
                "SELECT (SELECT COUNT(*) FROM action.circulation), "
                "(SELECT COALESCE(SUM(id), 0) FROM action.circulation), "
                "(SELECT COUNT(*) FROM action.aged_circulation), "
                "(SELECT COALESCE(SUM(id), 0) FROM action.aged_circulation), "
                f"(SELECT COALESCE(BIT_XOR({aged_hash}), 0) FROM action.aged_circulation)"
            )
        ).one()
    return {
        "rows": int(row[0]),
        "id_sum": int(row[1]),
        "aged": int(row[2]),
        "aged_id_sum": int(row[3]),
        "aged_hash": int(row[4]),
    }


def _expected(db: Engine, p: Params, pristine: dict) -> dict:
    aged_hash = _AGED_HASH.format(
        id="c.id",
        home_ou=_KEPT["usr_home_ou"],
        birth_year=_KEPT["usr_birth_year"],
        post_code=_KEPT["usr_post_code"],
        call_number=_KEPT["copy_call_number"],
        xact_finish="c.xact_finish",
    )
    with db.connect() as c:
        r = (
            c.execute(
                text(
                    _eligible_cte("true")
                    + f"""
                    SELECT COUNT(*) AS eligible,
                           COUNT(DISTINCT c.usr) AS eligible_patrons,
                           COALESCE(SUM(c.id), 0) AS eligible_id_sum,
                           COALESCE(BIT_XOR({aged_hash}), 0) AS aged_hash,
                           (SELECT COUNT(*) FROM action.circulation
                            WHERE xact_finish < :cutoff) AS past_rows
                    FROM elig JOIN action.circulation c ON c.id = elig.id
                    LEFT JOIN actor.usr u ON u.id = c.usr
                    LEFT JOIN actor.usr_address ma ON ma.id = u.mailing_address
                    LEFT JOIN actor.usr_address ba ON ba.id = u.billing_address
                    LEFT JOIN asset.copy cp ON cp.id = c.target_copy
                    LEFT JOIN asset.call_number cn ON cn.id = cp.call_number
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
        "rows": pristine["rows"] - n,
        "id_sum": pristine["id_sum"] - counts["eligible_id_sum"],
        "aged": pristine["aged"] + n,
        "aged_id_sum": pristine["aged_id_sum"] + counts["eligible_id_sum"],
        "aged_hash": pristine["aged_hash"] ^ counts["aged_hash"],
    }
    counts.pop("aged_hash")
    return {"counts": counts, "end_state": end}


def _reset(db: Engine, pristine: dict) -> dict:
    """Put aged circulations back from the saved copy (untimed by the caller's measurement)."""
    t = perf_counter()
    with db.begin() as c:
        c.execute(text("TRUNCATE action.aged_circulation"))
        c.execute(
            text(
                "INSERT INTO action.circulation SELECT s.* FROM public."
                f"{SAVED} s WHERE NOT EXISTS (SELECT 1 FROM action.circulation c "
                "WHERE c.id = s.id) ORDER BY s.id"
            )
        )
    reset_s = round(perf_counter() - t, 1)
    vacuum_s = _vacuum(db)
    state = _state(db)
    if state != pristine:
        raise RuntimeError(f"reset did not restore the pristine state: {state} != {pristine}")
    return {"reset_s": reset_s, "vacuum_s": vacuum_s}


# --- the measurements -------------------------------------------------------------------------


def _floors(db: Engine, p: Params) -> dict[str, Callable[[], dict]]:
    bounds = text(
        "SELECT MIN(id), MAX(id) FROM action.circulation WHERE parent_circ IS NULL "
        "AND xact_finish < :cutoff AND xact_finish >= :floor"
    )
    single = text(_age_sql("true"))
    ranged = text(_age_sql("h.id BETWEEN :lo AND :hi"))
    return {
        "floor_single": lambda: common.measure_floor_single(db, single, p.sql()),
        "floor_ranged": lambda: common.measure_floor_ranged(db, ranged, bounds, p.sql()),
    }


def _measure_loop(db: Engine, p: Params, expected: dict, full_max: int, sample: int) -> dict:
    """Patrons with eligible circulations, then one statement and one commit per patron."""
    sampled = expected["counts"]["eligible_patrons"] > full_max
    select = text(
        _eligible_cte("true") + " SELECT d.usr FROM (SELECT DISTINCT c.usr FROM elig "
        "JOIN action.circulation c ON c.id = elig.id) d "
        + ("ORDER BY md5('sample' || d.usr), d.usr LIMIT :n" if sampled else "ORDER BY d.usr")
    )
    loop = common.Loop(
        select=select, update=text(_age_sql("h.usr = :patron")), finish=text(_age_sql("true"))
    )
    return common.measure_loop(db, loop, {**p.sql(), "n": sample}, expected, sampled)


def _pseudonymizer(db: Engine) -> tuple[Pseudonymizer, list[str]]:
    with db.connect() as c:
        lo, hi = c.execute(
            text(
                "SELECT EXTRACT(YEAR FROM MIN(xact_start))::int, "
                "EXTRACT(YEAR FROM MAX(xact_start))::int FROM action.circulation"
            )
        ).one()
    return common.bench_pseudonymizer(lo, hi)


def _server(db: Engine) -> dict:
    names = (
        "shared_buffers",
        "work_mem",
        "maintenance_work_mem",
        "effective_cache_size",
        "synchronous_commit",
        "wal_level",
        "max_wal_size",
        "max_parallel_workers_per_gather",
        "jit",
        "random_page_cost",
        "TimeZone",
    )
    with db.connect() as c:
        version = c.execute(text("SELECT version()")).scalar_one()
        rows = c.execute(
            text("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(:n)"),
            {"n": list(names)},
        ).all()
    return {"version": version, "settings": {k: f"{v}{u or ''}" for k, v, u in rows}}


def _rule() -> tuple[Rule, dict, str]:
    rule, opts, version = common.policy_rule(SOURCE, CATEGORY, CONNECTOR.default_options)
    opts["aging"] = {**CONNECTOR.default_options["aging"], **(opts.get("aging") or {})}
    # The benchmark measures the engine's own aging, whatever the shipped policy chooses.
    opts["aging"][CATEGORY] = "engine"
    return rule, opts, version


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
    common.check_sizes(rows, past, patrons)
    rule, opts, policy_version = _rule()
    batch_size = int(opts.get("batch_size", 10_000))
    p = Params(rows=rows, past=past, patrons=patrons, cutoff=AS_OF - rule.cutoff_delta)
    errors: list[str] = []
    rss: dict[str, int] = {"start": common.rss_kb()}
    report: dict = {
        "benchmark": f"{SOURCE}.{CATEGORY}: engine vs raw-SQL floor vs per-patron loop",
        "started_at": common.now_iso(),
        "machine": common.machine_info(),
        "params": {
            "database": None,
            "rows": rows,
            "past": past,
            "patrons": patrons,
            "as_of": AS_OF.isoformat(),
            "window": rule.window_text,
            "cutoff": p.cutoff.isoformat(),
            "timezone": opts.get("timezone"),
            "blockers": list(rule.blockers),
            "policy_version": policy_version,
            "batch_size": batch_size,
            "range_size": RANGE_SIZE,
            "items": p.items,
            "chains": f"1 loan in {CHAIN} renewed twice; 1 chain in 33 still open",
        },
        "errors": errors,
    }
    name = _ensure_database(url)
    report["params"]["database"] = name
    db = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if opts.get("timezone"):
        use_time_zone(db, str(opts["timezone"]))
    measurements: dict[str, dict] = {}
    try:
        report["postgresql"] = _server(db)
        t = perf_counter()
        _drop_tables(db, name)
        schema.create_schema(db)
        _mark(db, p)
        steps = _build(db, p)
        report["build_s"] = round(perf_counter() - t, 2)
        report["build_steps_s"] = steps
        rss["after_build"] = common.rss_kb()
        log.info("built %s rows in %.1fs", rows, report["build_s"])

        pristine = _state(db)
        expected = _expected(db, p, pristine)
        report["data"] = {"counts": _counts(db), **expected["counts"]}
        report["pristine_state"] = pristine
        report["expected_end_state"] = expected["end_state"]

        ctx = Context(as_of=AS_OF, holds_loader=lambda: [], options=dict(opts))
        CONNECTOR.prepare(db, opts, ctx)  # time zone, aging mode, Evergreen's settings
        with db.connect() as c:
            check_schema(c, [rule], ctx)
        pseudo, years = _pseudonymizer(db)
        report["params"]["pseudonym_periods"] = years
        common.check_dry_run(db, rule, ctx, expected, report)
        # Aging runs newest first, so one session whatever the policy asks.
        report["params"]["workers"] = batch_workers(db, rule, int(opts.get("workers", 1)))
        plan = common.standard_plan(
            db,
            rule,
            ctx,
            batch_size,
            pseudo,
            _floors(db, p),
            lambda: _measure_loop(db, p, expected, loop_full_max, loop_sample),
            workers=report["params"]["workers"],
            trace_memory=trace_memory,
        )
        common.run_plan(
            plan,
            measurements,
            state=lambda: _state(db),
            expected=expected,
            reset=lambda: _reset(db, pristine),
            errors=errors,
            rss=rss,
        )
    except Exception as exc:
        errors.append(f"fatal: {type(exc).__name__}: {exc}")
        raise
    finally:
        db.dispose()
        common.write_report(report, measurements, rss, out)
    return report
