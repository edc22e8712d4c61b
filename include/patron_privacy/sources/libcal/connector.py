"""LibCal (Springshare, hosted): program facts, and compliance findings at the vendor.

LibCal holds each program's registrations — first and last name, email, phone, library
card barcode — for as long as the library leaves them there, and its API (1.1) can
read them but not delete them. So a run does two things, both from one read of the
API (:mod:`patron_privacy.sources.libcal.client`):

* **facts** — per event that has ended: date, branch (campus), category, PLS audience
  (children 0-11, young adult 12-18, adult 19+, general), delivery mode (onsite,
  offsite, virtual; a hybrid program counts once, in person), how many registered and
  how many attended — into the warehouse's ``program_facts``. Registrant data is held in
  memory only while these counts are made, and written nowhere. Facts of an event still
  inside the retention window are refreshed each run (attendance is marked after the
  program); after that they are only added when missing, so a vendor purge never
  overwrites them with zeros;
* **compliance findings** — the policy's ``program_registrations`` rule says how long
  the library allows a registration to be kept after its program. Registrations the
  vendor still holds past that window are counted by the engine's own classification
  (the same query that verifies every other source, legal holds included: a hold names
  a LibCal registrant by card barcode, or by email when there is no barcode), on an
  in-memory table that lives for the length of the count. The counts become audit rows
  (mode ``verify``, ``remaining`` = registrations past the window) and, when asked, an
  alert: the library must purge them in LibCal or ask Springshare to.

Bad answers (HTML, garbage JSON, timeouts, a 500 that does not recover) fail only the
requests they hit: an events window that cannot be read contributes nothing, the
registrations of an event that cannot be read are neither counted nor turned into facts
(the batch is split to find the event), the rest of the run goes on, and the
verification row says it is incomplete and names the failed requests.

For Airflow: :func:`run_libcal` is the whole nightly step (facts, verification, audit);
``pipeline.open_run`` does not apply to LibCal (it has no database).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
)
from sqlalchemy.pool import StaticPool

from patron_privacy import connections
from patron_privacy.engine import Category, Context, Rule, inspect_rule
from patron_privacy.facts import (
    MissingKeyError,
    Pseudonymizer,
    _insert_ignoring_duplicates,
    period_of,
)
from patron_privacy.sources.base import Connector
from patron_privacy.sources.libcal.client import LibCalClient, LibCalError, Options, parse_time
from patron_privacy.timebase import library_zone, parse_duration

log = logging.getLogger("patron_privacy.libcal")

SOURCE = "libcal"
CATEGORY = "program_registrations"

# PLS audience bands, and the words in LibCal audience (or category) names that say which.
AUDIENCES = ("children", "young_adult", "adult", "general")
_AUDIENCE_WORDS = (
    ("general", r"all ages|family|families|everyone|general|intergenerational"),
    ("children", r"child|kid|baby|babies|toddler|preschool|infant|elementary|storytime|tween"),
    ("young_adult", r"teen|young adult|\bya\b|youth|high school"),
    ("adult", r"adult|senior|older"),
)
DELIVERY_MODES = ("onsite", "offsite", "virtual")

DEFAULT_OPTIONS = {
    # How far back each run reads events (beyond the rule's window): registrations the
    # vendor holds for programs older than this are not seen.
    "lookback": "P3Y",
    "calendars": [],
    "offsite_location_ids": [],
    "offsite_location_names": [],
    "audiences": {},
}

# What the vendor holds, as the run sees it in memory for the length of one count: one row
# per registration. Never created in any database but an in-memory SQLite.
metadata = MetaData()
vendor_registrations = Table(
    "vendor_registrations",
    metadata,
    Column("row_id", Integer, primary_key=True),
    Column("event_key", String(64), nullable=False),
    # The retention clock: when the program ended (library time); NULL if unreadable.
    Column("program_end", DateTime),
    # Card barcode, else email (lower case): what a legal hold names.
    Column("patron", String(255)),
)

CATEGORIES = {
    CATEGORY: Category(
        name=CATEGORY,
        source=SOURCE,
        table=vendor_registrations,
        key=vendor_registrations.c.row_id,
        clock=vendor_registrations.c.program_end,
        # Never NULL (a registrant with neither barcode nor email matches no hold): a NULL
        # in a hold's IN list would hide the row from the count.
        patron=func.coalesce(vendor_registrations.c.patron, ""),
        description="Program registrations held by LibCal (names, emails, phones, cards)",
        # The vendor holds them and only the vendor can delete: the run verifies.
        enforced_by_source=lambda ctx: True,
    )
}


def check_options(opts: dict) -> list[str]:
    problems = []
    unknown = set(opts) - set(DEFAULT_OPTIONS) - set(Options.__dataclass_fields__)
    for key in sorted(unknown):
        problems.append(f"{key}: unknown option")
    if "lookback" in opts:
        try:
            parse_duration(opts["lookback"])
        except ValueError as exc:
            problems.append(f"lookback: {exc}")
    for key in ("calendars", "offsite_location_ids", "offsite_location_names"):
        if key in opts and not isinstance(opts[key], list):
            problems.append(f"{key}: expected a list")
    aud = opts.get("audiences", {})
    if not isinstance(aud, dict) or any(v not in AUDIENCES for v in aud.values()):
        problems.append(f"audiences: expected a mapping of LibCal names to one of {AUDIENCES}")
    for key in Options.__dataclass_fields__:
        if key in opts and (not isinstance(opts[key], int | float) or opts[key] <= 0):
            problems.append(f"{key}: expected a positive number, got {opts[key]!r}")
    return problems


CONNECTOR = Connector(
    name=SOURCE,
    conn_id=connections.LIBCAL_API,
    categories=CATEGORIES,
    check_options=check_options,
    default_options=dict(DEFAULT_OPTIONS),
)


# --- reading the vendor ------------------------------------------------------------------------


@dataclass
class Endpoint:
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    extra: dict = field(default_factory=dict)


@contextmanager
def endpoint() -> Iterator[Endpoint]:
    """The ``libcal_api`` connection; for the demo (no connection set) the fixture under
    ``.local/sources/libcal/``, served on 127.0.0.1 for the length of the block."""
    from patron_privacy.sources.libcal import fixture  # noqa: PLC0415 - demo and tests only

    try:
        conn = connections.get_conn(connections.LIBCAL_API)
    except connections.ConnectionConfigError:
        path = connections.local_home() / "sources" / "libcal" / fixture.FIXTURE_FILE
        if not path.exists():
            raise
        with fixture.serve(path) as server:
            fx = server.fixture
            yield Endpoint(server.url, fx.client_id, fx.client_secret, dict(fx.extra))
        return
    host = (conn.host or "").strip()
    if not host:
        raise connections.ConnectionConfigError(
            "connection libcal_api: no host (e.g. https://library.libcal.com)"
        )
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}" + (f":{conn.port}" if conn.port else "")
    if not conn.login or not conn.password:
        raise connections.ConnectionConfigError(
            "connection libcal_api: login (the client id) and password (the client secret) "
            "are required"
        )
    yield Endpoint(host, conn.login, conn.password, dict(conn.extra or {}))


@dataclass
class Harvest:
    """What one run read from LibCal, in memory only. ``errors`` name requests, never data."""

    events: dict[str, dict] = field(default_factory=dict)  # event key -> event
    registrants: dict[str, list[dict]] = field(default_factory=dict)  # event id -> list
    unreadable_events: set[str] = field(default_factory=set)  # registrations not read
    unreadable_windows: int = 0
    errors: list[str] = field(default_factory=list)


def _event_key(ev: dict) -> str:
    return f"{ev.get('id')}@{ev.get('start')}"


def harvest(client: LibCalClient, calendars: list, start: date, end: date) -> Harvest:
    """Events starting in [start, end) of every calendar, then their registrations."""
    out = Harvest()
    step = max(1, min(int(client.options.window_days), 365))
    for cal in calendars:
        day = start
        while day < end:
            days = min(step, (end - day).days)
            try:
                for ev in client.events(cal, day, days):
                    out.events.setdefault(_event_key(ev), ev)
            except LibCalError as exc:
                out.unreadable_windows += 1
                out.errors.append(str(exc))
                log.warning("%s", exc)
            day += timedelta(days=days)
    wanted = sorted(
        {str(ev["id"]) for ev in out.events.values() if ev.get("registration")},
        key=lambda i: (len(i), i),
    )
    size = max(1, int(client.options.registrations_batch))
    for i in range(0, len(wanted), size):
        _read_registrations(client, wanted[i : i + size], out)
    return out


def _read_registrations(client: LibCalClient, ids: list[str], out: Harvest) -> None:
    try:
        found = client.registrations(ids)
    except LibCalError as exc:
        if len(ids) > 1 and exc.status not in (401, 403):
            # Find the event(s) whose answer cannot be read; read the others one by one.
            for one in ids:
                _read_registrations(client, [one], out)
            return
        out.errors.append(str(exc))
        out.unreadable_events.update(ids)
        log.warning("%s", exc)
        return
    for i in ids:
        out.registrants[i] = found.get(i, [])


# --- facts -------------------------------------------------------------------------------------


def _names(value) -> list[str]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return [str(value)] if value else []
    out = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if name:
            out.append(str(name))
    return out


def audience_band(ev: dict, mapping: dict[str, str] | None = None) -> str:
    """The PLS audience of an event, from its audience names (else its category names)."""
    mapping = {k.lower(): v for k, v in (mapping or {}).items()}
    names = _names(ev.get("audience")) or _names(ev.get("category"))
    bands = set()
    for name in names:
        if name.lower() in mapping:
            bands.add(mapping[name.lower()])
            continue
        for band, pattern in _AUDIENCE_WORDS:
            if re.search(pattern, name, re.IGNORECASE):
                bands.add(band)
                break
    if not bands:
        return "unknown"
    if len(bands) > 1 or "general" in bands:
        return "general"
    return bands.pop()


def delivery_mode(ev: dict, offsite_ids=(), offsite_names=()) -> str:
    """Virtual when only online seats are offered; hybrid counts once, in person (PLS)."""

    def seats(name: str) -> int:
        try:
            return int(ev.get(name) or 0)
        except (TypeError, ValueError):
            return 0

    loc = ev.get("location") if isinstance(ev.get("location"), dict) else {}
    physical, online = seats("physical_seats"), seats("online_seats")
    if online > 0 and physical == 0:
        return "virtual"
    if physical == 0 and online == 0 and ev.get("online_join_url") and not loc.get("name"):
        return "virtual"
    if str(loc.get("id")) in {str(i) for i in offsite_ids} or (
        loc.get("name") and loc.get("name") in set(offsite_names)
    ):
        return "offsite"
    return "onsite"


def _attended(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    text = str(value or "").strip().lower()
    if not text or text in ("unknown", "-", "n/a"):
        return None
    if text in ("1", "yes", "true", "attended", "present", "checked in", "checked-in"):
        return True
    return False


def program_fact(
    p: Pseudonymizer, ev: dict, regs: list[dict] | None, start: datetime, opts
) -> dict:
    """One event as counts; ``regs`` None when the event takes no registrations."""
    day = start.date()
    period = period_of(day)
    campus = ev.get("campus")
    branch = campus.get("name") if isinstance(campus, dict) else (campus or None)
    cats = _names(ev.get("category"))
    registered = attended = None
    if ev.get("registration"):
        regs = regs or []
        registered = len(regs)
        if not regs:
            try:
                registered = int(ev.get("seats_taken") or 0)
            except (TypeError, ValueError):
                registered = 0
        marks = [_attended(r.get("attendance")) for r in regs]
        if any(m is not None for m in marks):
            attended = sum(1 for m in marks if m)
    return {
        "fact_key": p.fact_key(period, SOURCE, f"event:{_event_key(ev)}"),
        "source": SOURCE,
        "event_date": day,
        "branch": str(branch) if branch else None,
        "category": cats[0] if cats else None,
        "audience": audience_band(ev, opts.get("audiences")),
        "delivery_mode": delivery_mode(
            ev, opts.get("offsite_location_ids") or (), opts.get("offsite_location_names") or ()
        ),
        "registration_required": bool(ev.get("registration")),
        "registered": registered,
        "attended": attended,
        "reporting_period": period,
    }


def write_program_facts(wconn, rows: list[dict], refresh: set[str]) -> int:
    """Facts in ``refresh`` replace what is there; the others are added only when new."""
    from patron_privacy.warehouse import program_facts  # noqa: PLC0415

    if not rows:
        return 0
    unique = list({r["fact_key"]: r for r in rows}.values())
    keys = [r["fact_key"] for r in unique if r["fact_key"] in refresh]
    for i in range(0, len(keys), 500):
        wconn.execute(delete(program_facts).where(program_facts.c.fact_key.in_(keys[i : i + 500])))
    return _insert_ignoring_duplicates(wconn, program_facts, unique)


# --- the run -----------------------------------------------------------------------------------


def _memory_engine() -> Engine:
    eng = create_engine("sqlite://", poolclass=StaticPool, hide_parameters=True)

    @event.listens_for(eng, "connect")
    def _pragmas(dbapi_conn, _record):  # nothing of it may reach a temporary file
        dbapi_conn.execute("PRAGMA temp_store=MEMORY")

    return eng


def verify_registrations(rule: Rule, ctx: Context, h: Harvest, zone) -> tuple[dict, int]:
    """The engine's classification of what the vendor holds, on an in-memory table.

    Returns (result dict, registrations looked at). The table is dropped with its engine
    before this returns.
    """
    rows = []
    for key, ev in h.events.items():
        eid = str(ev.get("id"))
        if not ev.get("registration") or eid in h.unreadable_events:
            continue
        end = parse_time(ev.get("end"), zone) or parse_time(ev.get("start"), zone)
        for r in h.registrants.get(eid, []):
            who = str(r.get("barcode") or "").strip() or str(r.get("email") or "").strip().lower()
            rows.append(
                {
                    "row_id": len(rows) + 1,
                    "event_key": key,
                    "program_end": end,
                    "patron": who or None,
                }
            )
    eng = _memory_engine()
    try:
        metadata.create_all(eng)
        if rows:
            with eng.begin() as c:
                c.execute(insert(vendor_registrations), rows)
        del rows
        result = inspect_rule(eng, rule, ctx, "verify").as_dict()
        result["enforced_by"] = "source"
    finally:
        eng.dispose()
    return result, result["matched"]


def run_libcal(
    as_of: datetime,
    run_id: str,
    *,
    policy=None,
    send_alert: bool = False,
    dry_run: bool = False,
) -> dict:
    """``_run_libcal`` under LibCal's run lock unless it is a dry run: two runs at once
    would refresh the same events' facts and audit the same night twice."""
    from patron_privacy.locks import source_run_lock  # noqa: PLC0415

    run = functools.partial(
        _run_libcal, as_of, run_id, policy=policy, send_alert=send_alert, dry_run=dry_run
    )
    if dry_run:
        return run()
    with source_run_lock(SOURCE):
        return run()


