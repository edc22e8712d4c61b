"""The register of law-enforcement (and similar) requests for patron records.

The library's policy: every request goes to the Chief Executive Officer (or a
designee); nothing is released without a subpoena or court order that counsel
has reviewed; the CEO reports every request to the Board at least monthly,
with the library's response and the request's status. The register records
exactly that — when a request came, from which agency, of what kind, what it
asks for (in words), to whom it was referred, when counsel reviewed it, the
decision and its date, and how many records were released — and nothing
about the people a request concerns: they are named only in a legal hold's
restricted ``legal_hold_subjects`` rows.

Every write validates the whole record and refuses with one line listing every
problem; a refused write changes nothing. Free text is refused when it looks
like it names a patron (``patron_privacy.identifiers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Engine, func, insert, select, update

from patron_privacy import connections
from patron_privacy.identifiers import check_free_text
from patron_privacy.warehouse import (
    create_warehouse,
    disclosure_reviews,
    legal_hold_subjects,
    legal_holds,
    request_register,
)

KINDS = ("informal", "subpoena", "court_order", "warrant", "other")
DECISIONS = ("pending", "released", "partly_released", "refused", "withdrawn")
# Demands that can compel production; the policy releases nothing on anything else.
COMPULSORY = frozenset({"subpoena", "court_order", "warrant"})
RELEASES = frozenset({"released", "partly_released"})
# A hold cannot cite a request that ended without a release.
ENDED_WITHOUT_RELEASE = frozenset({"refused", "withdrawn"})

FIELDS = (
    "received_on",
    "agency",
    "kind",
    "asks_for",
    "referred_to",
    "counsel_reviewed_on",
    "decision",
    "decided_on",
    "records_released",
)
TEXT_LIMITS = {"agency": 200, "asks_for": 2000, "referred_to": 200}
REF_PREFIX = "LE"


class RegisterError(ValueError):
    """A request that cannot be recorded as given; the message lists every problem."""


def label(value: str | None) -> str:
    """``court_order`` -> ``court order`` for people."""
    return (value or "").replace("_", " ")


def _choice(value, allowed: tuple[str, ...], field: str, problems: list[str]) -> str | None:
    text = str(value).strip().lower().replace("-", "_").replace(" ", "_") if value else ""
    if not text:
        problems.append(f"{field}: required, one of {', '.join(label(a) for a in allowed)}")
        return None
    if text not in allowed:
        problems.append(
            f"{field}: {str(value)[:40]!r} is not one of {', '.join(label(a) for a in allowed)}"
        )
        return None
    return text


def _date(value, field: str, problems: list[str]) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        problems.append(f"{field}: expected a date YYYY-MM-DD")
        return None


def _text(value, field: str, problems: list[str], *, required: bool) -> str | None:
    text = " ".join(str(value).split()) if value is not None else ""
    if not text:
        if required:
            problems.append(f"{field}: required")
        return None
    if len(text) > TEXT_LIMITS[field]:
        problems.append(f"{field}: at most {TEXT_LIMITS[field]} characters")
        return None
    problem = check_free_text(field, text)
    if problem:
        problems.append(problem)
        return None
    return text


def validate(record: Mapping, *, today: date) -> dict:
    """The whole record, normalized; RegisterError listing every problem otherwise."""
    problems: list[str] = []
    out: dict = {}
    if record.get("received_on") in (None, ""):
        problems.append("received_on: required")
    out["received_on"] = _date(record.get("received_on"), "received_on", problems)
    out["agency"] = _text(record.get("agency"), "agency", problems, required=True)
    out["kind"] = _choice(record.get("kind"), KINDS, "kind", problems)
    out["asks_for"] = _text(record.get("asks_for"), "asks_for", problems, required=True)
    out["referred_to"] = _text(record.get("referred_to"), "referred_to", problems, required=False)
    out["counsel_reviewed_on"] = _date(
        record.get("counsel_reviewed_on"), "counsel_reviewed_on", problems
    )
    out["decision"] = _choice(record.get("decision") or "pending", DECISIONS, "decision", problems)
    out["decided_on"] = _date(record.get("decided_on"), "decided_on", problems)
    released = record.get("records_released")
    if released in (None, ""):
        out["records_released"] = None
    else:
        try:
            out["records_released"] = int(released)
            if out["records_released"] < 0 or str(released).strip() != str(int(released)):
                raise ValueError
        except (TypeError, ValueError):
            problems.append("records_released: expected a whole number, 0 or more")
            out["records_released"] = None

    received, decision = out["received_on"], out["decision"]
    for field in ("received_on", "counsel_reviewed_on", "decided_on"):
        if out[field] is not None and out[field] > today:
            problems.append(f"{field}: {out[field]} is in the future")
    for field in ("counsel_reviewed_on", "decided_on"):
        if received and out[field] and out[field] < received:
            problems.append(
                f"{field}: {out[field]} is before the request was received ({received})"
            )
    if decision == "pending":
        if out["decided_on"] is not None:
            problems.append("decided_on: a pending request has no decision date")
        if out["records_released"]:
            problems.append("records_released: a pending request has released nothing")
    elif decision is not None:
        if out["decided_on"] is None:
            problems.append(f"decided_on: required when the decision is {label(decision)}")
    if decision in RELEASES:
        if out["kind"] is not None and out["kind"] not in COMPULSORY:
            problems.append(
                f"decision: records are released only on a subpoena, court order or warrant, "
                f"not on a request of kind {label(out['kind'])}"
            )
        if out["counsel_reviewed_on"] is None:
            problems.append(
                "counsel_reviewed_on: required before records are released (counsel reviews "
                "every order first)"
            )
        if not out["records_released"]:
            problems.append(
                f"records_released: required (1 or more) when the decision is {label(decision)}"
            )
    elif decision in ENDED_WITHOUT_RELEASE and out["records_released"]:
        problems.append(
            f"records_released: must be empty or 0 when the decision is {label(decision)}"
        )
    if problems:
        raise RegisterError("; ".join(problems))
    return out


def warehouse_engine() -> Engine:
    engine = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(engine)
    return engine


def _next_ref(conn: Connection, year: int) -> str:
    prefix = f"{REF_PREFIX}-{year}-"
    refs = conn.execute(
        select(request_register.c.ref).where(request_register.c.ref.like(f"{prefix}%"))
    ).scalars()
    highest = max((int(r[len(prefix) :]) for r in refs if r[len(prefix) :].isdigit()), default=0)
    return f"{prefix}{highest + 1:03d}"


def add_request(engine: Engine, record: Mapping, *, today: date, recorded_at: datetime) -> str:
    """Record a new request; returns its reference (``LE-<year received>-<n>``)."""
    unknown = set(record) - set(FIELDS)
    if unknown:
        raise RegisterError(f"unknown fields: {', '.join(sorted(unknown))}")
    values = validate(record, today=today)
    with engine.begin() as conn:
        ref = _next_ref(conn, values["received_on"].year)
        conn.execute(
            insert(request_register).values(
                ref=ref, recorded_at=recorded_at, updated_at=recorded_at, **values
            )
        )
    return ref


def get_request(conn: Connection, ref: str) -> dict | None:
    row = (
        conn.execute(select(request_register).where(request_register.c.ref == ref))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def require_request(conn: Connection, ref: str) -> dict:
    found = get_request(conn, ref)
    if found is None:
        raise RegisterError(
            f"no request {str(ref)[:40]!r} in the register "
            "(python -m patron_privacy requests list shows them)"
        )
    return found


def update_request(
    engine: Engine, ref: str, changes: Mapping, *, today: date, updated_at: datetime
) -> dict:
    """Change some fields of a request; the whole record is validated again."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise RegisterError(f"unknown fields: {', '.join(sorted(unknown))}")
    if not changes:
        raise RegisterError("nothing to change: give at least one field")
    with engine.begin() as conn:
        current = require_request(conn, ref)
        merged = {f: current[f] for f in FIELDS} | dict(changes)
        values = validate(merged, today=today)
        conn.execute(
            update(request_register)
            .where(request_register.c.ref == ref)
            .values(updated_at=updated_at, **values)
        )
    return {"ref": ref, **values}


