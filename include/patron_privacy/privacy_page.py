"""The Privacy page: "are we keeping anything we shouldn't, and did last night work?"

Everything the Airflow UI page shows is gathered here, from the policy file, the
warehouse and the release manifests, so it runs and is tested without Airflow; the
plugin in ``plugins/`` only routes requests to it behind the Airflow login.

What it may read is what makes it safe to show: audit rows, validation history,
legal holds and the request register, all counts by design. It never reads
``legal_hold_subjects`` (beyond counting its rows) nor any free-text field of the
register, and never a source system, so no value that could name a patron can reach
the HTML. Each section costs a handful of grouped queries, so a year of nightly
history renders in well under the page's budget (``bench_privacy_page``).
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, case, func, select

from patron_privacy import connections, sources
from patron_privacy.policy import Policy, load_policy
from patron_privacy.warehouse import (
    create_warehouse,
    legal_hold_subjects,
    legal_holds,
    request_register,
    retention_audit,
    validation_runs,
)

# Hosted sources whose API cannot delete: their runs only count what the vendor still
# holds past its window (audit mode ``verify``), a finding the library must act on.
VENDOR_HELD = frozenset({"libcal"})
TREND_DAYS = 365
RELEASES_SHOWN = 6
_PERIOD = re.compile(r"^[0-9]{4}(-[0-9]{2})?$")


# --- data ---------------------------------------------------------------------------------


@dataclass
class CategoryStatus:
    category: str
    action: str
    mode: str
    changed: int
    kept: dict[str, int]
    remaining: int  # past window, still identifying, not blocked: must be zero
    data_errors: int
    error: str | None

    @property
    def kept_total(self) -> int:
        return sum(self.kept.values())


@dataclass
class SourceStatus:
    source: str
    run_id: str | None = None
    as_of: datetime | None = None
    recorded_at: datetime | None = None
    vendor_held: bool = False
    categories: list[CategoryStatus] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return sum(c.remaining for c in self.categories)

    @property
    def errors(self) -> int:
        return sum(1 for c in self.categories if c.error)

    @property
    def verdict(self) -> str:
        """``never run``, ``incomplete`` (a step failed), ``findings`` or ``passed``."""
        if self.run_id is None:
            return "never run"
        if self.errors:
            return "incomplete"
        return "findings" if self.remaining else "passed"


@dataclass
class QualityStatus:
    source: str
    run_id: str | None = None
    as_of: datetime | None = None
    checks: int = 0
    failed: list[dict] = field(default_factory=list)  # check, column, unexpected (counts)
    last_good_as_of: datetime | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.run_id is None else not self.failed


@dataclass
class PageData:
    library_name: str
    policy_version: str
    timezone: str
    schedule: list[dict]
    sources: list[SourceStatus]
    quality: list[QualityStatus]
    holds: dict
    requests: dict
    releases: list[dict]
    trend_days: list[date]
    held_past_window: dict[str, list[int | None]]  # per source, one value per trend day
    nightly_changed: dict[str, list[int | None]]


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def warehouse_engine() -> Engine:
    """One engine per warehouse address for the life of the process: a page request must
    not pay for a new connection pool (and the tables' creation check) every time."""
    key = f"{os.environ.get('AIRFLOW_CONN_WAREHOUSE_DB', '')}|{connections.local_home()}"
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = connections.engine_for(connections.WAREHOUSE_DB)
            create_warehouse(engine)
            _engines[key] = engine
        return engine


_schedules: dict[tuple[str, str], list[dict]] = {}


def schedule_rows(policy: Policy) -> list[dict]:
    """The policy's rules as the board reads them (the CLI's ``policy show``), cached per
    policy version: describing a category imports its connector."""
    key = (policy.path, policy.version)
    if key not in _schedules:
        rows = []
        for r in policy.rules:
            cat = sources.connector(r.source).categories[r.category]
            rows.append(
                {
                    "source": r.source,
                    "category": r.category,
                    "records": cat.description,
                    "kept_for": r.window.describe(),
                    "window": r.window.text,
                    "then": r.action if r.action != "strip" else f"strip {', '.join(r.fields)}",
                    "unless": [b.replace("_", " ") for b in r.blockers],
                    "basis": r.basis,
                    "why": r.why,
                }
            )
        _schedules[key] = rows
    return _schedules[key]


class _History:
    """Per-run totals of the audit and validation tables, kept up to date incrementally.

    Both tables only grow in the nightly flow (a retried validation replaces its run's
    rows: that run is counted again from the table), so each request reads only the rows
    written since the last one, and a year of history is aggregated once per process.
    A row count that does not match (rows deleted by hand) rebuilds everything.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.audit_id = 0
        self.audit_rows = 0
        # (source, run_id, mode) -> [max as_of, max id, sum changed, sum remaining]
        self.audit: dict[tuple[str, str, str], list] = {}
        self.val_id = 0
        self.val_rows = 0
        # (source, run_id) -> [max as_of, max id, checks, failed]
        self.val: dict[tuple[str, str], list] = {}
        self.derived: dict[str, tuple] = {}

    def refresh(self, conn) -> None:
        a, v = retention_audit, validation_runs
        if conn.execute(select(func.count()).select_from(a)).scalar() < self.audit_rows:
            self.audit_id, self.audit_rows, self.audit = 0, 0, {}
        new = conn.execute(
            select(
                a.c.source,
                a.c.run_id,
                a.c.mode,
                func.max(a.c.as_of),
                func.max(a.c.id),
                func.sum(a.c.changed),
                func.sum(a.c.remaining),
                func.count(),
            )
            .where(a.c.id > self.audit_id)
            .group_by(a.c.source, a.c.run_id, a.c.mode)
        ).all()
        for source, run_id, mode, as_of, last_id, changed, remaining, n in new:
            cur = self.audit.get((source, run_id, mode))
            if cur is None:
                self.audit[(source, run_id, mode)] = [as_of, last_id, changed or 0, remaining or 0]
            else:
                cur[0], cur[1] = max(cur[0], as_of), max(cur[1], last_id)
                cur[2] += changed or 0
                cur[3] += remaining or 0
            self.audit_id = max(self.audit_id, last_id)
            self.audit_rows += n
        total = conn.execute(select(func.count()).select_from(v)).scalar()
        if total < self.val_rows:
            self.val_id, self.val_rows, self.val = 0, 0, {}
        failed = func.sum(case((v.c.passed, 0), else_=1))
        touched = conn.execute(
            select(v.c.source, v.c.run_id).where(v.c.id > self.val_id).distinct()
        ).all()
        if touched:
            runs = sorted({r for _s, r in touched})
            for chunk in range(0, len(runs), 500):
                for source, run_id, as_of, last_id, n, n_failed in conn.execute(
                    select(
                        v.c.source,
                        v.c.run_id,
                        func.max(v.c.as_of),
                        func.max(v.c.id),
                        func.count(),
                        failed,
                    )
                    .where(v.c.run_id.in_(runs[chunk : chunk + 500]))
                    .group_by(v.c.source, v.c.run_id)
                ):
                    self.val[(source, run_id)] = [as_of, last_id, n, int(n_failed or 0)]
            self.val_id = max(x[1] for x in self.val.values())
        self.val_rows = total

    def dry_runs(self) -> set[tuple[str, str]]:
        return {(s, r) for (s, r, m) in self.audit if m == "dry_run"}

    def memo(self, name: str, compute):
        """``compute()`` once per state of the tables: a page asked for again before the
        next run is written costs only the check for new rows."""
        version = (self.audit_id, self.audit_rows, self.val_id, self.val_rows)
        hit = self.derived.get(name)
        if hit is None or hit[0] != version:
            hit = (version, compute())
            self.derived[name] = hit
        return hit[1]


_histories: dict[int, tuple[Engine, _History]] = {}


def history(conn) -> _History:
    """The engine's history, brought up to date (one per engine for the process)."""
    engine = conn.engine
    with _engines_lock:
        entry = _histories.get(id(engine))
        if entry is None or entry[0] is not engine:
            entry = (engine, _History())
            _histories[id(engine)] = entry
    h = entry[1]
    with h.lock:
        h.refresh(conn)
    return h


def last_runs(conn, policy: Policy, hist: _History | None = None) -> list[SourceStatus]:
    """Per source, its latest run that was not a dry run, category by category.

    Verification is the run's separate verify step when it has one, else the engine's own
    classification after enforcing (the CLI's runs), as in ``audit_report.summary``.
    """
    a = retention_audit
    hist = hist or history(conn)

    def latest() -> dict[str, tuple[int, str]]:
        dry = hist.dry_runs()
        run_of: dict[str, tuple[int, str]] = {}
        for (source, run_id, _mode), (_as_of, last_id, _c, _r) in hist.audit.items():
            if (source, run_id) in dry:
                continue
            if source not in run_of or last_id > run_of[source][0]:
                run_of[source] = (last_id, run_id)
        return run_of

    run_of = hist.memo("last_runs", latest)
    out = []
    for source in dict.fromkeys([*policy.sources, *sorted(run_of)]):
        st = SourceStatus(source=source, vendor_held=source in VENDOR_HELD)
        run_id = run_of[source][1] if source in run_of else None
        if run_id is not None:
            rows = (
                conn.execute(
                    select(a).where(a.c.run_id == run_id, a.c.source == source).order_by(a.c.id)
                )
                .mappings()
                .all()
            )
            st.run_id = run_id
            st.as_of = rows[-1]["as_of"]
            st.recorded_at = rows[-1]["recorded_at"]
            by_cat: dict[str, CategoryStatus] = {}
            verified: dict[str, int] = {}
            for r in rows:
                if r["mode"] == "verify":
                    verified[r["category"]] = int(r["remaining"])
                c = by_cat.get(r["category"])
                if c is None or r["mode"] == "enforce":
                    kept = json.loads(r["kept_by_blocker"] or "{}")
                    c = CategoryStatus(
                        category=r["category"],
                        action=r["action"],
                        mode=r["mode"],
                        changed=int(r["changed"]),
                        kept={k: int(v) for k, v in kept.items()},
                        remaining=int(r["remaining"]),
                        data_errors=int(r["data_errors"]),
                        error=(c.error if c else None) or r["error"],
                    )
                    by_cat[r["category"]] = c
                elif r["error"] and not c.error:
                    c.error = r["error"]
            for name, remaining in verified.items():
                by_cat[name].remaining = remaining
            st.categories = list(by_cat.values())
        out.append(st)
    return out


def quality(
    conn, policy: Policy, source_names: list[str], hist: _History | None = None
) -> list[QualityStatus]:
    """Per source, the latest validation and the last one where every check passed."""
    v = validation_runs
    hist = hist or history(conn)

    def latest_and_good() -> tuple[dict[str, tuple], dict[str, datetime]]:
        latest: dict[str, tuple] = {}
        good: dict[str, datetime] = {}
        for (source, run_id), (as_of, last_id, n, n_failed) in hist.val.items():
            if source not in latest or last_id > latest[source][2]:
                latest[source] = (run_id, as_of, last_id, n)
            if not n_failed and (source not in good or as_of > good[source]):
                good[source] = as_of
        return latest, good

    latest, good = hist.memo("quality", latest_and_good)
    out = []
    for source in dict.fromkeys([*source_names, *sorted(latest)]):
        q = QualityStatus(source=source, last_good_as_of=good.get(source))
        if source in latest:
            q.run_id, q.as_of, _, q.checks = latest[source]
            q.failed = [
                {"check": c, "column": col, "unexpected": int(u)}
                for c, col, u in conn.execute(
                    select(v.c.check_name, v.c.column_name, v.c.unexpected_count)
                    .where(v.c.source == source, v.c.run_id == q.run_id, ~v.c.passed)
                    .order_by(v.c.id)
                )
            ]
        out.append(q)
    return out


def hold_and_request_counts(conn) -> tuple[dict, dict]:
    """Active legal holds and open requests, as counts: the patrons a hold names are
    counted, never read."""
    h, s, r = legal_holds, legal_hold_subjects, request_register
    active = h.c.released_at.is_(None)
    by_source = dict(
        conn.execute(select(h.c.source, func.count()).where(active).group_by(h.c.source)).all()
    )
    patrons = conn.execute(
        select(func.count()).select_from(s.join(h, h.c.hold_id == s.c.hold_id)).where(active)
    ).scalar()
    holds = {"active": sum(by_source.values()), "by_source": by_source, "patrons": int(patrons)}
    pending = r.c.decision == "pending"
    by_kind = dict(
        conn.execute(select(r.c.kind, func.count()).where(pending).group_by(r.c.kind)).all()
    )
    awaiting_counsel = conn.execute(
        select(func.count()).where(pending, r.c.counsel_reviewed_on.is_(None))
    ).scalar()
    total = conn.execute(select(func.count()).select_from(r)).scalar()
    requests = {
        "open": sum(by_kind.values()),
        "by_kind": by_kind,
        "awaiting_counsel": int(awaiting_counsel),
        "total": int(total),
    }
    return holds, requests


def trends(conn, days: int = TREND_DAYS, hist: _History | None = None):
    """Per source and as-of day over the last ``days`` days of history: records held past
    their window after the run, and records changed. The latest run of a day wins (a
    rerun is not a second night); dry runs are left out."""
    hist = hist or history(conn)
    return hist.memo(f"trends-{days}", lambda: _trends(hist, days))


def _trends(hist: _History, days: int):
    runs: dict[tuple[str, str], dict] = defaultdict(dict)
    for (source, run_id, mode), totals in hist.audit.items():
        runs[(source, run_id)][mode] = totals
    runs = {k: modes for k, modes in runs.items() if "dry_run" not in modes}
    if not runs:
        return [], {}, {}
    end = max(t[0] for modes in runs.values() for t in modes.values())
    first = min(t[0] for modes in runs.values() for t in modes.values())
    # A year at most; less while the history is younger than that.
    start = max((end - timedelta(days=days - 1)).date(), first.date())
    days = (end.date() - start).days + 1
    nights: dict[tuple[str, date], tuple[int, int, int]] = {}
    for (source, _run_id), modes in runs.items():
        as_of = max(m[0] for m in modes.values())
        if as_of.date() < start:
            continue
        last_id = max(m[1] for m in modes.values())
        held = modes["verify"][3] if "verify" in modes else modes.get("enforce", (0, 0, 0, 0))[3]
        changed = modes.get("enforce", (0, 0, 0, 0))[2]
        key = (source, as_of.date())
        if key not in nights or nights[key][0] < last_id:
            nights[key] = (last_id, int(held), int(changed))
    day_list = [start + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(day_list)}
    held: dict[str, list[int | None]] = {}
    changed: dict[str, list[int | None]] = {}
    for (source, day), (_id, h, c) in sorted(nights.items()):
        if day not in index:
            continue
        held.setdefault(source, [None] * days)[index[day]] = h
        changed.setdefault(source, [None] * days)[index[day]] = c
    return day_list, held, changed


def releases(exports_dir: Path, limit: int = RELEASES_SHOWN) -> list[dict]:
    """The latest statistics releases from their manifests: period, audit and PII-gate
    results, and the files a reader may download."""
    out = []
    if not exports_dir.is_dir():
        return out
    periods = sorted(
        (
            p
            for p in exports_dir.iterdir()
            if _PERIOD.match(p.name) and (p / "manifest.json").is_file()
        ),
        key=lambda p: p.name,
        reverse=True,
    )
    for folder in periods[:limit]:
        try:
            m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out.append({"period": folder.name, "unreadable": True, "files": []})
            continue
        audit = m.get("audit") or {}
        gate = m.get("pii_gate") or {}
        tables = [t for t in m.get("tables") or [] if t.get("available")]
        out.append(
            {
                "period": m.get("period", folder.name),
                "release": m.get("release", ""),
                "generated_at": m.get("generated_at", ""),
                "empty": bool(m.get("empty")),
                "mode": (m.get("suppression") or {}).get("mode", ""),
                "audit_passed": audit.get("passed"),
                "suppressed_cells": (m.get("suppression") or {}).get("suppressed_cells", 0),
                "pii_gate_passed": gate.get("passed"),
                "tables": len(tables),
                "files": release_files(m),
            }
        )
    return out


def release_files(manifest: dict) -> list[str]:
    """Every file a release's manifest names: nothing else in its folder is served."""
    report = manifest.get("report") or {}
    files = [report.get("html"), report.get("pdf"), "manifest.json"]
    for t in manifest.get("tables") or []:
        if t.get("available"):
            files += list((t.get("files") or {}).values())
    files += list(report.get("charts") or [])
    return [f for f in dict.fromkeys(files) if f]


def release_file(exports_dir: Path, period: str, name: str) -> Path | None:
    """The file to download, or None unless the release's manifest names it."""
    if not _PERIOD.match(period):
        return None
    folder = exports_dir / period
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if name not in release_files(manifest):
        return None
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents or not path.is_file():
        return None
    return path


def exports_dir() -> Path:
    """Where releases are published (``exports.base_dir`` of the disclosure settings)."""
    from patron_privacy.release.config import load_config  # noqa: PLC0415

    return load_config().base_dir


def gather(engine: Engine, policy: Policy, exports: Path, *, days: int = TREND_DAYS) -> PageData:
    with engine.connect() as conn:
        hist = history(conn)
        runs = last_runs(conn, policy, hist)
        dq = quality(conn, policy, [s.source for s in runs], hist)
        holds, requests = hold_and_request_counts(conn)
        day_list, held, changed = trends(conn, days, hist)
    return PageData(
        library_name=policy.library_name,
        policy_version=policy.version,
        timezone=policy.timezone,
        schedule=schedule_rows(policy),
        sources=runs,
        quality=dq,
        holds=holds,
        requests=requests,
        releases=releases(exports),
        trend_days=day_list,
        held_past_window=held,
        nightly_changed=changed,
    )


def page_data(policy_path: str | Path | None = None) -> PageData:
    """The page's data for this deployment: its policy, warehouse and exports folder."""
    return gather(warehouse_engine(), _policy(policy_path), exports_dir())


_policies: dict[tuple[str, float], Policy] = {}


def _policy(path: str | Path | None) -> Policy:
    """The policy, parsed again only when its file changes."""
    from patron_privacy.policy import DEFAULT_POLICY  # noqa: PLC0415

    p = Path(path) if path else DEFAULT_POLICY
    key = (str(p), p.stat().st_mtime)
    if key not in _policies:
        _policies.clear()
        _policies[key] = load_policy(p)
    return _policies[key]


# --- HTML ---------------------------------------------------------------------------------

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;padding:16px 24px;
color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 2px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
.sub{color:#57606a;margin:0 0 14px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:22px}
.bad{background:#ffebe9;border-color:#ff8182;color:#82071e}
.ok{background:#dafbe1;border-color:#4ac26b;color:#116329}
.warn{background:#fff8c5;border-color:#d4a72c;color:#7d4e00}
.muted{color:#57606a}
table{border-collapse:collapse;margin:4px 0 8px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td:first-child,td.nowrap{white-space:nowrap}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;border:1px solid}
details summary{cursor:pointer;color:#0969da}
details.run{margin:10px 0}
details.run summary.h3{font-size:15px;font-weight:600;color:#1b1f24}
.legend span{margin-right:12px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _n(value) -> str:
    return "–" if value is None else f"{int(value):,}"


def _when(value) -> str:
    if value is None:
        return "never"
    if isinstance(value, datetime):
        return (
            value.strftime("%Y-%m-%d %H:%M")
            if (value.hour or value.minute)
            else f"{value:%Y-%m-%d}"
        )
    return str(value)


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


_VERDICT = {
    "passed": ("verification passed", "ok"),
    "findings": ("past window, still identifying", "bad"),
    "incomplete": ("run incomplete", "bad"),
    "never run": ("never run", "warn"),
}


def _cards(d: PageData) -> str:
    ran = [s for s in d.sources if s.run_id]
    held = sum(s.remaining for s in d.sources)
    failing = [s.source for s in d.sources if s.verdict in ("findings", "incomplete")]
    dq_bad = [q.source for q in d.quality if q.passed is False]
    cards = [
        ("Past window, still identifying", _n(held), "bad" if held else "ok"),
        (
            "Sources whose last run passed",
            f"{len(ran) - len(failing)} of {len(d.sources)}",
            "bad" if failing else ("ok" if len(ran) == len(d.sources) else "warn"),
        ),
        ("Sources failing data quality", _n(len(dq_bad)), "bad" if dq_bad else "ok"),
        ("Active legal holds", _n(d.holds["active"]), ""),
        (
            "Open law-enforcement requests",
            _n(d.requests["open"]),
            "warn" if d.requests["open"] else "",
        ),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card {k}" data-card="{_e(t)}">{_e(t)}<b>{v}</b></div>'
            for t, v, k in cards
        )
        + "</div>"
    )


def _source_label(s: SourceStatus) -> tuple[str, str]:
    text, kind = _VERDICT[s.verdict]
    if s.vendor_held and s.verdict == "findings":
        text = "held by the vendor past window"
    return text, kind


def _overview(d: PageData) -> str:
    """One line per source: the answer to "did last night work?" before any detail."""
    rows = []
    for s in d.sources:
        text, kind = _source_label(s)
        ran = s.run_id is not None
        changed = sum(c.changed for c in s.categories)
        kept = sum(c.kept_total for c in s.categories)
        rows.append(
            f'<tr data-source="{_e(s.source)}"><td><a href="#run-{_e(s.source)}">'
            f"{_e(s.source)}</a>{' (hosted)' if s.vendor_held else ''}</td>"
            f"<td>{_badge(text, kind)}</td><td>{_e(_when(s.as_of))}</td>"
            f'<td class="n">{_n(changed) if ran and not s.vendor_held else "–"}</td>'
            f'<td class="n">{_n(kept) if ran else "–"}</td>'
            f'<td class="n {"bad" if s.remaining else ("ok" if ran else "")}">'
            f"{_n(s.remaining) if ran else '–'}</td>"
            f'<td class="n">{_n(s.errors) if ran else "–"}</td></tr>'
        )
    return (
        "<table><tr><th>Source</th><th>Last run</th><th>As of</th><th>Changed</th><th>Kept</th>"
        "<th>Past window, not blocked</th><th>Categories failed</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _last_runs(d: PageData) -> str:
    parts = [_overview(d)]
    for s in d.sources:
        if s.run_id is None:
            continue
        text, kind = _source_label(s)
        summary = f"{_e(s.source)} {_badge(text, kind)}"
        if s.vendor_held:
            summary += (
                ' <span class="muted">hosted: the vendor holds the records, '
                "this pipeline can only count them</span>"
            )
        meta = (
            f'<p class="muted">as of {_e(_when(s.as_of))} · run <code>{_e(s.run_id)}</code>'
            f" · recorded {_e(_when(s.recorded_at))}</p>"
        )
        rows = []
        # Findings and failures first: the rows someone has to act on.
        for c in sorted(s.categories, key=lambda c: not (c.remaining or c.error)):
            kept = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(c.kept.items()) if v)
            verdict_cls = "bad" if c.remaining or c.error else "ok"
            finding = "vendor still holds" if s.vendor_held else "still identifying"
            verdict = (
                (f"{c.remaining:,} {finding}" if c.remaining else "0 — passed")
                if not c.error
                else "did not complete"
            )
            rows.append(
                f'<tr data-category="{_e(c.category)}"><td>{_e(c.category)}</td>'
                f"<td>{_e(c.action)}</td>"
                f'<td class="n">{"–" if s.vendor_held else _n(c.changed)}</td>'
                f'<td class="n">{_n(c.kept_total)}</td><td>{_e(kept) or "–"}</td>'
                f'<td class="n {verdict_cls}">{_e(verdict)}</td>'
                f'<td class="n">{_n(c.data_errors)}</td>'
                f"<td>{_e(c.error or '')}</td></tr>"
            )
        table = (
            "<table><tr><th>Category</th><th>Action</th><th>Changed</th><th>Kept</th>"
            "<th>Kept because</th><th>Past window, not blocked</th><th>Data errors</th>"
            "<th>Error</th></tr>" + "".join(rows) + "</table>"
        )
        # A clean run folds away; one with findings or errors stays open.
        is_open = " open" if s.verdict != "passed" else ""
        parts.append(
            f'<details class="run" id="run-{_e(s.source)}"{is_open}>'
            f'<summary class="h3">{summary}</summary>{meta}{table}</details>'
        )
    return "".join(parts)


def _quality(d: PageData) -> str:
    rows = []
    for q in d.quality:
        if q.passed is None:
            status = _badge("not validated yet", "warn")
        elif q.passed:
            status = _badge("passed", "ok")
        else:
            status = _badge(f"{len(q.failed)} of {q.checks} checks failed", "bad")
        failed = "; ".join(
            f"{f['check']}{'(' + f['column'] + ')' if f['column'] else ''}: "
            + ("not evaluated" if f["unexpected"] < 0 else f"{f['unexpected']:,} unexpected")
            for f in q.failed[:8]
        )
        rows.append(
            f'<tr data-source="{_e(q.source)}"><td>{_e(q.source)}</td><td>{status}</td>'
            f'<td>{_e(_when(q.as_of))}</td><td class="n">{_n(q.checks or None)}</td>'
            f"<td>{_e(_when(q.last_good_as_of))}</td><td>{_e(failed)}</td></tr>"
        )
    return (
        "<table><tr><th>Source</th><th>Latest validation</th><th>As of</th><th>Checks</th>"
        "<th>Last good run (as of)</th><th>Failed checks</th></tr>" + "".join(rows) + "</table>"
    )


def _legal(d: PageData) -> str:
    h, r = d.holds, d.requests
    by_source = ", ".join(f"{k} {v}" for k, v in sorted(h["by_source"].items())) or "none"
    by_kind = (
        ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(r["by_kind"].items())) or "none"
    )
    return (
        "<table>"
        f'<tr><th>Active legal holds</th><td class="n" id="holds-active">{_n(h["active"])}</td>'
        f"<td>by source: {_e(by_source)}; patrons covered: {_n(h['patrons'])}</td></tr>"
        f'<tr><th>Open requests</th><td class="n" id="requests-open">{_n(r["open"])}</td>'
        f"<td>by kind: {_e(by_kind)}; awaiting counsel review: {_n(r['awaiting_counsel'])}; "
        f"all requests on the register: {_n(r['total'])}</td></tr>"
        "</table>"
        '<p class="muted">Counts only. Details: <code>python -m patron_privacy holds list</code>, '
        "<code>requests list</code>.</p>"
    )


def _generated(value: str) -> str:
    """``2026-11-30T05:12:32+00:00`` -> ``2026-11-30 05:12 UTC`` (manifests are in UTC)."""
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value or "")
    return f"{t:%Y-%m-%d %H:%M}" + (" UTC" if t.utcoffset() == timedelta(0) else "")


def _releases(d: PageData, base: str) -> str:
    if not d.releases:
        return '<p class="muted">No statistics release published yet.</p>'
    rows = []
    for rel in d.releases:
        period = rel["period"]
        if rel.get("unreadable"):
            rows.append(
                f"<tr><td>{_e(period)}</td>"
                f"<td colspan=6>{_badge('manifest unreadable', 'bad')}</td></tr>"
            )
            continue
        audit = rel["audit_passed"]
        gate = rel["pii_gate_passed"]
        links = " · ".join(
            f'<a href="{_e(base)}/releases/{_e(period)}/{_e(f)}" target="_blank" '
            f'rel="noopener">{_e(f)}</a>'
            for f in rel["files"]
            if not f.startswith("charts/") and not f.endswith(".parquet")
        )
        rows.append(
            f'<tr data-period="{_e(period)}"><td>{_e(period)}</td><td>{_e(rel["release"])}</td>'
            f"<td>{_e(_generated(rel['generated_at']))}</td>"
            f"<td>{_badge('passed' if audit else 'FAILED', 'ok' if audit else 'bad')} "
            f"{_n(rel['suppressed_cells'])} suppressed cells ({_e(rel['mode'])})</td>"
            f"<td>{_badge('passed' if gate else 'not passed', 'ok' if gate else 'bad')}</td>"
            f"<td>{links}</td></tr>"
        )
    return (
        "<table><tr><th>Period</th><th>Release</th><th>Generated</th><th>Disclosure audit</th>"
        "<th>PII gate</th><th>Download</th></tr>" + "".join(rows) + "</table>"
    )


def _chart(title: str, days: list[date], series: dict[str, list[int | None]], ident: str) -> str:
    """A small line chart, one line per source, drawn as inline SVG (nothing fetched)."""
    w, h, left, bottom, top = 720, 150, 46, 20, 8
    if not days or not series:
        return f'<p class="muted" id="{ident}">{_e(title)}: no history yet.</p>'
    if len(days) < 2:  # one night is a number, not a trend
        values = ", ".join(f"{src} {_n(v[-1])}" for src, v in sorted(series.items()))
        return (
            f'<p id="{ident}"><b>{_e(title)}</b><br><span class="muted">one night recorded '
            f"so far ({days[0]:%Y-%m-%d}): {_e(values)}; the chart starts with the second."
            "</span></p>"
        )
    peak = max((v for vals in series.values() for v in vals if v is not None), default=0) or 1
    n = len(days)

    def x(i: int) -> float:
        return left + (w - left - 8) * (i / max(n - 1, 1))

    def y(v: int) -> float:
        return top + (h - top - bottom) * (1 - v / peak)

    out = [
        f'<figure id="{ident}" style="margin:6px 0 14px">',
        f"<figcaption><b>{_e(title)}</b></figcaption>",
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(title)}">',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{w - 8}" y2="{y(0):.1f}" stroke="#d0d7de"/>',
        f'<line x1="{left}" y1="{y(peak):.1f}" x2="{w - 8}" y2="{y(peak):.1f}" stroke="#eaeef2"/>',
        f'<text x="{left - 4}" y="{y(peak) + 4:.1f}" text-anchor="end">{peak:,}</text>',
        f'<text x="{left - 4}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{h - 4}">{days[0]:%Y-%m-%d}</text>',
        f'<text x="{w - 8}" y="{h - 4}" text-anchor="end">{days[-1]:%Y-%m-%d}</text>',
    ]
    legend = []
    for k, (source, vals) in enumerate(sorted(series.items())):
        color = _COLORS[k % len(_COLORS)]
        segments, current = [], []
        for i, v in enumerate(vals):
            if v is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(f"{x(i):.1f},{y(v):.1f}")
        if current:
            segments.append(current)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            else:
                out.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                    f'points="{" ".join(seg)}" data-source="{_e(source)}"/>'
                )
        last = next((v for v in reversed(vals) if v is not None), None)
        legend.append(
            f'<span><i style="background:{color}"></i>{_e(source)} (last {_n(last)})</span>'
        )
    out.append("</svg>")
    out.append(f'<div class="legend">{"".join(legend)}</div></figure>')
    return "".join(out)


def _schedule(d: PageData) -> str:
    rows = []
    for i, r in enumerate(d.schedule, 1):
        rows.append(
            f'<tr data-rule="{_e(r["source"])}.{_e(r["category"])}"><td class="n">{i}</td>'
            f"<td>{_e(r['source'])}</td><td>{_e(r['records'])}<br>"
            f'<code class="muted">{_e(r["category"])}</code></td>'
            f'<td>{_e(r["kept_for"])} <span class="muted">({_e(r["window"])})</span></td>'
            f"<td>{_e(r['then'])}</td><td>{_e(', '.join(r['unless']))}</td>"
            f"<td><details><summary>{_e(r['basis'])}</summary>{_e(r['why'])}</details></td></tr>"
        )
    return (
        "<table><tr><th>#</th><th>Source</th><th>Records</th><th>Kept for</th><th>Then</th>"
        "<th>Unless</th><th>Basis and reason</th></tr>" + "".join(rows) + "</table>"
    )


def render_html(d: PageData, *, base: str = "") -> str:
    """The whole page, server-rendered: no script, no font or style fetched from anywhere."""
    body = [
        f"<h1>Privacy — {_e(d.library_name)}</h1>",
        f'<p class="sub">Are we keeping anything we should not, and did last night work? '
        f"Retention policy version <code>{_e(d.policy_version)}</code>; times in {_e(d.timezone)}. "
        "Counts only: no patron is named on this page.</p>",
        _cards(d),
        '<h2 id="last-runs">Last run per source</h2>',
        _last_runs(d),
        '<h2 id="data-quality">Data quality</h2>',
        _quality(d),
        '<h2 id="legal">Legal holds and requests</h2>',
        _legal(d),
        '<h2 id="releases">Statistics releases</h2>',
        _releases(d, base),
        '<h2 id="trends">Trends</h2>',
        _chart(
            "Records past their window still identifying a patron, after each night",
            d.trend_days,
            d.held_past_window,
            "chart-held",
        ),
        _chart(
            "Records changed per night (anonymized or deleted)",
            d.trend_days,
            d.nightly_changed,
            "chart-changed",
        ),
        '<h2 id="schedule">Retention schedule</h2>',
        _schedule(d),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Privacy — {_e(d.library_name)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )
