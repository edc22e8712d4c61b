"""Named locks in the warehouse: one retention run per source at a time, one migration.

Two runs for the same source at once — a manual ``enforce`` while the nightly DAG runs,
a retried task whose first attempt is still alive on another worker — must not both
change the source: one waits a while, then refuses. The lock lives where every worker
already goes, the warehouse, and is held by a *session*, not written as a row:

* PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection kept
  for the run (advisory locks belong to one database); MariaDB/MySQL: ``GET_LOCK``, the
  same thing, its name carrying the database's (``GET_LOCK`` names are server-wide, and
  two warehouses on one server must not hold each other's runs back);
* SQLite (the demo, one machine): ``flock`` on a file next to the database.

Why not a ``run_locks`` row with a timestamp: a task killed with SIGKILL, or a worker
that dies, leaves the row behind, and a stale-lock timeout must then be longer than the
longest run (hours) — every retry of a killed run would wait that long, or a timeout
short enough to be useful would let a slow live run be joined by a second one. Session
locks have no such clock: the database server (or the kernel, for ``flock``) releases
them the moment the holder's connection or process is gone, so a retry can start at
once and a live holder is never overtaken.

What they need: a direct session to the database. A transaction-pooling proxy
(PgBouncer in transaction mode) would hand the lock's session to someone else; point
the warehouse connection at PostgreSQL itself or a session-pooling proxy. If the lock's
connection is lost mid-run, the server has released the lock: :meth:`Held.check`
raises then, and the run stops before its next batch rather than go on unguarded.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

# What a run waits for another run of its source before refusing (seconds);
# PATRON_PRIVACY_LOCK_WAIT_S changes it (0: refuse at once).
DEFAULT_WAIT_S = 60.0


def lock_wait_s() -> float:
    return float(os.environ.get("PATRON_PRIVACY_LOCK_WAIT_S", DEFAULT_WAIT_S))


class LockBusy(RuntimeError):
    """Another run holds the lock; nothing was done. Safe to retry later."""


class LockLost(RuntimeError):
    """The lock's database session ended while the run held it; the run stops."""


def _pg_key(name: str) -> int:
    """A stable signed 64-bit key per name (advisory locks are numbered, not named)."""
    return int.from_bytes(
        hashlib.sha256(f"patron_privacy:{name}".encode()).digest()[:8], "big", signed=True
    )


def _mysql_name(database: str | None, name: str) -> str:
    # GET_LOCK names are server-wide and at most 64 characters: the database is hashed in.
    scoped = f"{database or ''}\0{name}"
    return f"patron_privacy:{hashlib.sha256(scoped.encode()).hexdigest()[:40]}"


class Held:
    """A lock being held; :meth:`check` confirms it still is (between batches)."""

    def __init__(self, name: str, conn: Connection | None = None):
        self.name = name
        self._conn = conn

    def check(self) -> None:
        if self._conn is None:  # a file lock lives as long as this process
            return
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
        except Exception as exc:  # noqa: BLE001 - any failure means the session may be gone
            raise LockLost(
                f"the lock {self.name} was lost with its database session ({type(exc).__name__})"
            ) from None


_memory_locks: dict[str, threading.Lock] = {}
_memory_guard = threading.Lock()


def _sqlite_file(engine: Engine, name: str) -> Path | None:
    db = engine.url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    return Path(db).with_name(f"{Path(db).name}.{safe}.lock")


