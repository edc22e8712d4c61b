"""Placing, listing and releasing legal holds, with every check before any write.

A hold names patrons (by their id in one source system), optionally limits
itself to some record categories and a date range, and cites a request in the
register. While it is active the retention engine keeps every record it
covers (blocker ``legal_hold``, re-read before every batch); once released,
retention resumes at the next run.

The patron ids live only in ``legal_hold_subjects`` and are deleted when the
hold is released. Nothing here prints, logs or returns them: listings are
counts, errors say what is wrong without repeating the value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import Connection, Engine, Integer, func, select

from patron_privacy import sources
from patron_privacy.requests_register import (
    ENDED_WITHOUT_RELEASE,
    RegisterError,
    label,
    require_request,
)
from patron_privacy.warehouse import (
    legal_hold_subjects,
    legal_holds,
    place_hold,
    release_hold,
)

MAX_PATRONS = 10_000


class HoldError(ValueError):
    """A hold that cannot be placed or released as asked; nothing was written."""


@dataclass(frozen=True)
class HoldRequest:
    """A hold as validated, ready to write."""

    source: str
    patron_ids: tuple[str, ...]
    request_ref: str
    categories: tuple[str, ...] | None
    date_from: datetime | None
    date_to: datetime | None


def validate_hold(
    *,
    source: str,
    patron_ids: Sequence[str],
    request_ref: str,
    categories: Sequence[str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> HoldRequest:
    """Everything that can be checked without the warehouse; HoldError lists every problem."""
    problems: list[str] = []
    try:
        connector = sources.connector(source)
    except ValueError as exc:
        raise HoldError(str(exc)) from None
    cats: tuple[str, ...] | None = None
    if categories:
        wanted = [c.strip() for c in categories if c and c.strip()]
        unknown = [c for c in wanted if c not in connector.categories]
        if unknown:
            problems.append(
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(repr(c[:40]) for c in unknown)} for source {source} "
                f"(expected any of {', '.join(connector.categories)})"
            )
        cats = tuple(dict.fromkeys(wanted)) or None
    ids = tuple(dict.fromkeys(str(p).strip() for p in patron_ids if str(p).strip()))
    if not ids:
        problems.append("--patron: at least one patron id is required")
    elif len(ids) > MAX_PATRONS:
        problems.append(f"--patron: at most {MAX_PATRONS} patrons per hold")
    covered = [
        connector.categories[c] for c in (cats or connector.categories) if c in connector.categories
    ]
    if ids and any(isinstance(getattr(c.patron, "type", None), Integer) for c in covered):
        bad = sum(1 for p in ids if not p.isdigit())
        if bad:
            # Never repeat the value: it may be a card number typed by mistake.
            problems.append(
                f"--patron: {bad} of the ids given {'is' if bad == 1 else 'are'} not a "
                f"{source} patron number (a whole number, e.g. Koha's borrowernumber)"
            )
    if date_from and date_to and date_from > date_to:
        problems.append(f"--from {date_from} is after --to {date_to}: the date range is inverted")
    if not request_ref or not str(request_ref).strip():
        problems.append("--request: required (the register reference, e.g. LE-2026-001)")
    if problems:
        raise HoldError("; ".join(problems))
    return HoldRequest(
        source=source,
        patron_ids=ids,
        request_ref=str(request_ref).strip(),
        categories=cats,
        date_from=datetime.combine(date_from, time.min) if date_from else None,
        # Inclusive: the whole last day. The engine compares ``clock <= date_to``.
        date_to=datetime.combine(date_to, time.max) if date_to else None,
    )


def place(engine: Engine, hold: HoldRequest, *, placed_at: datetime) -> int:
    """Write the hold and its subjects in one transaction, after checking its request."""
    with engine.begin() as conn:
        try:
            req = require_request(conn, hold.request_ref)
        except RegisterError as exc:
            raise HoldError(str(exc)) from None
        if req["decision"] in ENDED_WITHOUT_RELEASE:
            raise HoldError(
                f"request {hold.request_ref} was {label(req['decision'])} on {req['decided_on']}: "
                "a hold cannot cite a closed request"
            )
        return place_hold(
            conn,
            source=hold.source,
            patron_ids=list(hold.patron_ids),
            request_ref=hold.request_ref,
            placed_at=placed_at,
            categories=list(hold.categories) if hold.categories else None,
            date_from=hold.date_from,
            date_to=hold.date_to,
        )


def release(engine: Engine, hold_id: int, *, released_at: datetime) -> None:
    """Release a hold and delete its subjects; refuses an unknown or already released hold."""
    with engine.begin() as conn:
        row = conn.execute(
            select(legal_holds.c.released_at).where(legal_holds.c.hold_id == hold_id)
        ).first()
        if row is None:
            raise HoldError(f"no hold {hold_id} (python -m patron_privacy holds list shows them)")
        if row.released_at is not None:
            raise HoldError(f"hold {hold_id} was already released on {row.released_at:%Y-%m-%d}")
        if conn.dialect.name == "sqlite":
            # Overwrite the deleted ids' bytes instead of leaving them in free pages.
            conn.exec_driver_sql("PRAGMA secure_delete = ON")
        release_hold(conn, hold_id, released_at)
    if engine.dialect.name == "sqlite":
        # And move the change out of the write-ahead log, whose old frames still hold them.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def list_holds(conn: Connection) -> list[dict]:
    """Every hold with how many patrons it holds: counts only, never an id."""
    h, s = legal_holds, legal_hold_subjects
    patrons = select(s.c.hold_id, func.count().label("patrons")).group_by(s.c.hold_id).subquery()
    q = (
        select(
            h.c.hold_id,
            h.c.source,
            h.c.request_ref,
            h.c.categories,
            h.c.date_from,
            h.c.date_to,
            h.c.placed_at,
            h.c.released_at,
            func.coalesce(patrons.c.patrons, 0).label("patrons"),
        )
        .select_from(h.outerjoin(patrons, patrons.c.hold_id == h.c.hold_id))
        .order_by(h.c.hold_id)
    )
    out = []
    for r in conn.execute(q).mappings():
        d = dict(r)
        d["categories"] = json.loads(d["categories"]) if d["categories"] else None
        out.append(d)
    return out