def list_requests(conn: Connection, *, open_only: bool = False) -> list[dict]:
    q = select(request_register).order_by(request_register.c.received_on, request_register.c.ref)
    if open_only:
        q = q.where(request_register.c.decision == "pending")
    return [dict(r) for r in conn.execute(q).mappings()]


@dataclass(frozen=True)
class HoldCounts:
    active: int
    released: int
    patrons_held: int


def hold_counts(conn: Connection, ref: str) -> HoldCounts:
    """How many holds cite the request and how many patrons they hold: counts, never ids."""
    h = legal_holds
    active = conn.execute(
        select(func.count()).select_from(h).where(h.c.request_ref == ref, h.c.released_at.is_(None))
    ).scalar_one()
    released = conn.execute(
        select(func.count())
        .select_from(h)
        .where(h.c.request_ref == ref, h.c.released_at.isnot(None))
    ).scalar_one()
    patrons = conn.execute(
        select(func.count(func.distinct(legal_hold_subjects.c.patron_id)))
        .select_from(legal_hold_subjects.join(h, h.c.hold_id == legal_hold_subjects.c.hold_id))
        .where(h.c.request_ref == ref, h.c.released_at.is_(None))
    ).scalar_one()
    return HoldCounts(int(active), int(released), int(patrons))


def reviews(conn: Connection, ref: str) -> list[dict]:
    r = disclosure_reviews
    q = select(r).where(r.c.request_ref == ref).order_by(r.c.reviewed_at, r.c.id)
    return [dict(x) for x in conn.execute(q).mappings()]
