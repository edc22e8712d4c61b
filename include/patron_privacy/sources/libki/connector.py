"""The Libki connector: public-computer time, reservations and printing as engine categories.

Libki (libki-server) keeps, in MariaDB, who used which public computer when: a
``statistics`` row per login, logout and staff action (``username``, often the card
number, and an ``info`` JSON that repeats user ids and usernames), the live
``sessions``, ``reservations`` of a PC, ``print_jobs`` and the printed documents
themselves (``print_files.data``), and the accounts (``users``). Libki's own nightly job
(``libki_nightly.pl``) falls short in three ways this connector fixes:

* it "anonymizes" statistics as ``MD5(username + one random number 0..999999 per run)``,
  which anyone can reverse by trying a million numbers against the card-number space.
  Here the link is cut: ``username`` and ``info`` become NULL, and the statistics keep
  only where, when and how long. Rows Libki already "anonymized" still count as
  identifying (their MD5 is one) and are unlinked too;
* it deletes accounts by ``created_on`` (the age of the account, so a daily user loses
  it after a year). Here an account is deleted when it has not been *used* for the
  window: its last activity is the newest of ``users.updated_on`` and its statistics
  rows, and an account with a live session, an upcoming reservation, a staff role or
  a ban in force is kept;
* it writes the usernames it deletes into ``statistics.info`` (a new copy of what it
  deletes). Nothing here keeps a deleted username anywhere — not in the source, the
  warehouse, the audit or a log — and the ``USERS_DELETE`` rows Libki wrote are
  unlinked like every other statistics row.

Facts before the link is cut: every ``LOGIN`` row becomes one row of the warehouse's
``pc_session_facts`` (date, ISO weekday, hour, branch = ``client_location``, PC =
``client_name``, duration band from the session's ``LOGOUT``/``SESSION_DELETED``, a keyed
pseudonym of the reporting period), recorded in the same batch transaction that unlinks
the row. The keyed pseudonym is computed in Python (HMAC-SHA256 through
``facts.Pseudonymizer``) and goes to the warehouse, never back into Libki: SQL has no
portable HMAC, and a pseudonym written into the source row would stay linkable by
anyone holding the key for as long as the row lives. Libki has no "last seen" column,
so before a statistics row loses its username the newest activity it records is moved
onto the account's own ``updated_on`` (only ever forward): inactivity is then still
measured correctly after the link is gone.

Legal holds name a Libki patron by ``username`` (the card number); every category maps
its rows to the username (directly, or through ``users.id``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)

from patron_privacy import connections
from patron_privacy.engine import VALID_DATE_FLOOR, Anonymize, Category, Context, Recording
from patron_privacy.facts import (
    Pseudonymizer,
    _insert_ignoring_duplicates,
    period_of,
    record_in_batches,
)
from patron_privacy.inventory import KeylessLink, SourceInventory
from patron_privacy.sources.base import Connector, SourceConfigError, check_batching
from patron_privacy.sources.libki import schema

log = logging.getLogger("patron_privacy.libki")

SOURCE = "libki"
users = schema.users
sessions = schema.sessions
reservations = schema.reservations
statistics = schema.statistics
print_jobs = schema.print_jobs
print_files = schema.print_files
user_roles = schema.user_roles
settings = schema.settings

# Minutes of a session: [lower, upper) bands; "unknown" when no end was recorded.
DURATION_BANDS = ((15, "0-14"), (30, "15-29"), (60, "30-59"), (120, "60-119"))
LONGEST_BAND = "120+"
UNKNOWN = "unknown"
# Libki settings whose own jobs this pipeline replaces (warned about when set).
LIBKI_OWN_JOBS = {
    "DataAnonymizationDays": "replaces usernames by an MD5 that can be reversed",
    "InactiveUserRetentionDays": (
        "deletes accounts by creation date and copies their usernames into statistics.info"
    ),
}


# --- facts -------------------------------------------------------------------------------------


def duration_band(start: datetime | None, end: datetime | None) -> str:
    if not isinstance(start, datetime) or not isinstance(end, datetime) or end < start:
        return UNKNOWN
    minutes = (end - start).total_seconds() / 60
    for upper, label in DURATION_BANDS:
        if minutes < upper:
            return label
    return LONGEST_BAND


def _session_end():
    """When the session a LOGIN row started ended: its first LOGOUT / SESSION_DELETED."""
    end = statistics.alias("session_end")
    return (
        select(func.min(end.c.created_on))
        .where(
            end.c.instance == statistics.c.instance,
            end.c.session_id == statistics.c.session_id,
            end.c.action.in_(schema.SESSION_END_ACTIONS),
            end.c.created_on >= statistics.c.created_on,
        )
        .scalar_subquery()
    )


def _fact_query():
    # Aliases, so the engine's WHERE clause (on ``statistics`` itself) stays the outer query's.
    account = users.alias("fact_account")
    guest = (
        select(account.c.is_guest)
        .where(
            account.c.instance == statistics.c.instance, account.c.username == statistics.c.username
        )
        .scalar_subquery()
    )
    return select(
        statistics.c.id,
        statistics.c.instance,
        statistics.c.username,
        statistics.c.anonymized,
        statistics.c.client_name,
        statistics.c.client_location,
        statistics.c.created_on,
        _session_end().label("ended_on"),
        guest.label("is_guest"),
    ).where(statistics.c.action == "LOGIN", statistics.c.created_on >= VALID_DATE_FLOOR)


def session_fact(p: Pseudonymizer, row, *, guest_prefix: str = "guest") -> dict:
    """One LOGIN row as a de-identified fact (no username, no user id)."""
    started: datetime = row["created_on"]
    day = started.date()
    period = period_of(day)
    username = row["username"]
    if username is None or row["anonymized"]:
        # Already unlinked (or Libki's reversible MD5 in place of the name): no pseudonym.
        kind, pseudonym = UNKNOWN, None
    else:
        guest = row["is_guest"] == "Yes" or (
            row["is_guest"] is None and bool(guest_prefix) and username.startswith(guest_prefix)
        )
        if guest:
            # Guest passes (guest1, guest2, ...) are renumbered every night: the same name on
            # another day is another person, so a guest's pseudonym is one day's.
            kind = "guest"
            pseudonym = p.pseudonym(period, f"{SOURCE}:guest:{day.isoformat()}:{username}")
        else:
            kind = "patron"
            pseudonym = p.pseudonym(period, f"{SOURCE}:{username}")
    return {
        "fact_key": p.fact_key(period, SOURCE, f"{row['instance']}:{row['id']}"),
        "source": SOURCE,
        "session_date": day,
        "weekday": started.isoweekday(),
        "hour": started.hour,
        "branch": row["client_location"],
        "client_name": row["client_name"],
        "duration_minutes_band": duration_band(started, row["ended_on"]),
        "patron_type": kind,
        "patron_pseudonym": pseudonym,
        "reporting_period": period,
    }


def write_pc_session_facts(wconn: Connection, rows: list[dict]) -> int:
    """Insert facts whose keys are new; returns how many were new (reruns write nothing twice)."""
    from patron_privacy.warehouse import pc_session_facts  # noqa: PLC0415 - warehouse on use

    if not rows:
        return 0
    unique = list({r["fact_key"]: r for r in rows}.values())
    return _insert_ignoring_duplicates(wconn, pc_session_facts, unique)


def pc_session_sink(warehouse: Engine):
    """The run's facts sink for Libki: ``pc_session_facts`` in the warehouse."""

    def sink(rows: list[dict]) -> int:
        with warehouse.begin() as wconn:
            return write_pc_session_facts(wconn, rows)

    return sink


