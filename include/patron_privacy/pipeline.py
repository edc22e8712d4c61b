"""The nightly steps for one source: facts, enforcement, verification, audit.

The DAG runs each step as a task and the CLI runs them in sequence; both
call these functions, so what the scheduler does is exactly what a person
can run by hand. Steps exchange counts only (they travel through XCom).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Engine, select

from patron_privacy import connections, sources
from patron_privacy.engine import (
    CategoryResult,
    Context,
    check_schema,
    enforce_rule,
    inspect_rule,
)
from patron_privacy.facts import Pseudonymizer, write_circulation_facts
from patron_privacy.locks import (
    Held,
    category_lock_name,
    lock_wait_s,
    run_lock_name,
    warehouse_lock,
    warehouse_locks,
)
from patron_privacy.policy import Policy, load_policy
from patron_privacy.warehouse import (
    create_warehouse,
    fact_watermarks,
    holds_loader,
    write_audit,
)

log = logging.getLogger("patron_privacy")


class VerificationFailed(RuntimeError):
    """Records past their window still identify a patron and nothing blocks them."""


@dataclass
class Run:
    """Everything one step needs, resolved once: policy, engines and the run context."""

    source: str
    policy: Policy
    source_engine: Engine
    warehouse: Engine
    ctx: Context

    @property
    def rules(self):
        return self.policy.rules_for(self.source)

    @property
    def batch_size(self) -> int:
        return int(self.policy.options(self.source).get("batch_size", 10_000))

    @property
    def workers(self) -> int:
        return int(self.policy.options(self.source).get("workers", 1))


def open_run(source: str, as_of: datetime, policy: Policy | str | None = None) -> Run:
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    conn = sources.connector(source)
    source_engine = connections.engine_for(conn.conn_id)
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(warehouse)
    pseudo = Pseudonymizer.from_connection(pol.pseudonym_connection)

    def sink(rows: list[dict]) -> int:
        with warehouse.begin() as wconn:
            return write_circulation_facts(wconn, rows)

    ctx = Context(
        as_of=as_of,
        holds_loader=holds_loader(warehouse, source),
        options=pol.options(source),
        facts_sink=sink,
        pseudonymizer=pseudo,
    )
    opts = {**conn.default_options, **pol.options(source)}
    run = Run(source, pol, source_engine, warehouse, ctx)
    # Fail before any change: a missing table or column, or no anonymous patron.
    with source_engine.connect() as c:
        check_schema(c, run.rules, ctx)
    conn.prepare(source_engine, opts, ctx)
    return run


def extract_facts(run: Run) -> dict:
    """Facts for everything returned since the last run's as-of (the watermark), under
    the source's run lock (see ``enforce``)."""
    connector = sources.connector(run.source)
    if connector.extract_facts is None:
        return {"facts_recorded": 0}
    with warehouse_lock(run.warehouse, run_lock_name(run.source), wait_s=lock_wait_s()):
        return _extract_facts(run, connector)


def _extract_facts(run: Run, connector) -> dict:
    with run.warehouse.connect() as w:
        since = w.execute(
            select(fact_watermarks.c.high_water).where(
                fact_watermarks.c.source == run.source, fact_watermarks.c.stream == "loans"
            )
        ).scalar()
    written = connector.extract_facts(run.source_engine, run.ctx, since, run.batch_size)
    with run.warehouse.begin() as w:
        current = w.execute(
            select(fact_watermarks.c.high_water).where(
                fact_watermarks.c.source == run.source, fact_watermarks.c.stream == "loans"
            )
        ).scalar()
        if current is None:
            w.execute(
                fact_watermarks.insert().values(
                    source=run.source, stream="loans", high_water=run.ctx.as_of
                )
            )
        elif current < run.ctx.as_of:
            w.execute(
                fact_watermarks.update()
                .where(fact_watermarks.c.source == run.source, fact_watermarks.c.stream == "loans")
                .values(high_water=run.ctx.as_of)
            )
    log.info("source %s: %d new facts recorded", run.source, written)
    return {"facts_recorded": written}


