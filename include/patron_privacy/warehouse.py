"""The project's own database: de-identified facts, audit rows and legal holds.

The warehouse is where statistics are published from, so it must never hold
what the sources are being cleaned of: no name, card number, birth date,
address, email, phone or free text. Facts carry keyed pseudonyms and bands;
audit rows carry counts. The one exception is ``legal_hold_subjects`` — the
patron ids a court order names — which is kept apart, read only by the
engine, and emptied when the hold is released.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
)

from patron_privacy.engine import CategoryResult, Hold

metadata = MetaData()

retention_audit = Table(
    "retention_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False, index=True),
    Column("policy_version", String(64), nullable=False),
    Column("as_of", DateTime, nullable=False),
    Column("source", String(32), nullable=False),
    Column("category", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("window", String(32), nullable=False),
    Column("cutoff", String(32), nullable=False),
    Column("matched", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("kept_by_blocker", Text, nullable=False),
    Column("remaining", Integer, nullable=False),
    Column("data_errors", Integer, nullable=False),
    Column("facts_recorded", Integer, nullable=False),
    Column("batches", Integer, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("error", String(500)),
    Column("recorded_at", DateTime, nullable=False),
)

circulation_facts = Table(
    "circulation_facts",
    metadata,
    # HMAC of the source's loan id: idempotent inserts without a link back.
    Column("fact_key", String(64), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("loan_date", Date, nullable=False, index=True),
    Column("return_date", Date),
    Column("branch", String(32)),
    Column("item_type", String(32)),
    Column("collection", String(80)),
    Column("patron_category", String(32)),
    Column("category_type", String(4)),
    Column("age_band", String(16)),
    Column("patron_pseudonym", String(64)),
    Column("renewals", Integer, nullable=False, default=0),
    Column("reporting_period", String(8), nullable=False),
)

fact_watermarks = Table(
    "fact_watermarks",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("high_water", DateTime, nullable=False),
)

# Differential privacy: every noised release spends epsilon from its reporting
# year's budget; one row per release published (a rerun spends again).
dp_budget_ledger = Table(
    "dp_budget_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reporting_year", String(8), nullable=False, index=True),
    Column("release_period", String(16), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("mechanism", String(200), nullable=False),
    Column("recorded_at", DateTime, nullable=False),
)

legal_holds = Table(
    "legal_holds",
    metadata,
    Column("hold_id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    Column("categories", Text),  # JSON list, NULL = every category
    Column("date_from", DateTime),
    Column("date_to", DateTime),
    Column("request_ref", String(64), nullable=False),
    Column("placed_at", DateTime, nullable=False),
    Column("released_at", DateTime),
)

# Restricted: the only warehouse table with patron ids. Never joined into a
# report, never logged; rows go when the hold is released.
legal_hold_subjects = Table(
    "legal_hold_subjects",
    metadata,
    Column("hold_id", Integer, ForeignKey("legal_holds.hold_id"), nullable=False),
    Column("patron_id", String(64), nullable=False),
    UniqueConstraint("hold_id", "patron_id"),
)

# The law-enforcement request register (patron_privacy.requests_register): the
# process, never the people. No column names a patron; free text is checked by
# patron_privacy.identifiers before it is written. ``legal_holds.request_ref``
# cites ``ref``.
request_register = Table(
    "request_register",
    metadata,
    Column("ref", String(32), primary_key=True),  # LE-2026-001
    Column("received_on", Date, nullable=False),
    Column("agency", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # informal, subpoena, court_order, ...
    Column("asks_for", Text, nullable=False),  # described in words
    Column("referred_to", String(200)),
    Column("counsel_reviewed_on", Date),
    Column("decision", String(16), nullable=False),  # pending, released, ...
    Column("decided_on", Date),
    Column("records_released", Integer),
    Column("recorded_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# Who answered the CEO's approval step for a disclosure, when, and what was built.
disclosure_reviews = Table(
    "disclosure_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_ref", String(32), ForeignKey("request_register.ref"), nullable=False),
    Column("outcome", String(16), nullable=False),  # approved | rejected
    Column("reviewed_by", String(250), nullable=False),  # the Airflow user who answered
    Column("reviewed_at", DateTime, nullable=False),  # library local time
    Column("dag_run_id", String(250), nullable=False),
    Column("package_path", String(500)),
    Column("package_records", Integer),
    Column("package_sha256", String(64)),
    UniqueConstraint("request_ref", "dag_run_id"),
)


# Schema changes go through Alembic (``patron_privacy/migrations``). Its version table has
# its own name so a warehouse sharing a database with Airflow's metadata (whose Alembic
# uses ``alembic_version``) cannot confuse the two.
VERSION_TABLE = "warehouse_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(conn: Connection | None = None):
    from alembic.config import Config  # noqa: PLC0415 - only when migrating

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


@cache
def head_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return frozenset(ScriptDirectory.from_config(_alembic_config()).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    """The revisions the database is at (empty before its first migration). Read directly,
    not through Alembic's context, which logs two INFO lines into every task's log."""
    from sqlalchemy import column, inspect, table  # noqa: PLC0415

    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return frozenset()
        version = table(VERSION_TABLE, column("version_num"))
        return frozenset(conn.execute(select(version.c.version_num)).scalars())


def migrate_warehouse(engine: Engine, *, wait_s: float = 300.0) -> bool:
    """Bring the warehouse's schema to the newest migration; True when anything ran.

    Every step opens the warehouse, so this is called often: when the schema is current
    it costs one read of the version table. Otherwise one process migrates, under the
    warehouse's ``migrate`` lock, while others (parallel tasks on a fresh warehouse)
    wait and then find nothing left to do. A warehouse made before migrations existed
    (``create_all``) is adopted: the first revision creates only the tables it lacks.
    """
    if current_revisions(engine) == head_revisions():
        return False
    from alembic import command  # noqa: PLC0415

    from patron_privacy.locks import warehouse_lock  # noqa: PLC0415

    with warehouse_lock(engine, "migrate", wait_s=wait_s):
        if current_revisions(engine) == head_revisions():
            return False
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
    return True


def create_warehouse(engine: Engine) -> None:
    """The warehouse ready for use: migrated to the newest schema (see migrate_warehouse)."""
    migrate_warehouse(engine)


def write_audit(
    conn: Connection,
    *,
    run_id: str,
    policy_version: str,
    as_of: datetime,
    results: Sequence[CategoryResult | dict],
    recorded_at: datetime,
) -> int:
    rows = []
    for r in results:
        d = r.as_dict() if isinstance(r, CategoryResult) else dict(r)
        rows.append(
            {
                "run_id": run_id,
                "policy_version": policy_version,
                "as_of": as_of,
                "source": d["source"],
                "category": d["category"],
                "mode": d["mode"],
                "action": d["action"],
                "window": d["window"],
                "cutoff": d["cutoff"],
                "matched": d["matched"],
                "changed": d["changed"],
                "kept_by_blocker": json.dumps(d["kept"], sort_keys=True),
                "remaining": d["remaining"],
                "data_errors": d["data_errors"],
                "facts_recorded": d.get("facts_recorded", 0),
                "batches": d.get("batches", 0),
                "duration_s": d["duration_s"],
                "error": (d.get("error") or None) and str(d["error"])[:500],
                "recorded_at": recorded_at,
            }
        )
    if rows:
        conn.execute(insert(retention_audit), rows)
    return len(rows)


def active_holds(conn: Connection, source: str) -> list[Hold]:
    q = (
        select(
            legal_hold_subjects.c.patron_id,
            legal_holds.c.categories,
            legal_holds.c.date_from,
            legal_holds.c.date_to,
        )
        .join(legal_holds, legal_holds.c.hold_id == legal_hold_subjects.c.hold_id)
        .where(legal_holds.c.source == source, legal_holds.c.released_at.is_(None))
    )
    out = []
    for pid, cats, d_from, d_to in conn.execute(q):
        out.append(
            Hold(
                patron_id=str(pid),
                categories=frozenset(json.loads(cats)) if cats else None,
                date_from=d_from,
                date_to=d_to,
            )
        )
    return out


def holds_loader(engine: Engine, source: str):
    """A loader the engine calls before every batch, so new holds bind at once."""

    def load() -> list[Hold]:
        with engine.connect() as conn:
            return active_holds(conn, source)

    return load


def place_hold(
    conn: Connection,
    *,
    source: str,
    patron_ids: Sequence[str],
    request_ref: str,
    placed_at: datetime,
    categories: Sequence[str] | None = None,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> int:
    hold_id = conn.execute(
        insert(legal_holds).values(
            source=source,
            categories=json.dumps(sorted(categories)) if categories else None,
            date_from=date_from,
            date_to=date_to,
            request_ref=request_ref,
            placed_at=placed_at,
        )
    ).inserted_primary_key[0]
    conn.execute(
        insert(legal_hold_subjects),
        [{"hold_id": hold_id, "patron_id": str(p)} for p in dict.fromkeys(patron_ids)],
    )
    return int(hold_id)


def release_hold(conn: Connection, hold_id: int, released_at: datetime) -> bool:
    from sqlalchemy import delete, update  # noqa: PLC0415

    done = conn.execute(
        update(legal_holds)
        .where(legal_holds.c.hold_id == hold_id, legal_holds.c.released_at.is_(None))
        .values(released_at=released_at)
    ).rowcount
    conn.execute(delete(legal_hold_subjects).where(legal_hold_subjects.c.hold_id == hold_id))
    return bool(done)


# Validation history (patron_privacy.validation): one row per check per run, counts
# only — never a value. The volume check reads the row counts of the last successful
# runs from here; the UI shows trends and the last good run.
validation_runs = Table(
    "validation_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False, index=True),
    Column("source", String(32), nullable=False),
    Column("as_of", DateTime, nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("check_name", String(100), nullable=False),
    Column("column_name", String(64)),
    Column("element_count", BigInteger, nullable=False),
    Column("unexpected_count", BigInteger, nullable=False),  # -1: could not be evaluated
    Column("passed", Boolean, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
    Index("validation_runs_history_idx", "source", "dataset", "check_name", "as_of"),
)


def write_validation(
    conn: Connection,
    *,
    run_id: str,
    source: str,
    as_of: datetime,
    results: Sequence,
    recorded_at: datetime,
) -> int:
    """Replace this run's rows for the source (a retried task writes once, not twice)."""
    from sqlalchemy import delete  # noqa: PLC0415

    conn.execute(
        delete(validation_runs).where(
            validation_runs.c.run_id == run_id, validation_runs.c.source == source
        )
    )
    rows = [
        {
            "run_id": run_id,
            "source": source,
            "as_of": as_of,
            "dataset": r.dataset,
            "check_name": r.check,
            "column_name": r.column,
            "element_count": int(r.element_count),
            "unexpected_count": int(r.unexpected_count),
            "passed": bool(r.passed),
            "recorded_at": recorded_at,
        }
        for r in results
    ]
    if rows:
        conn.execute(insert(validation_runs), rows)
    return len(rows)