def _require_facts(ctx: Context, what: str) -> None:
    if ctx.facts_sink is None or ctx.pseudonymizer is None:
        raise SourceConfigError(
            f"libki: {what}: session facts cannot be recorded (no warehouse or pseudonym "
            "keys), so no statistics row is unlinked or deleted"
        )


def _facts_for(conn: Connection, where: ColumnElement[bool], ctx: Context) -> Recording:
    rows = conn.execute(_fact_query().where(where)).mappings().all()
    if not rows:
        return lambda: 0
    prefix = str(ctx.options.get("guest_prefix") or "guest")
    return lambda: ctx.facts_sink(
        [session_fact(ctx.pseudonymizer, r, guest_prefix=prefix) for r in rows]
    )


_CARRY = (
    update(users)
    .where(
        users.c.instance == bindparam("b_instance"),
        users.c.username == bindparam("b_username"),
        users.c.updated_on < bindparam("b_seen", type_=DateTime),
    )
    .values(updated_on=bindparam("b_seen", type_=DateTime))
)


def _carry_last_activity(conn: Connection, where: ColumnElement[bool]) -> None:
    """Move each account's newest activity in the batch onto ``users.updated_on`` (forward
    only), so that inactivity is still measurable once the rows lose their username."""
    seen = conn.execute(
        select(statistics.c.instance, statistics.c.username, func.max(statistics.c.created_on))
        .where(
            where,
            statistics.c.username.isnot(None),
            or_(statistics.c.anonymized.is_(None), statistics.c.anonymized == 0),
            statistics.c.created_on >= VALID_DATE_FLOOR,
        )
        .group_by(statistics.c.instance, statistics.c.username)
    ).all()
    params = [{"b_instance": i, "b_username": u, "b_seen": t} for i, u, t in seen if t is not None]
    if params:
        conn.execute(_CARRY, params)


