"""The retention engine: one set-based algorithm for every source and category.

A connector describes each record category as SQL expressions (which rows
are in scope, which still identify a patron, what blocks them, what the
action writes); the engine alone decides how those expressions run. That
keeps the dangerous part — the statement that changes a library's data — in
one place, tested once:

* work goes in bounded batches, keyset on the category's key, one
  transaction per batch, so a rerun after an interruption at any point
  converges to the same end state and no transaction grows with the table;
* blockers are evaluated in SQL inside each batch's statement, and legal
  holds are re-read before every batch, so a hold placed mid-run binds the
  batches after it;
* one classification query — every record past its window that still
  identifies a patron, grouped by the first blocker that keeps it — serves as
  the dry-run preview, the post-run verification and verify-only
  compliance findings, so the three can never disagree.

Sources differ in how a record is anonymized and in who does it, so a
category may also declare: anonymization as statements that move each
batch's rows out of the table without the patron (Evergreen's aging: copy
into an archive table, then delete), newest-first batches (when rows refer
to earlier rows of the same table, as renewals refer to the loan they
renew), and a source that enforces the category itself, in which case the
run only verifies it. None of these changes how rows are chosen, blocked or
counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Date,
    Engine,
    Executable,
    Insert,
    Integer,
    Select,
    Table,
    and_,
    case,
    delete,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import visitors
from sqlalchemy.sql.selectable import Alias

# Anything dated before this is not a real date (MariaDB zero dates compare
# lower than every real date): such rows are data errors, never "very old".
VALID_DATE_FLOOR = datetime(1900, 1, 1)

LEGAL_HOLD = "legal_hold"
NOT_BLOCKED = "-"


@dataclass(frozen=True)
class Hold:
    """One active legal hold as the engine needs it: whose records, which, when."""

    patron_id: str
    categories: frozenset[str] | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    def covers(self, category: str) -> bool:
        return self.categories is None or category in self.categories


@dataclass
class Context:
    """What a run knows before it touches anything; expressions are built from it."""

    as_of: datetime
    anonymous_patron: int | None = None
    holds_loader: Callable[[], Sequence[Hold]] = lambda: ()
    options: dict = field(default_factory=dict)
    # Where de-identified facts go (the warehouse); None means facts cannot be
    # recorded, so a category that needs them refuses to change anything.
    facts_sink: Callable[[list[dict]], int] | None = None
    pseudonymizer: object | None = None


Expr = Callable[[Context], ColumnElement[bool]]

Recording = Callable[[], int]


Statements = Callable[[Context, ColumnElement[bool]], Sequence[Executable]]


@dataclass(frozen=True)
class Anonymize:
    """How a category anonymizes: when a row still identifies, and what it writes.

    Either ``values`` (one UPDATE of the batch's rows) or ``statements``: given
    the batch's WHERE clause, statements run in order in the batch's
    transaction, e.g. copying the rows without the patron into an archive
    table and deleting them. The rows changed are the last statement's
    rowcount, or, when ``count`` is given (because the source's own triggers
    change more rows than a statement reports), that query's result, taken
    before the statements run.
    """

    identifying: Expr
    values: Callable[[Context], Mapping[str, object]] | None = None
    statements: Statements | None = None
    count: Callable[[Context, ColumnElement[bool]], Select] | None = None

    def __post_init__(self):
        if (self.values is None) == (self.statements is None):
            raise ValueError("Anonymize needs exactly one of values or statements")


@dataclass(frozen=True)
class Category:
    """A record category as a connector declares it; see the module docstring."""

    name: str
    source: str
    table: Table
    key: Column
    clock: ColumnElement
    patron: ColumnElement | None
    description: str
    scope: Expr = lambda ctx: true()
    blockers: Mapping[str, Expr] = field(default_factory=dict)
    anonymize: Anonymize | None = None
    strippable: tuple[str, ...] = ()
    deletable: bool = True
    null_clock_is_error: bool = True
    # Called inside each batch before the change, with the batch's rows to
    # change as a WHERE clause: the place to record de-identified facts. It
    # reads what it needs on the batch's connection and returns the recording
    # (a thunk giving the number of facts written), which the engine runs
    # alongside the change and waits for before the batch commits.
    before_change: Callable[[Connection, ColumnElement[bool], Context], Recording] | None = None
    # Batches from the highest key down: for rows that refer to earlier rows of
    # the same table (a renewal to the loan it renews), so that no row is
    # removed while a later one still refers to it.
    newest_first: bool = False
    # True when the source system changes these records itself (e.g. its own
    # aging job) and the run must only verify that it did: enforce then
    # classifies without changing anything, and reports what is left.
    enforced_by_source: Callable[[Context], bool] = lambda ctx: False

    @property
    def actions(self) -> tuple[str, ...]:
        out = []
        if self.deletable:
            out.append("delete")
        if self.anonymize is not None:
            out.append("anonymize")
        if self.strippable:
            out.append("strip")
        return tuple(out)


@dataclass(frozen=True)
class Rule:
    """A category bound to a window, an action and blockers (from the policy)."""

    category: Category
    window_text: str
    cutoff_delta: object  # dateutil.relativedelta
    action: str
    blockers: tuple[str, ...]
    fields: tuple[str, ...] = ()


@dataclass
class CategoryResult:
    """Counts only: this travels through XCom, logs and the audit table."""

    source: str
    category: str
    mode: str
    action: str
    window: str
    cutoff: str
    matched: int = 0
    changed: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    remaining: int = 0
    data_errors: int = 0
    batches: int = 0
    facts_recorded: int = 0
    duration_s: float = 0.0
    error: str | None = None
    # "engine", or "source" when the source system enforces the category itself.
    enforced_by: str = "engine"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class SourceSchemaError(RuntimeError):
    """The source lacks a table or column the policy's rules need."""


def _cutoff_param(rule: Rule, ctx: Context) -> datetime | date:
    cutoff = ctx.as_of - rule.cutoff_delta
    if isinstance(getattr(rule.category.clock, "type", None), Date):
        # A DATE clock compared with a midnight datetime behaves differently
        # on each backend; comparing dates keeps the whole cutoff day.
        return cutoff.date()
    return cutoff


def _floor_param(rule: Rule) -> datetime | date:
    if isinstance(getattr(rule.category.clock, "type", None), Date):
        return VALID_DATE_FLOOR.date()
    return VALID_DATE_FLOOR


def identifying(rule: Rule, ctx: Context) -> ColumnElement[bool]:
    """Does a row still hold what this rule's action removes?"""
    cat = rule.category
    if rule.action == "anonymize":
        return cat.anonymize.identifying(ctx)
    if rule.action == "strip":
        return or_(*(cat.table.c[f].isnot(None) for f in rule.fields))
    return true()


def past_window(rule: Rule, ctx: Context) -> ColumnElement[bool]:
    clock = rule.category.clock
    return and_(clock < _cutoff_param(rule, ctx), clock >= _floor_param(rule))


def bad_clock(rule: Rule) -> ColumnElement[bool]:
    clock = rule.category.clock
    if rule.category.null_clock_is_error:
        return or_(clock.is_(None), clock < _floor_param(rule))
    return clock < _floor_param(rule)


def hold_expr(rule: Rule, holds: Sequence[Hold]) -> ColumnElement[bool]:
    """Legal holds as SQL: grouped by date range so a large hold stays one IN list."""
    cat = rule.category
    if cat.patron is None:
        return false()
    groups: dict[tuple, list[str]] = {}
    for h in holds:
        if h.covers(cat.name):
            groups.setdefault((h.date_from, h.date_to), []).append(h.patron_id)
    numeric = isinstance(getattr(cat.patron, "type", None), Integer)
    terms = []
    for (d_from, d_to), ids in groups.items():
        if numeric:
            # Compare as integers so the patron index stays usable.
            wanted = sorted({int(i) for i in ids if str(i).lstrip("-").isdigit()})
        else:
            wanted = sorted({str(i) for i in ids})
        if not wanted:
            continue
        # IS NOT NULL first: "NULL IN (...)" is NULL, and NOT NULL would keep the row.
        parts = [cat.patron.isnot(None), cat.patron.in_(wanted)]
        if d_from is not None:
            parts.append(cat.clock >= d_from)
        if d_to is not None:
            parts.append(cat.clock <= d_to)
        terms.append(and_(*parts))
    return or_(false(), *terms)


def blocker_exprs(
    rule: Rule, ctx: Context, holds: Sequence[Hold]
) -> list[tuple[str, ColumnElement]]:
    """Blockers in priority order; a record is counted under the first that keeps it."""
    out = [(LEGAL_HOLD, hold_expr(rule, holds))]
    for name in rule.blockers:
        if name == LEGAL_HOLD:
            continue
        out.append((name, rule.category.blockers[name](ctx)))
    return out


def candidates(rule: Rule, ctx: Context) -> ColumnElement[bool]:
    return and_(rule.category.scope(ctx), past_window(rule, ctx), identifying(rule, ctx))


def _moves(rule: Rule) -> bool:
    anon = rule.category.anonymize
    return rule.action == "anonymize" and anon is not None and anon.statements is not None


def _change_statements(rule: Rule, ctx: Context, where: ColumnElement[bool]) -> list[Executable]:
    t = rule.category.table
    if rule.action == "delete":
        return [delete(t).where(where)]
    if rule.action == "strip":
        return [update(t).where(where).values({f: None for f in rule.fields})]
    if _moves(rule):
        return list(rule.category.anonymize.statements(ctx, where))
    return [update(t).where(where).values(dict(rule.category.anonymize.values(ctx)))]


def _change_count(rule: Rule, ctx: Context, where: ColumnElement[bool]) -> Select | None:
    if _moves(rule) and rule.category.anonymize.count is not None:
        return rule.category.anonymize.count(ctx, where)
    return None


def _base_table(table) -> Table | None:
    """The table behind a column's FROM: itself, or what an alias stands for."""
    while isinstance(table, Alias):
        table = table.element
    return table if isinstance(table, Table) else None


def referenced_columns(rule: Rule, ctx: Context) -> dict[str, set[str]]:
    """Every table.column the rule's statements touch, found by walking them.

    Keys are the tables' full names (``schema.table`` where a schema is given).
    """
    holds = [Hold("0")]
    exprs = [
        candidates(rule, ctx),
        bad_clock(rule),
        *(e for _, e in blocker_exprs(rule, ctx, holds)),
    ]
    stmts = _change_statements(rule, ctx, true())
    counter = _change_count(rule, ctx, true())
    found: dict[str, set[str]] = {}
    for expr in [*exprs, *stmts, *([counter] if counter is not None else [])]:
        for el in visitors.iterate(expr):
            if isinstance(el, Column):
                table = _base_table(el.table)
                if table is not None:
                    found.setdefault(table.fullname, set()).add(el.name)
            if isinstance(el, Insert):
                # The INSERT's own target columns are names, not column objects.
                names = el._select_names or list(el._values or {})  # noqa: SLF001
                for col in names:
                    name = col if isinstance(col, str) else getattr(col, "name", str(col))
                    found.setdefault(el.table.fullname, set()).add(name)
    for stmt in stmts:
        if getattr(stmt, "is_update", False):
            table = _base_table(stmt.table)
            for col in stmt._values or {}:  # noqa: SLF001 - the SET clause's own columns
                name = col if isinstance(col, str) else getattr(col, "name", str(col))
                found.setdefault(table.fullname, set()).add(name)
    return found


def _tables_by_name(rules: Sequence[Rule]) -> dict[str, Table]:
    out: dict[str, Table] = {}
    for rule in rules:
        for table in rule.category.table.metadata.tables.values():
            out.setdefault(table.fullname, table)
    return out


def check_schema(conn: Connection, rules: Sequence[Rule], ctx: Context) -> None:
    """Fail before any change when the source lacks a table or column a rule needs."""
    from sqlalchemy import inspect  # noqa: PLC0415

    insp = inspect(conn)
    known = _tables_by_name(rules)
    present: dict[str | None, set[str]] = {}
    missing = []
    for rule in rules:
        for fullname, cols in sorted(referenced_columns(rule, ctx).items()):
            table = known.get(fullname)
            schema, name = (table.schema, table.name) if table is not None else (None, fullname)
            if schema not in present:
                present[schema] = set(insp.get_table_names(schema=schema))
            if name not in present[schema]:
                missing.append(f"table {fullname} (needed by {rule.category.name})")
                continue
            have = {c["name"] for c in insp.get_columns(name, schema=schema)}
            for col in sorted(cols - have):
                missing.append(f"column {fullname}.{col} (needed by {rule.category.name})")
    if missing:
        source = rules[0].category.source if rules else "?"
        raise SourceSchemaError(f"source {source} is missing " + "; ".join(dict.fromkeys(missing)))


def classify(conn: Connection, rule: Rule, ctx: Context) -> tuple[dict[str, int], int]:
    """Count records past their window that still identify, by the blocker that keeps them.

    Returns ({blocker or NOT_BLOCKED: count}, data_errors). NOT_BLOCKED is what
    a dry run would change, and what must be zero after a run.
    """
    holds = ctx.holds_loader()
    whens = [(expr, literal(name)) for name, expr in blocker_exprs(rule, ctx, holds)]
    reason = case(*whens, else_=literal(NOT_BLOCKED)).label("reason")
    t = rule.category.table
    rows = conn.execute(
        select(reason, func.count()).select_from(t).where(candidates(rule, ctx)).group_by(reason)
    ).all()
    counts = {str(r): int(n) for r, n in rows}
    errors = conn.execute(
        select(func.count())
        .select_from(t)
        .where(and_(rule.category.scope(ctx), identifying(rule, ctx), bad_clock(rule)))
    ).scalar_one()
    return counts, int(errors)


def _next_boundary(conn: Connection, rule: Rule, ctx: Context, lo, batch_size: int):
    """Keyset walk for keys that cannot be stepped arithmetically (dates, text)."""
    key = rule.category.key
    q = select(key).where(candidates(rule, ctx))
    if rule.category.newest_first:
        if lo is not None:
            q = q.where(key < lo)
        q = q.order_by(key.desc())
    else:
        if lo is not None:
            q = q.where(key > lo)
        q = q.order_by(key)
    return conn.execute(q.offset(batch_size - 1).limit(1)).scalar()


def _integer_ranges(conn: Connection, rule: Rule, ctx: Context, batch_size: int):
    """Primary-key ranges ``batch_size`` keys wide across the rows still to handle.

    A range of N unique keys can never hold more than N rows, so every
    transaction stays bounded whatever the key distribution, and stepping
    needs no per-batch search. Returns (exclusive low, inclusive high) pairs.
    """
    key = rule.category.key
    lo, hi = conn.execute(
        select(func.min(key), func.max(key))
        .select_from(rule.category.table)
        .where(candidates(rule, ctx))
    ).one()
    if lo is None:
        return []
    ranges = [
        (start - 1, min(start + batch_size - 1, hi)) for start in range(lo, hi + 1, batch_size)
    ]
    return ranges[::-1] if rule.category.newest_first else ranges


def _fill_result(result: CategoryResult, counts: dict[str, int], errors: int) -> None:
    result.kept = {k: v for k, v in sorted(counts.items()) if k != NOT_BLOCKED and v}
    result.remaining = counts.get(NOT_BLOCKED, 0)
    result.data_errors = errors


def new_result(rule: Rule, ctx: Context, mode: str) -> CategoryResult:
    return CategoryResult(
        source=rule.category.source,
        category=rule.category.name,
        mode=mode,
        action=rule.action,
        window=rule.window_text,
        cutoff=str(_cutoff_param(rule, ctx)),
    )


def inspect_rule(engine: Engine, rule: Rule, ctx: Context, mode: str) -> CategoryResult:
    """Dry run or verification: classify only, change nothing."""
    return _classified(engine, rule, ctx, new_result(rule, ctx, mode), time.perf_counter())


def _classified(
    engine: Engine, rule: Rule, ctx: Context, result: CategoryResult, started: float
) -> CategoryResult:
    """The result completed by one classification of what is left."""
    with engine.connect() as conn:
        counts, errors = classify(conn, rule, ctx)
    _fill_result(result, counts, errors)
    result.matched = result.changed + sum(counts.values())
    result.duration_s = round(time.perf_counter() - started, 3)
    return result


def enforce_rule(
    engine: Engine,
    rule: Rule,
    ctx: Context,
    *,
    batch_size: int = 10_000,
    workers: int = 1,
    after_batch: Callable[[int], None] | None = None,
) -> CategoryResult:
    """Apply one rule in keyset batches, then verify with the same classification.

    ``workers`` sessions may apply batches of disjoint key ranges at once (see
    ``batch_workers``); ``after_batch`` may then be called from any of them.
    """
    started = time.perf_counter()
    if rule.category.enforced_by_source(ctx):
        # The source enforces this category itself: verify, change nothing.
        result = inspect_rule(engine, rule, ctx, "enforce")
        result.enforced_by = "source"
        return result
    result = new_result(rule, ctx, "enforce")
    # One thread records a batch's facts while the source applies its change;
    # the batch commits only once its facts are in the warehouse (fail closed).
    # It is shared by every worker, so facts are written one batch at a time.
    recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facts")
    batches = _Batches(engine, rule, _serial_holds(ctx), result, recorder, after_batch)
    try:
        key = rule.category.key
        if isinstance(getattr(key, "type", None), Integer):
            with engine.connect() as conn:
                ranges = _integer_ranges(conn, rule, ctx, batch_size)
            batches.run_ranges(ranges, batch_workers(engine, rule, workers))
        else:
            batches.walk(batch_size)
    finally:
        recorder.shutdown(wait=True)
    return _classified(engine, rule, ctx, result, started)


def batch_workers(engine: Engine, rule: Rule, workers: int) -> int:
    """How many sessions apply a rule's batches at once.

    A large table's batches wait mostly on the disk (random reads of the
    patron indexes), so a few sessions on disjoint key ranges finish sooner.
    One only, whatever is asked, where order or the database forbids more:
    newest-first batches (a row must not go while a later one refers to it)
    and SQLite (one writer at a time).
    """
    if rule.category.newest_first or engine.dialect.name == "sqlite":
        return 1
    return max(1, int(workers))


DEADLOCK_RETRIES = 3
# How each server says it rolled a transaction back to break a deadlock.
_MYSQL_DEADLOCK = 1213
_POSTGRES_DEADLOCK = "40P01"


def lost_a_deadlock(exc: DBAPIError) -> bool:
    """Was this statement's transaction the one the server rolled back to end a deadlock?"""
    orig = exc.orig
    if getattr(orig, "pgcode", None) == _POSTGRES_DEADLOCK:
        return True
    if getattr(orig, "sqlstate", None) == _POSTGRES_DEADLOCK:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def _serial_holds(ctx: Context) -> Context:
    """The context with its holds loader called by one worker at a time: the loader
    may check the run lock on one shared warehouse session."""
    load = ctx.holds_loader
    guard = threading.Lock()

    def holds_loader():
        with guard:
            return load()

    return replace(ctx, holds_loader=holds_loader)


class _Batches:
    """One rule's batches: each its own transaction, counted into one result."""

    def __init__(self, engine, rule, ctx, result, recorder, after_batch):
        self.engine = engine
        self.rule = rule
        self.ctx = ctx
        self.result = result
        self.recorder = recorder
        self.after_batch = after_batch
        self._lock = threading.Lock()

    def apply(self, in_range: Callable[[Connection], ColumnElement[bool]]) -> None:
        """One batch, applied again when the database ended it as a deadlock's victim.

        ``in_range`` gives the batch's key condition on the batch's own connection, so
        a keyset walk reads its boundary inside the transaction that uses it.

        Sessions on neighbouring key ranges, or another category's task, can lock
        each other's index entries; the database then rolls one transaction back
        whole, so applying the batch again is exactly a rerun of it.
        """
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                return self._apply_once(in_range)
            except DBAPIError as exc:
                if attempt == DEADLOCK_RETRIES or not lost_a_deadlock(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _apply_once(self, in_range: Callable[[Connection], ColumnElement[bool]]) -> None:
        """One batch: holds re-read, facts recorded alongside the change, then commit."""
        rule, ctx = self.rule, self.ctx
        with self.engine.begin() as conn:
            holds = ctx.holds_loader()
            blocked = or_(false(), *(e for _, e in blocker_exprs(rule, ctx, holds)))
            where = and_(in_range(conn), candidates(rule, ctx), not_(blocked))
            recording: Future | None = None
            if rule.category.before_change is not None and rule.action != "strip":
                recording = self.recorder.submit(rule.category.before_change(conn, where, ctx))
            try:
                counter = _change_count(rule, ctx, where)
                changed = conn.execute(counter).scalar_one() if counter is not None else 0
                rowcount = 0
                for stmt in _change_statements(rule, ctx, where):
                    rowcount = conn.execute(stmt).rowcount
            finally:
                # Raises if the facts could not be written: the batch then rolls back.
                recorded = recording.result() if recording is not None else 0
        with self._lock:
            self.result.facts_recorded += recorded
            self.result.changed += max(changed if counter is not None else rowcount, 0)
            self.result.batches += 1
            if self.after_batch is not None:
                self.after_batch(self.result.batches)

    def run_ranges(self, ranges: Sequence[tuple], workers: int) -> None:
        """Integer key ranges, taken in order by ``workers`` sessions.

        A worker that fails stops the others after the batch each is in, and
        its failure is raised. What committed stays committed: a rerun
        finds only the rest (the ranges are recomputed from what is left).
        """
        key = self.rule.category.key
        todo = iter(ranges)
        take = threading.Lock()
        failed = threading.Event()

        def worker() -> None:
            while not failed.is_set():
                with take:
                    bounds = next(todo, None)
                if bounds is None:
                    return
                lo, hi = bounds
                try:
                    self.apply(lambda _conn, lo=lo, hi=hi: and_(key > lo, key <= hi))
                except BaseException:
                    failed.set()
                    raise

        if workers == 1:
            worker()
            return
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batches")
        try:
            futures = [pool.submit(worker) for _ in range(workers)]
            wait(futures)
        except BaseException:
            # Interrupted while waiting (a task being stopped): no new batch starts.
            failed.set()
            raise
        finally:
            pool.shutdown(wait=True)
        for f in futures:
            f.result()

    def walk(self, batch_size: int) -> None:
        """Keys that cannot be stepped arithmetically: a keyset walk, one batch at a time
        (each boundary is found from the last)."""
        rule, key = self.rule, self.rule.category.key
        lo = None
        while True:
            # Read inside the batch's transaction (a deadlock's retry reads it again).
            hi = None

            def in_range(conn: Connection, lo=lo) -> ColumnElement[bool]:
                nonlocal hi
                hi = _next_boundary(conn, rule, self.ctx, lo, batch_size)
                if not rule.category.newest_first:
                    return and_(
                        key > lo if lo is not None else true(),
                        key <= hi if hi is not None else true(),
                    )
                # Downwards: lo is the previous (higher) boundary.
                return and_(
                    key < lo if lo is not None else true(),
                    key >= hi if hi is not None else true(),
                )

            self.apply(in_range)
            if hi is None:
                return
            lo = hi
