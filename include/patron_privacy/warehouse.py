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

from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
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


def create_warehouse(engine: Engine) -> None:
    metadata.create_all(engine)


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