# Rules interact: deleting a guarantor link or a paid fine can lift the blocker
# that kept a patron record an earlier rule saw. A rule whose verification is
# no longer clean after a full pass runs again, until nothing more changes.
MAX_PASSES = 3


def _log(run: Run, r: CategoryResult) -> None:
    log.info(
        "source %s category %s: %s changed=%d kept=%s remaining=%d data_errors=%d",
        run.source,
        r.category,
        r.mode,
        r.changed,
        r.kept,
        r.remaining,
        r.data_errors,
    )


def enforce(run: Run, *, dry_run: bool) -> list[dict]:
    """Apply (or preview) every rule of the source; one category's failure stops the rest.

    A real run holds the source's run lock (``patron_privacy.locks``) throughout: a second
    run of the same source started meanwhile waits ``lock_wait_s()`` and then refuses
    with ``LockBusy``, having done nothing; if it gets the lock after the first finished,
    it finds nothing left to change. The lock is checked before every batch, so a run
    whose lock session was lost stops instead of going on unguarded. A dry run changes
    nothing and takes no lock.
    """
    rules = run.rules
    if dry_run:
        results = [inspect_rule(run.source_engine, rule, run.ctx, "dry_run") for rule in rules]
        for r in results:
            _log(run, r)
        return [r.as_dict() for r in results]
    with warehouse_locks(run.warehouse, source_lock_names(run), wait_s=lock_wait_s()) as held:
        return _enforce(run, held)


def source_lock_names(run: Run) -> list[str]:
    """A whole-source run excludes every other run of the source, and every category
    task of the DAG's fan-out (``enforce_category``) too."""
    return [
        run_lock_name(run.source),
        *(category_lock_name(run.source, r.category.name) for r in run.rules),
    ]


def fan_out_categories(run: Run) -> list[str]:
    """The categories the nightly DAG enforces side by side, one task each, before the
    whole-source pass (``enforce``) finishes what their interplay left.

    None on SQLite: it has one writer at a time, so parallel tasks would only queue
    on its lock (the demo's database); the whole-source pass then does all the work.
    """
    if run.source_engine.dialect.name == "sqlite":
        return []
    return [r.category.name for r in run.rules]


def enforce_category(run: Run, category: str) -> dict:
    """One pass of one category under that category's lock (not the source's): other
    categories of the source may run meanwhile. Each batch is its own transaction with
    its blockers and holds evaluated inside it, so running side by side changes nothing
    about what may be touched; a blocker another category lifts meanwhile is picked up
    by the whole-source pass that follows."""
    rules = {r.category.name: r for r in run.rules}
    if category not in rules:
        raise KeyError(f"source {run.source} has no rule for category {category}")
    name = category_lock_name(run.source, category)
    with warehouse_lock(run.warehouse, name, wait_s=lock_wait_s()) as held:
        r = enforce_rule(
            run.source_engine,
            rules[category],
            _guarded(run.ctx, held),
            batch_size=run.batch_size,
            workers=run.workers,
        )
    _log(run, r)
    return r.as_dict()


def merge_fanned(fanned: list[dict], results: list[dict]) -> list[dict]:
    """The whole-source pass's results with the category tasks' work added: what each
    changed, in how many batches and facts, and their time; what is kept or remains is
    the final pass's."""
    done: dict[str, list[dict]] = {}
    for f in fanned:
        done.setdefault(f["category"], []).append(f)
    out = []
    for r in results:
        r = dict(r)
        for f in done.get(r["category"], []):
            for k in ("changed", "batches", "facts_recorded"):
                r[k] = r.get(k, 0) + f.get(k, 0)
            r["duration_s"] = round(r.get("duration_s", 0.0) + f.get("duration_s", 0.0), 3)
        r["matched"] = r["changed"] + sum(r.get("kept", {}).values()) + r.get("remaining", 0)
        out.append(r)
    return out


def _guarded(ctx: Context, held: Held) -> Context:
    """The run's context with the lock checked each time the engine starts a batch."""
    load = ctx.holds_loader

    def holds_loader():
        held.check()
        return load()

    return replace(ctx, holds_loader=holds_loader)