def _run_libcal(
    as_of: datetime,
    run_id: str,
    *,
    policy=None,
    send_alert: bool = False,
    dry_run: bool = False,
) -> dict:
    """The nightly LibCal step: read, record program facts, verify the vendor, audit.

    ``dry_run`` reads and verifies but writes no fact (``facts_recorded`` then counts the
    facts a run would write); LibCal itself is never changed either way.

    Returns counts only (they travel through XCom). ``passed`` is false when the vendor
    holds registrations past the window or a request failed; the caller decides whether
    that fails the task (the CLI exits 1). Raises only when nothing could be read at all
    (no connection, the token refused) — after writing audit rows that say so.
    """
    from patron_privacy import alerts  # noqa: PLC0415
    from patron_privacy.policy import Policy, load_policy  # noqa: PLC0415
    from patron_privacy.warehouse import create_warehouse, holds_loader, write_audit  # noqa: PLC0415

    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    rules = pol.rules_for(SOURCE)
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(warehouse)
    zone = library_zone(pol.timezone)
    pseudo = Pseudonymizer.from_connection(pol.pseudonym_connection)
    ctx = Context(
        as_of=as_of,
        holds_loader=holds_loader(warehouse, SOURCE),
        options=pol.options(SOURCE),
        pseudonymizer=pseudo,
    )
    summary: dict = {
        "source": SOURCE,
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "events": 0,
        "events_with_registration": 0,
        "registrations_read": 0,
        "requests": 0,
        "retries": 0,
        "request_errors": 0,
        "errors": [],
        "facts_recorded": 0,
        "facts_skipped": 0,
        "findings": 0,
        "data_errors": 0,
        "results": [],
        "passed": False,
    }
    windows = [r.cutoff_delta for r in rules] or [parse_duration("P30D").delta]
    try:
        h, opts, summary["requests"], summary["retries"] = read_vendor(pol, as_of)
    except (LibCalError, connections.ConnectionConfigError) as exc:
        _audit_failure(rules, as_of, run_id, str(exc), pol, warehouse, write_audit)
        raise
    # Fail closed on exactly what this run read: nothing is recorded or counted from an
    # answer that does not pass the suite.
    report = _validate(h, zone, as_of, pol, warehouse, run_id)
    summary["validation"] = {k: report[k] for k in ("passed", "checks", "failed", "rows")}
    if not report["passed"]:
        from patron_privacy.validation import ValidationFailed, failure_lines  # noqa: PLC0415

        h.registrants.clear()
        h.events.clear()
        _audit_failure(rules, as_of, run_id, "data validation failed", pol, warehouse, write_audit)
        exc = ValidationFailed(
            "libcal: data validation failed, nothing recorded: "
            + "; ".join(failure_lines(report)[:10])
        )
        exc.report = report
        raise exc
    summary["errors"] = list(h.errors)
    summary["request_errors"] = len(h.errors)
    summary["events"] = len(h.events)
    summary["events_with_registration"] = sum(1 for e in h.events.values() if e.get("registration"))
    summary["registrations_read"] = sum(len(v) for v in h.registrants.values())

    # Facts: events that have ended, whose registrations (if any) could be read.
    cutoff = as_of - windows[0]
    facts, refresh = [], set()
    for ev in h.events.values():
        started = parse_time(ev.get("start"), zone)
        ended = parse_time(ev.get("end"), zone) or started
        eid = str(ev.get("id"))
        if started is None:
            summary["facts_skipped"] += 1
            continue
        if ended >= as_of:
            continue  # not over yet: counted once it is
        if ev.get("registration") and eid in h.unreadable_events:
            summary["facts_skipped"] += 1
            continue
        try:
            fact = program_fact(pseudo, ev, h.registrants.get(eid), started, opts)
        except MissingKeyError as exc:
            summary["facts_skipped"] += 1
            if str(exc) not in summary["errors"]:
                summary["errors"].append(str(exc))
            continue
        facts.append(fact)
        if ended >= cutoff:
            refresh.add(fact["fact_key"])
    if dry_run:
        summary["facts_recorded"] = len({f["fact_key"] for f in facts})
    else:
        with warehouse.begin() as w:
            summary["facts_recorded"] = write_program_facts(w, facts, refresh)
    del facts

    # Verification: what the vendor still holds past each rule's window.
    results = []
    for rule in rules:
        res, _ = verify_registrations(rule, ctx, h, zone)
        res["facts_recorded"] = summary["facts_recorded"]
        if h.errors:
            res["error"] = (
                f"incomplete: {len(h.errors)} LibCal request(s) failed, first: {h.errors[0]}"
            )[:500]
        results.append(res)
    h.registrants.clear()
    h.events.clear()
    with warehouse.begin() as w:
        write_audit(
            w,
            run_id=run_id,
            policy_version=pol.version,
            as_of=as_of,
            results=results,
            recorded_at=datetime.now(),  # when the row was written, not the run's as-of
        )
    summary["results"] = results
    summary["findings"] = sum(int(r["remaining"]) for r in results)
    summary["data_errors"] = sum(int(r["data_errors"]) for r in results)
    summary["passed"] = summary["findings"] == 0 and not summary["errors"]
    log.info(
        "libcal: %d events, %d facts recorded, %d registrations past window at the vendor, "
        "%d request errors",
        summary["events"],
        summary["facts_recorded"],
        summary["findings"],
        summary["request_errors"],
    )
    if send_alert and not summary["passed"]:
        summary["alert"] = alerts.send(libcal_alert(summary))
    return summary


