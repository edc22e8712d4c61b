"""Run a file source end to end: read, facts, enforce, verify, audit.

Functions for the DAGs and the CLI (each writes its audit rows and returns
the results as dicts, counts only, as ``engine.CategoryResult.as_dict``):

* ``run_folder(source_name, as_of, run_id, dry_run)`` — a drop-folder source
  (``signups``, ``programs``);
* ``run_squid(as_of, run_id, dry_run)`` — Squid access logs;
* ``run_source(...)`` — either, by the source's name;
* ``verify_source(source_name, as_of, run_id)`` — verification only.

The steps of an enforcing run, in order:

1. every file is read and checked; a file or line that cannot be read is
   reported (file and line), counted under ``data_errors`` and excluded from
   everything below — nothing is deleted on the strength of unreadable data;
2. facts from the readable files go to the warehouse in one transaction;
   if they cannot be written, nothing changes;
3. files change: deleted, or rewritten atomically (``files.atomic``); a file
   that changed since it was read is left for the next run;
4. verification reads again every file that changed (and any whose stamp
   moved) and counts, per category, the records past their window that still
   identify: ``remaining``, which must be 0;
5. one audit row per category, tied to the policy's hash.

A dry run does step 1 and reports what would change (``remaining``) and what
would be kept and why; it writes nothing but its audit rows.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from patron_privacy import connections, sources
from patron_privacy.engine import CategoryResult
from patron_privacy.facts import MissingKeyError, Pseudonymizer, _insert_ignoring_duplicates
from patron_privacy.files.atomic import FileChanged, atomic_delete, remove_stale_temps
from patron_privacy.files.rules import BoundRule, HoldIndex, Tally, bind, error_text, new_result
from patron_privacy.locks import source_run_lock
from patron_privacy.policy import Policy, load_policy
from patron_privacy.timebase import library_zone
from patron_privacy.warehouse import active_holds, create_warehouse, write_audit

log = logging.getLogger("patron_privacy.files")

FOLDER_SOURCES = {
    "signups": "patron_privacy.sources.dropfolder.signups",
    "programs": "patron_privacy.sources.dropfolder.programs",
}
SQUID_SOURCES = ("squid",)


class FileSourceError(RuntimeError):
    """A file source cannot run at all (no such folder, no rules); nothing was changed."""


@dataclass
class Setup:
    source: str
    policy: Policy
    rules: list[BoundRule]
    options: dict
    as_of: datetime
    zone: object
    warehouse: object
    holds_signature: tuple = ()

    def load_holds(self) -> HoldIndex:
        with self.warehouse.connect() as w:
            holds = active_holds(w, self.source)
        self.holds_signature = tuple(sorted(map(repr, holds)))
        return HoldIndex(holds)

    def holds_changed(self) -> bool:
        before = self.holds_signature
        with self.warehouse.connect() as w:
            now = tuple(sorted(map(repr, active_holds(w, self.source))))
        return now != before


@dataclass
class Outcome:
    """What a run did, per category, before it is told as CategoryResults."""

    before: dict[str, Tally] = field(default_factory=dict)
    after: dict[str, Tally] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    files_changed: int = 0
    facts_recorded: int = 0
    errors: list[str] = field(default_factory=list)
    fatal: str | None = None


def _setup(source: str, as_of: datetime, policy: Policy | str | None) -> Setup:
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    connector = sources.connector(source)
    rules = pol.rules_for(source)
    if not rules:
        raise FileSourceError(f"source {source}: the policy has no rules for it")
    opts = {**connector.default_options, **pol.options(source)}
    problems = connector.check_options(opts)
    if problems:
        raise FileSourceError(f"sources.{source}: " + "; ".join(problems))
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(warehouse)
    return Setup(
        source, pol, bind(rules, as_of), opts, as_of, library_zone(pol.timezone), warehouse
    )


def _sum(tallies: list[dict[str, Tally]], rules: list[BoundRule]) -> dict[str, Tally]:
    out = {r.category: Tally() for r in rules}
    for t in tallies:
        for cat, tally in t.items():
            out.setdefault(cat, Tally()).add(tally)
    return out


def _write_facts(setup: Setup, table, rows: list[dict]) -> int:
    if not rows:
        return 0
    unique = list({r["fact_key"]: r for r in rows}.values())
    with setup.warehouse.begin() as w:
        return _insert_ignoring_duplicates(w, table, unique)


def _results(setup: Setup, mode: str, out: Outcome) -> list[CategoryResult]:
    results = []
    for i, rule in enumerate(setup.rules):
        r = new_result(setup.source, rule, mode)
        before = out.before.get(rule.category, Tally())
        after = out.after.get(rule.category, before)
        if mode == "enforce":
            r.changed = out.changed.get(rule.category, 0)
            r.kept = {k: v for k, v in sorted(after.kept.items()) if v}
            r.remaining = after.candidates
            r.data_errors = after.data_errors
            r.matched = r.changed + r.remaining + sum(r.kept.values())
            r.batches = out.files_changed
            r.facts_recorded = out.facts_recorded if i == 0 else 0
        else:
            r.kept = {k: v for k, v in sorted(before.kept.items()) if v}
            r.remaining = before.candidates
            r.data_errors = before.data_errors
            r.matched = r.remaining + sum(r.kept.values())
        r.error = out.fatal or error_text(out.errors)
        results.append(r)
    return results


def _finish(setup: Setup, mode: str, out: Outcome, run_id: str, started: float) -> list[dict]:
    import time  # noqa: PLC0415

    results = _results(setup, mode, out)
    elapsed = round(time.perf_counter() - started, 3)
    for r in results:
        r.duration_s = elapsed
        log.info(
            "source %s category %s: %s changed=%d kept=%s remaining=%d data_errors=%d",
            r.source,
            r.category,
            r.mode,
            r.changed,
            r.kept,
            r.remaining,
            r.data_errors,
        )
    for msg in out.errors:
        log.warning("source %s: %s", setup.source, msg)
    with setup.warehouse.begin() as w:
        write_audit(
            w,
            run_id=run_id,
            policy_version=setup.policy.version,
            as_of=setup.as_of,
            results=results,
            recorded_at=datetime.now(),  # when the row was written, not the run's as-of
        )
    return [r.as_dict() for r in results]


# --- drop folders -------------------------------------------------------------------------------


def _folder_module(source: str):
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(FOLDER_SOURCES[source])
    except KeyError:
        raise FileSourceError(
            f"{source!r} is not a folder source (expected one of {', '.join(FOLDER_SOURCES)})"
        ) from None


def _locked_when_enforcing(run: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
    """An enforcing run holds its source's run lock (``patron_privacy.locks``), as the
    database sources' runs do: two at once would each sweep the other's half-written
    temporary files and rewrite the same file twice. The second waits, then refuses
    with ``LockBusy`` having done nothing. Reading runs take no lock."""
    sig = inspect.signature(run)

    @functools.wraps(run)
    def locked(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        if (a["mode"] or ("dry_run" if a["dry_run"] else "enforce")) != "enforce":
            return run(*args, **kwargs)
        with source_run_lock(a["source_name"]):
            return run(*args, **kwargs)

    return locked


@_locked_when_enforcing
def run_folder(
    source_name: str,
    as_of: datetime,
    run_id: str,
    dry_run: bool = True,
    *,
    policy: Policy | str | None = None,
    mode: str | None = None,
) -> list[dict]:
    """Enforce (or preview, ``dry_run``) the policy on a drop folder's CSV exports.

    ``as_of``: naive local time (midnight of the run's day, as ``timebase``
    gives it). Returns one result dict per category; writes them as audit rows.
    """
    import time  # noqa: PLC0415

    from patron_privacy.sources.dropfolder import csvfiles  # noqa: PLC0415
    from patron_privacy.sources.dropfolder.kinds import folder_specs  # noqa: PLC0415

    started = time.perf_counter()
    module = _folder_module(source_name)
    setup = _setup(source_name, as_of, policy)
    mode = mode or ("dry_run" if dry_run else "enforce")
    kind, rules, zone = module.KIND, setup.rules, setup.zone
    specs = folder_specs(setup.options)
    for spec in specs:
        if not spec.path.is_dir():
            raise FileSourceError(f"source {source_name}: folder {spec.path} does not exist")
        if mode == "enforce":
            remove_stale_temps(spec.path)
    holds = setup.load_holds()
    out = Outcome()
    record = mode in ("enforce", "facts")
    facts = module.Facts(source_name, _pseudonymizer(setup), as_of) if record else None
    scans = []
    for spec in specs:
        for path in csvfiles.list_files(spec):
            scan = csvfiles.scan_file(
                path, spec, kind, zone, as_of, rules, holds, facts.add if facts else None
            )
            scans.append((spec, scan))
            if scan.error:
                out.errors.append(scan.error)
    out.before = _sum([s.tallies for _, s in scans], rules)
    if mode == "facts":
        return _facts_only(setup, module.FACT_TABLE, facts.finish(), out)
    if mode != "enforce":
        return _finish(setup, mode, out, run_id, started)

    try:
        out.facts_recorded = _write_facts(setup, module.FACT_TABLE, facts.finish())
    except MissingKeyError as exc:
        out.fatal = f"nothing changed: facts could not be recorded ({exc})"
    if out.fatal is None:
        for spec, scan in scans:
            if not scan.needs_change:
                continue
            if setup.holds_changed():  # a hold placed mid-run binds the files after it
                holds = setup.load_holds()
                scan = csvfiles.scan_file(scan.path, spec, kind, zone, as_of, rules, holds)
                if not scan.needs_change:
                    continue
            try:
                changed = csvfiles.apply_change(scan, spec, kind, zone, as_of, rules, holds)
            except (FileChanged, csvfiles.FileProblem, OSError) as exc:
                out.errors.append(_describe(scan.display, exc))
                continue
            out.files_changed += 1
            for cat, n in changed.items():
                out.changed[cat] = out.changed.get(cat, 0) + n

    def rescan(spec, path):
        return csvfiles.scan_file(path, spec, kind, zone, as_of, rules, holds)

    out.after = _verify(
        [(spec, s.path, s.stamp, s.tallies) for spec, s in scans],
        [(spec, p) for spec in specs for p in csvfiles.list_files(spec)],
        rescan,
        rules,
    )
    return _finish(setup, mode, out, run_id, started)


def _facts_only(setup: Setup, table, rows: list[dict], out: Outcome) -> dict:
    """Facts from every readable file, nothing changed, no audit row (the DAG's facts step;
    the enforcing step that follows records the same facts again, ignored as duplicates)."""
    written = _write_facts(setup, table, rows)
    log.info("source %s: %d new facts recorded", setup.source, written)
    return {"facts_recorded": written, "files_set_aside": len(out.errors)}


def _describe(display: str, exc: Exception) -> str:
    if isinstance(exc, FileChanged):
        return f"{display}: changed while it was being processed; left for the next run"
    if isinstance(exc, OSError):
        return f"{display}: {exc.strerror or type(exc).__name__}; left unchanged"
    return str(exc)


def _verify(
    scanned: list[tuple],
    present: list[tuple],
    rescan: Callable,
    rules: list[BoundRule],
) -> dict[str, Tally]:
    """Every file there now: its earlier counts if it is byte for byte what was read
    (same inode, size and time), else read again."""
    from patron_privacy.files.atomic import FileStamp  # noqa: PLC0415

    known = {Path(path): (stamp, tallies) for _, path, stamp, tallies in scanned}
    tallies = []
    for where, path in present:
        seen = known.get(Path(path))
        try:
            stamp = FileStamp.of(path)
        except FileNotFoundError:
            continue
        if seen is not None and seen[0] == stamp:
            tallies.append(seen[1])
        else:
            tallies.append(rescan(where, path).tallies)
    return _sum(tallies, rules)


def _pseudonymizer(setup: Setup) -> Pseudonymizer:
    return Pseudonymizer.from_connection(setup.policy.pseudonym_connection)


# --- Squid --------------------------------------------------------------------------------------


@_locked_when_enforcing
def run_squid(
    as_of: datetime,
    run_id: str,
    dry_run: bool = True,
    *,
    source_name: str = "squid",
    policy: Policy | str | None = None,
    mode: str | None = None,
) -> list[dict]:
    """Enforce (or preview) the policy on Squid's access logs; see the module docstring."""
    import time  # noqa: PLC0415

    from patron_privacy.sources.squid import accesslog  # noqa: PLC0415
    from patron_privacy.warehouse import internet_use_facts  # noqa: PLC0415

    started = time.perf_counter()
    setup = _setup(source_name, as_of, policy)
    mode = mode or ("dry_run" if dry_run else "enforce")
    cfg = accesslog.SquidConfig.from_options(setup.options, setup.zone)
    if not cfg.folder.is_dir():
        raise FileSourceError(f"source {source_name}: folder {cfg.folder} does not exist")
    enforce = mode == "enforce"
    record = enforce or mode == "facts"
    if enforce:
        remove_stale_temps(cfg.folder)
    plan = accesslog.Plan.of(setup.rules, as_of, setup.load_holds(), setup.zone)
    out = Outcome()
    facts = accesslog.FactsAgg() if record else None
    scans = []
    try:
        for path in cfg.files():
            scan = accesslog.process(path, cfg, plan, facts=facts, write=enforce)
            scans.append(scan)
            out.errors.extend(scan.messages)
            if scan.error:
                out.errors.append(scan.error)
        out.before = _sum([s.tallies for s in scans], setup.rules)
        if mode == "facts":
            rows = facts.rows(cfg, source_name, _pseudonymizer(setup))
            return _facts_only(setup, internet_use_facts, rows, out)
        if not enforce:
            return _finish(setup, mode, out, run_id, started)
        try:
            rows = facts.rows(cfg, source_name, _pseudonymizer(setup))
            out.facts_recorded = _write_facts(setup, internet_use_facts, rows)
        except MissingKeyError as exc:
            out.fatal = f"nothing changed: facts could not be recorded ({exc})"
        if out.fatal is None and any(s.needs_change for s in scans) and setup.holds_changed():
            # A hold placed while the files were read: read them again under it.
            for s in scans:
                if s.pending is not None:
                    s.pending.discard()
            plan = accesslog.Plan.of(setup.rules, as_of, setup.load_holds(), setup.zone)
            scans = [accesslog.process(s.path, cfg, plan, write=True) for s in scans]
        for scan in scans:
            if out.fatal is not None or not scan.needs_change:
                continue
            try:
                if scan.delete_whole:
                    atomic_delete(scan.path, expect=scan.stamp)
                elif scan.pending is not None:
                    scan.pending.commit(scan.stamp)
                    scan.pending = None
                else:
                    continue
            except (FileChanged, OSError) as exc:
                out.errors.append(_describe(scan.display, exc))
                continue
            out.files_changed += 1
            for cat, t in scan.tallies.items():
                out.changed[cat] = out.changed.get(cat, 0) + t.candidates
    finally:
        for scan in scans:
            if scan.pending is not None:
                scan.pending.discard()

    def rescan(_where, path):
        return accesslog.process(path, cfg, plan)

    out.after = _verify(
        [(None, s.path, s.stamp, s.tallies) for s in scans],
        [(None, p) for p in cfg.files()],
        rescan,
        setup.rules,
    )
    return _finish(setup, mode, out, run_id, started)


