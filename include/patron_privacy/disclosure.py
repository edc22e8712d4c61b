"""A disclosure package for a request: exactly the records its legal holds cover.

Only the ``law_enforcement_disclosure`` DAG calls ``build_package``, and only
after the CEO (or a designee) approved the release in Airflow's
human-in-the-loop step; the register then records who approved and when.

What the package holds is what the engine keeps: for each active hold that
cites the request, the held patrons' records in the hold's categories and
date range, selected with the engine's own hold expression over the
connector's Category definitions (``engine.hold_expr`` and each category's
scope), so "what is preserved" and "what is disclosed" cannot drift apart.
Authentication secrets (password hashes, 2FA secrets) are never part of it.

The package is written under ``<PATRON_PRIVACY_HOME>/exports/disclosures/<ref>/``
(directory 0700, files 0600): ``package.json`` (the records) and
``manifest.json`` (counts and the package's SHA-256, no record). Everything
else this module returns or logs is counts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, and_, delete, func, insert, select

from patron_privacy import connections, sources
from patron_privacy.engine import Category, Context, Hold, Rule, hold_expr
from patron_privacy.requests_register import (
    COMPULSORY,
    ENDED_WITHOUT_RELEASE,
    label,
    require_request,
    warehouse_engine,
)
from patron_privacy.warehouse import disclosure_reviews, legal_hold_subjects, legal_holds

log = logging.getLogger("patron_privacy.disclosure")

# Column-name fragments never disclosed, whatever the order says.
NEVER_DISCLOSED = ("password", "secret", "token")


class DisclosureError(RuntimeError):
    """The request is not in a state where a package may be built; nothing was written."""


@dataclass(frozen=True)
class CitedHold:
    hold_id: int
    source: str
    categories: tuple[str, ...] | None
    date_from: datetime | None
    date_to: datetime | None
    patron_ids: tuple[str, ...]

    def describe(self) -> dict:
        """The hold without its patrons: safe for logs, XCom and the manifest."""
        return {
            "hold_id": self.hold_id,
            "source": self.source,
            "categories": list(self.categories) if self.categories else "all",
            "from": str(self.date_from.date()) if self.date_from else None,
            "to": str(self.date_to.date()) if self.date_to else None,
            "patrons": len(self.patron_ids),
        }


def disclosures_root() -> Path:
    return connections.local_home() / "exports" / "disclosures"


def cited_holds(warehouse: Engine, ref: str) -> list[CitedHold]:
    """The active holds that cite the request, with their subjects (kept in memory only)."""
    h, s = legal_holds, legal_hold_subjects
    with warehouse.connect() as conn:
        holds = (
            conn.execute(
                select(h)
                .where(h.c.request_ref == ref, h.c.released_at.is_(None))
                .order_by(h.c.hold_id)
            )
            .mappings()
            .all()
        )
        out = []
        for row in holds:
            ids = (
                conn.execute(
                    select(s.c.patron_id)
                    .where(s.c.hold_id == row["hold_id"])
                    .order_by(s.c.patron_id)
                )
                .scalars()
                .all()
            )
            out.append(
                CitedHold(
                    hold_id=int(row["hold_id"]),
                    source=row["source"],
                    categories=tuple(json.loads(row["categories"])) if row["categories"] else None,
                    date_from=row["date_from"],
                    date_to=row["date_to"],
                    patron_ids=tuple(str(i) for i in ids),
                )
            )
    return out


def check_ready(warehouse: Engine, ref: str) -> tuple[dict, list[CitedHold]]:
    """The request and its holds, if a release may be considered; DisclosureError otherwise."""
    with warehouse.connect() as conn:
        try:
            req = require_request(conn, ref)
        except ValueError as exc:
            raise DisclosureError(str(exc)) from None
    problems = []
    if req["kind"] not in COMPULSORY:
        problems.append(
            f"request {ref} is of kind {label(req['kind'])}: records are released only on a "
            "subpoena, court order or warrant"
        )
    if req["counsel_reviewed_on"] is None:
        problems.append(
            f"request {ref} has no counsel review date: counsel reviews every order before a "
            f"release (python -m patron_privacy requests update {ref} --counsel-reviewed DATE)"
        )
    if req["decision"] in ENDED_WITHOUT_RELEASE:
        problems.append(f"request {ref} was {label(req['decision'])}: nothing may be released")
    holds = cited_holds(warehouse, ref)
    if not holds:
        problems.append(
            f"no active legal hold cites request {ref}: place one first "
            f"(python -m patron_privacy holds place ... --request {ref})"
        )
    if problems:
        raise DisclosureError("; ".join(problems))
    return req, holds


def _as_rule(category: Category) -> Rule:
    # engine.hold_expr reads only the rule's category; the rest is unused here.
    return Rule(category, window_text="", cutoff_delta=None, action="", blockers=())


def _covered(category: Category, hold: CitedHold, ctx: Context):
    holds = [Hold(p, None, hold.date_from, hold.date_to) for p in hold.patron_ids]
    return and_(category.scope(ctx), hold_expr(_as_rule(category), holds))


def _categories(hold: CitedHold) -> list[Category]:
    catalog = sources.connector(hold.source).categories
    names = hold.categories or tuple(catalog)
    return [catalog[n] for n in names if n in catalog]


def _columns(category: Category):
    return [
        c for c in category.table.columns if not any(f in c.name.lower() for f in NEVER_DISCLOSED)
    ]


def _json_value(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode()}
    return str(value)


def _ctx() -> Context:
    # Category scopes read no clock; the anonymous patron is never held.
    return Context(as_of=datetime(2000, 1, 1))


def count_covered(holds: list[CitedHold]) -> dict[str, int]:
    """How many records each category would contribute (``source.category`` -> n)."""
    counts: dict[str, int] = {}
    ctx = _ctx()
    for hold in holds:
        engine = connections.engine_for(sources.connector(hold.source).conn_id)
        with engine.connect() as conn:
            for cat in _categories(hold):
                n = conn.execute(
                    select(func.count()).select_from(cat.table).where(_covered(cat, hold, ctx))
                ).scalar_one()
                key = f"{hold.source}.{cat.name}"
                counts[key] = counts.get(key, 0) + int(n)
        engine.dispose()
    return counts


def _records(holds: list[CitedHold]) -> Iterator[tuple[str, str, list[dict]]]:
    ctx = _ctx()
    seen: dict[str, set] = {}
    for hold in holds:
        engine = connections.engine_for(sources.connector(hold.source).conn_id)
        with engine.connect() as conn:
            for cat in _categories(hold):
                key_name = cat.key.name
                cols = _columns(cat)
                q = select(*cols).where(_covered(cat, hold, ctx)).order_by(cat.key)
                rows = []
                done = seen.setdefault(f"{hold.source}.{cat.table.name}", set())
                for r in conn.execute(q).mappings():
                    # Two holds (or two categories on one table) may cover one record once.
                    if r[key_name] in done:
                        continue
                    done.add(r[key_name])
                    rows.append({c.name: _json_value(r[c.name]) for c in cols})
                yield hold.source, cat.name, rows
        engine.dispose()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def preview(ref: str) -> dict:
    """What approving would release: counts per category and per hold; no record, no id."""
    warehouse = warehouse_engine()
    req, holds = check_ready(warehouse, ref)
    counts = count_covered(holds)
    return {
        "request": ref,
        "received_on": str(req["received_on"]),
        "agency": req["agency"],
        "kind": label(req["kind"]),
        "asks_for": req["asks_for"],
        "counsel_reviewed_on": str(req["counsel_reviewed_on"]),
        "holds": [h.describe() for h in holds],
        "records": counts,
        "total_records": sum(counts.values()),
    }


def approval_body(p: dict) -> str:
    """The approval step's text (Markdown): the request and what would go out, in counts."""
    lines = [
        f"**Request {p['request']}** — {p['kind']} from **{p['agency']}**, "
        f"received {p['received_on']}; counsel reviewed {p['counsel_reviewed_on']}.",
        "",
        f"It asks for: {p['asks_for']}",
        "",
        f"Approving builds a disclosure package of **{p['total_records']} records**:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in sorted(p["records"].items())]
    lines += ["", "Legal holds cited (patrons are counted, never named here):", ""]
    for h in p["holds"]:
        cats = h["categories"] if isinstance(h["categories"], str) else ", ".join(h["categories"])
        span = f"{h['from'] or 'any date'} to {h['to'] or 'any date'}"
        lines.append(
            f"- hold {h['hold_id']} ({h['source']}): {h['patrons']} patron(s); {cats}; {span}"
        )
    lines += ["", "Reject to build nothing. Either answer is recorded in the register."]
    return "\n".join(lines)


def build_package(ref: str, *, approved_by: str, approved_at: datetime, dag_run_id: str) -> dict:
    """Build the package and record the approval; returns counts and the package's path."""
    warehouse = warehouse_engine()
    req, holds = check_ready(warehouse, ref)
    categories: dict[str, dict] = {}
    total = 0
    for source, name, rows in _records(holds):
        entry = categories.setdefault(f"{source}.{name}", {"count": 0, "records": []})
        entry["records"].extend(rows)
        entry["count"] += len(rows)
        total += len(rows)
    package = {
        "request": ref,
        "agency": req["agency"],
        "kind": req["kind"],
        "received_on": str(req["received_on"]),
        "approved_by": approved_by,
        "approved_at": approved_at.isoformat(sep=" ", timespec="seconds"),
        "holds": [h.describe() for h in holds],
        "total_records": total,
        "categories": categories,
    }
    data = json.dumps(package, indent=2, sort_keys=True, ensure_ascii=False).encode()
    digest = hashlib.sha256(data).hexdigest()
    manifest = {
        key: package[key]
        for key in ("request", "agency", "kind", "received_on", "approved_by", "approved_at")
    }
    manifest |= {
        "holds": package["holds"],
        "records": {k: v["count"] for k, v in categories.items()},
        "total_records": total,
        "package_sha256": digest,
    }
    out = disclosures_root() / ref
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    with warehouse.begin() as conn:
        _record(
            conn,
            ref,
            outcome="approved",
            by=approved_by,
            at=approved_at,
            dag_run_id=dag_run_id,
            path=str(out / "package.json"),
            records=total,
            sha256=digest,
        )
        # Files last inside the transaction: a failed write leaves no approval row
        # pointing at a package that is not there.
        _write_private(out / "package.json", data)
        _write_private(
            out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode()
        )
    log.info("request %s: disclosure package built, %d records", ref, total)
    return {"request": ref, "total_records": total, "path": str(out), "sha256": digest}


def record_rejection(ref: str, *, rejected_by: str, rejected_at: datetime, dag_run_id: str) -> None:
    warehouse = warehouse_engine()
    with warehouse.begin() as conn:
        require_request(conn, ref)
        _record(
            conn, ref, outcome="rejected", by=rejected_by, at=rejected_at, dag_run_id=dag_run_id
        )
    log.info("request %s: release rejected; nothing built", ref)


def _record(conn, ref, *, outcome, by, at, dag_run_id, path=None, records=None, sha256=None):
    r = disclosure_reviews
    # A retried task replaces its own row instead of failing on the unique key.
    conn.execute(delete(r).where(r.c.request_ref == ref, r.c.dag_run_id == dag_run_id))
    conn.execute(
        insert(r).values(
            request_ref=ref,
            outcome=outcome,
            reviewed_by=by,
            reviewed_at=at,
            dag_run_id=dag_run_id,
            package_path=path,
            package_records=records,
            package_sha256=sha256,
        )
    )