def read_vendor(pol, as_of: datetime) -> tuple[Harvest, dict, int, int]:
    """One read of LibCal for a run as of ``as_of``: (harvest, options, requests, retries).

    Raises ``LibCalError`` or ``ConnectionConfigError`` when nothing can be read."""
    rules = pol.rules_for(SOURCE)
    windows = [r.cutoff_delta for r in rules] or [parse_duration("P30D").delta]
    with endpoint() as ep:
        opts = {**DEFAULT_OPTIONS, **ep.extra, **pol.options(SOURCE)}
        if not opts.get("calendars"):
            raise connections.ConnectionConfigError(
                "libcal: no calendars to read (set calendars, a list of cal_id, in the "
                "libcal_api connection's extra or in sources.libcal of the policy)"
            )
        client_opts = Options.from_mapping(
            {k: opts[k] for k in opts if k in Options.__dataclass_fields__}
        )
        client = LibCalClient(ep.base_url, ep.client_id, ep.client_secret, client_opts)
        lookback = parse_duration(opts["lookback"]).delta
        oldest_cutoff = min(as_of - w for w in windows)
        start = (oldest_cutoff - lookback).date()
        client.authenticate()
        h = harvest(client, list(opts["calendars"]), start, as_of.date())
        return h, opts, client.requests_made, client.retries