def _before_unlinking(conn: Connection, where: ColumnElement[bool], ctx: Context) -> Recording:
    _require_facts(ctx, "session_statistics_link")
    recording = _facts_for(conn, where, ctx)
    _carry_last_activity(conn, where)
    return recording


def _before_deleting(conn: Connection, where: ColumnElement[bool], ctx: Context) -> Recording:
    _require_facts(ctx, "session_statistics")
    return _facts_for(conn, where, ctx)


def extract_facts(engine: Engine, ctx: Context, since: datetime | None, batch_size: int) -> int:
    """Facts for sessions started in [since, as-of) that have ended, keyset-batched on id.

    The unlinking rule records every session's fact anyway (inside its batch); this
    step records them earlier when the library keeps usernames longer than a day.
    """
    _require_facts(ctx, "extract_facts")
    prefix = str(ctx.options.get("guest_prefix") or "guest")
    base = _fact_query().where(
        statistics.c.created_on < ctx.as_of,
        statistics.c.created_on >= (since or VALID_DATE_FLOOR),
        statistics.c.username.isnot(None),
        _session_end().isnot(None),
    )

    def read(after):
        q = base if after is None else base.where(statistics.c.id > after)
        with engine.connect() as conn:
            rows = conn.execute(q.order_by(statistics.c.id).limit(batch_size)).mappings().all()
        return rows, rows[-1]["id"] if rows else None

    def write(rows) -> int:
        return ctx.facts_sink(
            [session_fact(ctx.pseudonymizer, r, guest_prefix=prefix) for r in rows]
        )

    return record_in_batches(read, write)


# --- categories --------------------------------------------------------------------------------


def _holdable(expr):
    """A patron expression that is never NULL: a legal hold's ``patron IN (...)`` on a NULL
    would be NULL, and NOT NULL excludes the row from every change while verification
    still counts it (three-valued logic). Rows without a username match no hold."""
    return func.coalesce(expr, "")


def _username_of(user_id_col):
    """The username (what a legal hold names) of the account a row points at."""
    return _holdable(select(users.c.username).where(users.c.id == user_id_col).scalar_subquery())


def _session_last_event():
    """A live session's last sign of life: the newest statistics row of its session id."""
    ev = statistics.alias("session_event")
    return (
        select(func.max(ev.c.created_on))
        .where(ev.c.instance == sessions.c.instance, ev.c.session_id == sessions.c.session_id)
        .scalar_subquery()
    )


def _last_activity():
    """An account's last use: the newest of ``updated_on`` and its statistics rows."""
    ev = statistics.alias("account_event")
    newest = (
        select(func.max(ev.c.created_on))
        .where(ev.c.instance == users.c.instance, ev.c.username == users.c.username)
        .scalar_subquery()
    )
    return case((newest > users.c.updated_on, newest), else_=users.c.updated_on)


def _account_blockers(*, guests: bool) -> dict:
    out = {
        "active_session": lambda ctx: exists().where(sessions.c.user_id == users.c.id),
        "open_reservation": lambda ctx: exists().where(
            reservations.c.user_id == users.c.id,
            or_(reservations.c.end_time.is_(None), reservations.c.end_time >= ctx.as_of),
        ),
    }
    if not guests:
        out["staff_account"] = lambda ctx: exists().where(user_roles.c.user_id == users.c.id)
        out["ban_in_force"] = lambda ctx: and_(
            users.c.is_troublemaker == "Yes",
            or_(users.c.troublemaker_until.is_(None), users.c.troublemaker_until > ctx.as_of),
        )
    return out