def validation_row_counts(
    conn: Connection, source: str, dataset: str, before: datetime, runs: int, check: str
) -> list[int]:
    """Row counts of the last ``runs`` successful validations before ``before``, newest
    first; one per as-of day (a rerun of the same day counts once)."""
    from sqlalchemy import and_, exists  # noqa: PLC0415

    v, f = validation_runs, validation_runs.alias("failed")
    q = (
        select(v.c.as_of, v.c.element_count)
        .where(
            v.c.source == source,
            v.c.dataset == dataset,
            v.c.check_name == check,
            v.c.as_of < before,
            ~exists().where(and_(f.c.run_id == v.c.run_id, f.c.source == source, ~f.c.passed)),
        )
        .order_by(v.c.as_of.desc(), v.c.recorded_at.desc(), v.c.id.desc())
    )
    out: dict[datetime, int] = {}
    for as_of, n in conn.execute(q):
        if as_of not in out:
            out[as_of] = int(n)
            if len(out) >= runs:
                break
    return list(out.values())


# A patron's request for their own records (issue 3): who asked is never stored here, only
# that a request was made under a consent reference, and how many rows of each table the
# package held. The package itself (the patron's data) goes to the patron, not here.
patron_record_requests = Table(
    "patron_record_requests",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("consent_ref", String(64), nullable=False),
    Column("source", String(32), nullable=False),
    Column("requested_at", DateTime, nullable=False),
    Column("counts_by_table", Text, nullable=False),  # JSON {table: rows}
    Column("total_rows", Integer, nullable=False),
)