def _enforce(run: Run, held: Held) -> list[dict]:
    rules = run.rules
    ctx = _guarded(run.ctx, held)
    by_name: dict[str, CategoryResult] = {}
    todo = rules
    for _ in range(MAX_PASSES):
        for rule in todo:
            r = enforce_rule(
                run.source_engine, rule, ctx, batch_size=run.batch_size, workers=run.workers
            )
            earlier = by_name.get(rule.category.name)
            if earlier is not None:
                r.changed += earlier.changed
                r.batches += earlier.batches
                r.facts_recorded += earlier.facts_recorded
                r.duration_s = round(r.duration_s + earlier.duration_s, 3)
                r.matched = r.changed + sum(r.kept.values()) + r.remaining
            by_name[rule.category.name] = r
            _log(run, r)
        checks = {
            rule.category.name: inspect_rule(run.source_engine, rule, run.ctx, "verify")
            for rule in rules
        }
        todo = [rule for rule in rules if checks[rule.category.name].remaining]
        if not todo:
            break
    return [by_name[rule.category.name].as_dict() for rule in rules]


def verify(run: Run, *, mode: str = "verify") -> list[dict]:
    """Per category: records past their window that still identify and are not blocked."""
    results = [inspect_rule(run.source_engine, rule, run.ctx, mode) for rule in run.rules]
    return [r.as_dict() for r in results]


def failed_categories(results: list[dict]) -> list[str]:
    return [f"{r['source']}.{r['category']} ({r['remaining']})" for r in results if r["remaining"]]


def record_audit(run: Run, results: list[dict], run_id: str) -> int:
    with run.warehouse.begin() as w:
        return write_audit(
            w,
            run_id=run_id,
            policy_version=run.policy.version,
            as_of=run.ctx.as_of,
            results=results,
            recorded_at=datetime.now(),  # when the row was written, not the run's as-of
        )


def validate(run: Run, *, run_id: str | None = None) -> dict:
    """Validate the source's extracts (see ``patron_privacy.validation``) and store the
    result, counts only, in ``validation_runs``. Returns source, passed, the failed
    checks (names, columns, counts) and rows per dataset; never a record's value.

    Fail closed: the caller enforces nothing on this source when ``passed`` is false
    (the DAG's task fails; the CLI exits 1), and a source without a suite raises
    ``validation.MissingSuiteError`` instead of passing unvalidated.
    """
    from patron_privacy import validation  # noqa: PLC0415 - pandas and GX only when validating

    return validation.validate_and_record(
        run.source,
        run.source_engine,
        run.ctx.as_of,
        run.policy.options(run.source),
        run.warehouse,
        run_id=run_id or f"validate-{uuid.uuid4().hex[:12]}",
        anonymous_patron=run.ctx.anonymous_patron,
    )


def record_outcome(
    source: str,
    as_of: datetime,
    run_id: str,
    results: list[dict],
    *,
    failure: str | None = None,
    policy: Policy | str | None = None,
) -> int:
    """Write a run's audit rows from the warehouse alone.

    The audit step must record what happened even when the source could not
    be opened (a missing table, no anonymous patron) or enforcement failed:
    then each rule of the source gets a row that says it did not run, with
    the failure's first line (our own messages; bound values are never in them).
    """
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    rows = list(results)
    done = {(r["category"], r["mode"]) for r in rows}
    if failure is not None:
        first = failure.splitlines()[0][:400] if failure else "failed"
        for rule in pol.rules_for(source):
            if (rule.category.name, "enforce") in done:
                continue
            rows.append(
                {
                    "source": source,
                    "category": rule.category.name,
                    "mode": "enforce",
                    "action": rule.action,
                    "window": rule.window_text,
                    "cutoff": str(as_of - rule.cutoff_delta),
                    "matched": 0,
                    "changed": 0,
                    "kept": {},
                    "remaining": 0,
                    "data_errors": 0,
                    "duration_s": 0.0,
                    "error": f"did not run: {first}",
                }
            )
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(warehouse)
    with warehouse.begin() as w:
        return write_audit(
            w,
            run_id=run_id,
            policy_version=pol.version,
            as_of=as_of,
            results=rows,
            recorded_at=datetime.now(),  # when the row was written, not the run's as-of
        )