def _unlink_statistics(ctx: Context) -> dict:
    return {
        "username": None,
        "info": None,
        "anonymized": 1,
        # Keep the clock as it was (a TIMESTAMP column must not move when the row changes).
        "created_on": statistics.c.created_on,
    }


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category(
            name="session_statistics_link",
            source=SOURCE,
            table=statistics,
            key=statistics.c.id,
            clock=statistics.c.created_on,
            patron=_holdable(statistics.c.username),
            description="Who used a public computer (statistics' username and info)",
            anonymize=Anonymize(
                identifying=lambda ctx: or_(
                    statistics.c.username.isnot(None), statistics.c.info.isnot(None)
                ),
                values=_unlink_statistics,
            ),
            strippable=("info",),
            deletable=False,
            before_change=_before_unlinking,
        ),
        Category(
            name="session_statistics",
            source=SOURCE,
            table=statistics,
            key=statistics.c.id,
            clock=statistics.c.created_on,
            patron=_holdable(statistics.c.username),
            description="Public-computer session statistics (Libki statistics rows)",
            before_change=_before_deleting,
        ),
        Category(
            name="ended_sessions",
            source=SOURCE,
            table=sessions,
            key=sessions.c.user_id,
            clock=_session_last_event(),
            patron=_username_of(sessions.c.user_id),
            description="Sessions past their end (left behind by a crashed client)",
        ),
        Category(
            name="ended_reservations",
            source=SOURCE,
            table=reservations,
            key=reservations.c.id,
            clock=reservations.c.end_time,
            patron=_username_of(reservations.c.user_id),
            description="PC reservations past their end",
        ),
        Category(
            name="print_jobs",
            source=SOURCE,
            table=print_jobs,
            key=print_jobs.c.id,
            clock=print_jobs.c.created_on,
            patron=_username_of(print_jobs.c.user_id),
            description="Print jobs",
        ),
        Category(
            name="print_files",
            source=SOURCE,
            table=print_files,
            key=print_files.c.id,
            clock=print_files.c.created_on,
            patron=print_files.c.username,
            description="Printed documents (the files themselves)",
        ),
        Category(
            name="guest_accounts",
            source=SOURCE,
            table=users,
            key=users.c.id,
            clock=users.c.created_on,
            patron=users.c.username,
            description="Guest passes",
            scope=lambda ctx: users.c.is_guest == "Yes",
            blockers=_account_blockers(guests=True),
        ),
        Category(
            name="inactive_accounts",
            source=SOURCE,
            table=users,
            key=users.c.id,
            clock=_last_activity(),
            patron=users.c.username,
            description="Patron accounts not used (by last activity)",
            scope=lambda ctx: users.c.is_guest == "No",
            blockers=_account_blockers(guests=False),
        ),
    )
}


# --- the run -----------------------------------------------------------------------------------


def check_options(opts: dict) -> list[str]:
    problems = []
    problems.extend(check_batching(opts))
    prefix = opts.get("guest_prefix")
    if prefix is not None and (not isinstance(prefix, str) or not prefix.strip()):
        problems.append(f"guest_prefix: expected Libki's GuestPassPrefix text, got {prefix!r}")
    return problems


def prepare(engine: Engine, opts: dict, ctx: Context) -> None:
    """Read what the run needs from Libki and point the run's facts at ``pc_session_facts``.

    Warns (names of settings only) when Libki's own jobs that this pipeline replaces are
    switched on: they would keep undoing what it does.
    """
    with engine.connect() as conn:
        found = conn.execute(
            select(settings.c.name, settings.c.value).where(
                settings.c.name.in_([*LIBKI_OWN_JOBS, "GuestPassPrefix"])
            )
        ).all()
    values: dict[str, str] = {}
    for name, value in found:
        if str(value or "").strip() not in ("", "0"):
            values[name] = str(value).strip()
    for name, why in LIBKI_OWN_JOBS.items():
        if name in values:
            log.warning("libki: Libki's own %s is set: it %s; set it to 0 in Libki", name, why)
    ctx.options.setdefault(
        "guest_prefix", opts.get("guest_prefix") or values.get("GuestPassPrefix") or "guest"
    )
    if ctx.facts_sink is not None:
        # The run's sink writes loans (circulation_facts); Libki's facts are sessions.
        ctx.facts_sink = pc_session_sink(connections.engine_for(connections.WAREHOUSE_DB))


CONNECTOR = Connector(
    name=SOURCE,
    conn_id=connections.LIBKI_DB,
    categories=CATEGORIES,
    check_options=check_options,
    prepare=prepare,
    extract_facts=extract_facts,
    default_options={"batch_size": 10_000},
)


# --- the personal-data inventory -------------------------------------------------------------
#
# Libki keys most tables to users.id; statistics (and print files, besides their key) carry
# the username itself, so a deleted account's name outlives it there.
KEYLESS_REFERENCES: tuple[KeylessLink, ...] = (
    KeylessLink("statistics", "username", via="username", note="copied at each login"),
    KeylessLink("print_files", "username", via="username", note="copied with each file"),
)

INVENTORY = SourceInventory(
    source=SOURCE,
    patron_table="users",
    patron_key="id",
    keyless=KEYLESS_REFERENCES,
)