def log_patron_record_request(
    conn: Connection,
    *,
    request_id: str,
    consent_ref: str,
    source: str,
    requested_at: datetime,
    counts: dict[str, int],
) -> None:
    """Record that a patron's records were gathered: counts per table, no patron id, no content."""
    conn.execute(
        insert(patron_record_requests).values(
            request_id=request_id,
            consent_ref=consent_ref,
            source=source,
            requested_at=requested_at,
            counts_by_table=json.dumps({k: int(v) for k, v in sorted(counts.items())}),
            total_rows=int(sum(counts.values())),
        )
    )


# Public-computer sessions (issue 4, Libki): one row per session, recorded before the
# session's statistics row loses its username. Where (branch = Libki's client location,
# the PC), when (date, ISO weekday 1-7, hour) and how long (a band) — never the username:
# the patron is a keyed pseudonym of the reporting period, as in circulation_facts.
pc_session_facts = Table(
    "pc_session_facts",
    metadata,
    # HMAC of the source's statistics row id: idempotent inserts without a link back.
    Column("fact_key", String(64), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("session_date", Date, nullable=False, index=True),
    Column("weekday", Integer, nullable=False),
    Column("hour", Integer, nullable=False),
    Column("branch", String(191)),
    Column("client_name", String(191)),
    Column("duration_minutes_band", String(16), nullable=False),
    Column("patron_type", String(16), nullable=False),  # patron | guest | unknown
    Column("patron_pseudonym", String(64)),
    Column("reporting_period", String(8), nullable=False),
)

# Programs (issue 4, LibCal): one row per event, counts only — no registrant data.
# ``registered`` and ``attended`` are NULL for an event that takes no registrations
# (and ``attended`` when nobody recorded attendance).
program_facts = Table(
    "program_facts",
    metadata,
    # HMAC of the vendor's event id: idempotent upserts without a link back.
    Column("fact_key", String(64), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("event_date", Date, nullable=False, index=True),
    Column("branch", String(191)),
    Column("category", String(191)),
    # PLS audiences: children (0-11), young_adult (12-18), adult (19+), general, unknown
    Column("audience", String(16), nullable=False),
    Column("delivery_mode", String(16), nullable=False),  # onsite | offsite | virtual
    Column("registration_required", Boolean, nullable=False),
    Column("registered", Integer),
    Column("attended", Integer),
    Column("reporting_period", String(8), nullable=False),
)

# Internet use on public computers (issue 4, Squid logs): requests and browsing sessions
# per local date, hour, branch and PC (a session starts after a pause of
# ``session_gap_minutes``). Never a client address, user name or URL.
internet_use_facts = Table(
    "internet_use_facts",
    metadata,
    # HMAC of source, date, hour, branch and PC: a rerun writes nothing twice.
    Column("fact_key", String(64), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("use_date", Date, nullable=False, index=True),
    Column("hour", Integer, nullable=False),
    Column("branch", String(191)),
    Column("client_name", String(191)),
    Column("sessions", Integer, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("reporting_period", String(8), nullable=False),
)