# --- any file source ----------------------------------------------------------------------------


def is_file_source(source: str) -> bool:
    return source in FOLDER_SOURCES or source in SQUID_SOURCES


def run_source(
    source_name: str,
    as_of: datetime,
    run_id: str,
    dry_run: bool = True,
    *,
    policy: Policy | str | None = None,
) -> list[dict]:
    """``run_folder`` or ``run_squid``, by the source's name."""
    if source_name in SQUID_SOURCES:
        return run_squid(as_of, run_id, dry_run, source_name=source_name, policy=policy)
    return run_folder(source_name, as_of, run_id, dry_run, policy=policy)


def record_facts(source_name: str, as_of: datetime, *, policy: Policy | str | None = None) -> dict:
    """Read every file and record its facts in the warehouse; change nothing, audit nothing.

    The nightly DAG's facts step, so its asset event means the facts are there before
    any file changes. Facts are keyed, so the enforcing run's own recording of the same
    records adds nothing twice."""
    if source_name in SQUID_SOURCES:
        return run_squid(as_of, "", source_name=source_name, policy=policy, mode="facts")
    return run_folder(source_name, as_of, "", policy=policy, mode="facts")


def validate_source(
    source_name: str, as_of: datetime, run_id: str, *, policy: Policy | str | None = None
) -> dict:
    """Run the source's validation suite on its files as the run will read them, and store
    the result (counts only) in ``validation_runs``. Files or lines the reader refuses are
    set aside (named by file and line in ``set_aside``), not failures of the source."""
    from patron_privacy import validation  # noqa: PLC0415 - pandas and GX only when validating

    setup = _setup(source_name, as_of, policy)
    if source_name in SQUID_SOURCES:
        from patron_privacy.sources.squid import accesslog  # noqa: PLC0415
        from patron_privacy.sources.squid.expectations import Logs  # noqa: PLC0415

        cfg = accesslog.SquidConfig.from_options(setup.options, setup.zone)
        if not cfg.folder.is_dir():
            raise FileSourceError(f"source {source_name}: folder {cfg.folder} does not exist")
        handle = Logs(cfg)
    else:
        from patron_privacy.sources.dropfolder.expectations import Folders  # noqa: PLC0415
        from patron_privacy.sources.dropfolder.kinds import folder_specs  # noqa: PLC0415

        specs = tuple(folder_specs(setup.options))
        for spec in specs:
            if not spec.path.is_dir():
                raise FileSourceError(f"source {source_name}: folder {spec.path} does not exist")
        handle = Folders(_folder_module(source_name).KIND, specs, setup.zone, as_of)
    return validation.validate_and_record(
        source_name, handle, as_of, setup.options, setup.warehouse, run_id=run_id
    )


def verify_source(
    source_name: str, as_of: datetime, run_id: str, *, policy: Policy | str | None = None
) -> list[dict]:
    """Read every file and count, per category, what is past its window and still
    identifies (``remaining``: must be 0). Changes nothing; writes audit rows (mode verify)."""
    if source_name in SQUID_SOURCES:
        return run_squid(as_of, run_id, source_name=source_name, policy=policy, mode="verify")
    return run_folder(source_name, as_of, run_id, policy=policy, mode="verify")