def _validate(h: Harvest, zone, as_of: datetime, pol, warehouse, run_id: str) -> dict:
    from patron_privacy.sources.libcal.expectations import Answered  # noqa: PLC0415
    from patron_privacy.validation import validate_and_record  # noqa: PLC0415

    report = validate_and_record(
        SOURCE, Answered(h, zone), as_of, pol.options(SOURCE), warehouse, run_id=run_id
    )
    report["set_aside"] = [*report["set_aside"], *h.errors]  # failed requests: left out
    return report


def validate_libcal(as_of: datetime, run_id: str, *, policy=None) -> dict:
    """Read LibCal and run its suite on the answer, storing counts in ``validation_runs``;
    records no fact and counts nothing at the vendor. The nightly DAG's first step, and
    ``validate --source libcal``; the run itself validates its own read again."""
    from patron_privacy.policy import Policy, load_policy  # noqa: PLC0415
    from patron_privacy.warehouse import create_warehouse  # noqa: PLC0415

    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(warehouse)
    h, _, _, _ = read_vendor(pol, as_of)
    try:
        return _validate(h, library_zone(pol.timezone), as_of, pol, warehouse, run_id)
    finally:
        h.registrants.clear()
        h.events.clear()


def _audit_failure(rules, as_of, run_id, message, pol, warehouse, write_audit) -> None:
    rows = [
        {
            "source": SOURCE,
            "category": r.category.name,
            "mode": "verify",
            "action": r.action,
            "window": r.window_text,
            "cutoff": str(as_of - r.cutoff_delta),
            "matched": 0,
            "changed": 0,
            "kept": {},
            "remaining": 0,
            "data_errors": 0,
            "duration_s": 0.0,
            "error": f"did not run: {message.splitlines()[0] if message else 'failed'}"[:500],
        }
        for r in rules
    ]
    with warehouse.begin() as w:
        write_audit(
            w,
            run_id=run_id,
            policy_version=pol.version,
            as_of=as_of,
            results=rows,
            recorded_at=datetime.now(),
        )