def _wait(try_once, name: str, wait_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + max(wait_s, 0.0)
    while not try_once():
        if time.monotonic() >= deadline:
            raise LockBusy(f"another run holds the lock {name}; nothing was done (retry later)")
        time.sleep(poll_s)


@contextmanager
def warehouse_lock(
    engine: Engine, name: str, *, wait_s: float = DEFAULT_WAIT_S, poll_s: float = 0.5
) -> Iterator[Held]:
    """Hold the lock ``name`` for the block; wait up to ``wait_s`` seconds, then raise
    :class:`LockBusy`. ``name`` must not carry personal data (it may reach a log)."""
    with warehouse_locks(engine, [name], wait_s=wait_s, poll_s=poll_s) as held:
        yield held


def _statements(engine: Engine, name: str):
    """(take, give) for one named lock on a server backend."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        key = _pg_key(name)
        return (
            text("SELECT pg_try_advisory_lock(:k)").bindparams(k=key),
            text("SELECT pg_advisory_unlock(:k)").bindparams(k=key),
        )
    if dialect in ("mysql", "mariadb"):
        lock_name = _mysql_name(engine.url.database, name)
        return (
            text("SELECT GET_LOCK(:n, 0)").bindparams(n=lock_name),
            text("SELECT RELEASE_LOCK(:n)").bindparams(n=lock_name),
        )
    raise RuntimeError(f"no run lock for warehouse backend {dialect}")  # pragma: no cover


@contextmanager
def warehouse_locks(
    engine: Engine, names: list[str], *, wait_s: float = DEFAULT_WAIT_S, poll_s: float = 0.5
) -> Iterator[Held]:
    """Hold every lock in ``names`` for the block, taken in sorted order and waiting up
    to ``wait_s`` seconds in all; :class:`LockBusy` (none kept) if one stays taken.

    On a server every lock lives on the one session kept for the block (a whole-source
    run holds one lock per category: a connection each would drain the pool)."""
    names = sorted(set(names))
    label = ", ".join(names)
    deadline = time.monotonic() + max(wait_s, 0.0)
    if engine.dialect.name == "sqlite":
        with ExitStack() as stack:
            for name in names:
                left = max(deadline - time.monotonic(), 0.0)
                stack.enter_context(_file_lock(engine, name, left, poll_s))
            yield Held(label)
        return
    locks = [(name, *_statements(engine, name)) for name in names]
    conn = engine.connect()
    taken: list = []
    try:
        for name, take, give in locks:

            def try_once(take=take) -> bool:
                got = conn.execute(take).scalar()
                # Commit at once: the lock belongs to the session, and a transaction left
                # open for a whole run would hold back the server's vacuum.
                conn.commit()
                return bool(got)

            _wait(try_once, name, max(deadline - time.monotonic(), 0.0), poll_s)
            taken.append(give)
    except BaseException:
        _release(conn, taken)
        raise
    try:
        yield Held(label, conn)
    finally:
        _release(conn, taken)


def _release(conn: Connection, gives: list) -> None:
    released = True
    try:
        for give in reversed(gives):
            released = bool(conn.execute(give).scalar()) and released
        conn.commit()
    except Exception:  # noqa: BLE001 - a lost session: the server released the locks
        released = False
    if not released:
        # Never hand a session that may still hold a lock back to the pool, where
        # another run's work would inherit it.
        conn.invalidate()
    conn.close()


@contextmanager
def _file_lock(engine: Engine, name: str, wait_s: float, poll_s: float) -> Iterator[None]:
    path = _sqlite_file(engine, name)
    if path is None:  # an in-memory database exists in this process only
        with _memory_guard:
            lock = _memory_locks.setdefault(name, threading.Lock())
        _wait(lambda: lock.acquire(blocking=False), name, wait_s, poll_s)
        try:
            yield
        finally:
            lock.release()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # flock, not lockf: flock locks conflict between two opens in one process too (threads).
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:

        def try_once() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        _wait(try_once, name, wait_s, poll_s)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_lock_name(source: str) -> str:
    return f"run:{source}"


def category_lock_name(source: str, category: str) -> str:
    """One category's lock: the nightly DAG enforces a source's categories side by side,
    each under its own; a whole-source run takes all of them (``warehouse_locks``)."""
    return f"run:{source}:{category}"


@contextmanager
def source_run_lock(source: str) -> Iterator[Held]:
    """The source's run lock in the configured warehouse, for runs that do not hold an
    open warehouse already (file sources, LibCal)."""
    from patron_privacy import connections  # noqa: PLC0415 - both import this module
    from patron_privacy.warehouse import create_warehouse  # noqa: PLC0415

    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(warehouse)
    with warehouse_lock(warehouse, run_lock_name(source), wait_s=lock_wait_s()) as held:
        yield held