def libcal_alert(summary: dict):
    """The alert for a LibCal run: compliance findings, and/or requests that failed."""
    from patron_privacy import alerts  # noqa: PLC0415

    found = alerts.compliance_alert(
        SOURCE, summary["results"], run_id=summary["run_id"], as_of=summary["as_of"]
    )
    if found is not None and not summary["errors"]:
        return found
    day = str(summary["as_of"])[:10]
    lines = [
        f"Source: {SOURCE}",
        f"As of: {day}",
        f"Run: {summary['run_id']}",
    ]
    if summary["findings"]:
        lines.append(
            f"Result: COMPLIANCE FINDINGS — LibCal still holds {summary['findings']} "
            "registration(s) past their window; purge them in LibCal."
        )
    lines += [
        f"Result: {len(summary['errors'])} LibCal request(s) failed; the verification is "
        "incomplete and no fact was written from what could not be read.",
        "",
        "Failed requests:",
        *(f"  - {e}" for e in summary["errors"][:20]),
        "",
        "Where to look:",
        f"  - Audit: python -m patron_privacy summary --run-id {summary['run_id']}",
        f"  - By hand: python -m patron_privacy libcal --as-of {day}",
        "",
        alerts.FOOTER,
    ]
    subject = (
        f"{alerts.PREFIX} {SOURCE}: {len(summary['errors'])} request(s) failed, "
        f"{summary['findings']} registration(s) past window (run {summary['run_id']})"
    )
    return alerts.Alert("compliance", SOURCE, summary["run_id"], subject, "\n".join(lines))
