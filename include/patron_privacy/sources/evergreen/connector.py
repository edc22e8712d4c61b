"""The Evergreen connector: Evergreen's record categories as SQL the engine can run.

Each category follows Evergreen's own conventions (see the source-schemas notes and
``schema.py``):

* **Finished circulations** are *aged* the way Evergreen ages them: copied into
  ``action.aged_circulation`` without ``usr`` (keeping the post code, home library, profile
  and birth year, unless Evergreen's ``circ.do_not_retain_*_on_aged`` settings say not to),
  then deleted. A circulation is finished when ``xact_finish`` is set (returned and nothing
  owed). A renewal is a new circulation whose ``parent_circ`` is the one it renews, so a
  renewal chain is treated as one loan: its clock is the chain's last ``xact_finish``, and
  it has none (so it is never past its window) while any circulation in it is unfinished.
  Batches run newest first, so a renewal is always aged before the circulation it renews.
* **Hold requests** (fulfilled or cancelled) are aged into ``action.aged_hold_request``
  (no ``usr``, ``requestor`` or phone numbers). A patron who chose to keep hold history
  (``history.hold.retention_start``) keeps it.
* **Settled bills** (``money.grocery``: fees not tied to a loan) are aged as Evergreen ages
  money: billings and payments copied into ``money.aged_billing`` / ``money.aged_payment``
  (card and check numbers are not copied) and deleted, then the transaction itself, its only
  link to the patron, is deleted. A circulation's billings and payments need no rule of
  their own: the circulation is their only link to a patron, and aging it cuts that link.
* **Expired patrons** are purged the way ``actor.usr_delete`` does it: cards, addresses and
  settings removed, personal columns blanked (the birth date too: the warehouse keeps the
  age band), names and user name set to ``<id>-PURGED``, the account marked deleted.
* **User activity** (``actor.usr_activity``: logins, verifications) is deleted.

Where Evergreen ages records itself (``action.purge_circulations``, ``action.purge_holds``),
the policy chooses per category (``sources.evergreen.aging``): ``engine`` ages them in the
engine's batches, ``evergreen`` leaves the aging to Evergreen's own job and only verifies
it; the verification counts are the same either way. On a real Evergreen database the
aging triggers (``action_circulation_aging_tgr``, ``action_hold_request_aging_tgr``) make
the aged copy when a row is deleted; the connector detects them and then only deletes, and
counts the earlier circulations of a chain that Evergreen's trigger removes with it.

Evergreen stores instants with their time zone; the run's as-of is library local time, so
every connection's session time zone is set to ``sources.evergreen.timezone``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Text,
    and_,
    case,
    cast,
    column,
    delete,
    event,
    exists,
    extract,
    false,
    func,
    insert,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    table,
    text,
    true,
    union_all,
    update,
)

from patron_privacy import connections
from patron_privacy.engine import VALID_DATE_FLOOR, Anonymize, Category, Context, Recording
from patron_privacy.facts import loan_fact, record_in_batches
from patron_privacy.inventory import COLUMN_RULES, ColumnRule, KeylessLink, SourceInventory
from patron_privacy.sources.base import Connector, SourceConfigError, check_batching
from patron_privacy.sources.evergreen import schema as S

SOURCE = "evergreen"
SETTINGS_KEY = "_evergreen_settings"

circ = S.circulation
aged_circ = S.aged_circulation
holds = S.hold_request
aged_holds = S.aged_hold_request
usr = S.usr

# Categories Evergreen can age itself, the trigger that ages a deleted row, and the
# org unit settings that stop a birth year / post code being kept on the aged row.
AGING = {
    "finished_circulations": {
        "table": ("action", "circulation"),
        "trigger": "action_circulation_aging_tgr",
        "no_birth_year": "circ.do_not_retain_year_of_birth_on_aged",
        "no_post_code": "circ.do_not_retain_post_code_on_aged",
    },
    "hold_requests": {
        "table": ("action", "hold_request"),
        "trigger": "action_hold_request_aging_tgr",
        "no_birth_year": "holds.do_not_retain_year_of_birth_on_aged",
        "no_post_code": "holds.do_not_retain_post_code_on_aged",
    },
}
AGING_MODES = ("engine", "evergreen")
OPTIONS = ("timezone", "batch_size", "workers", "aging", "validation")
STAFF_PERMISSION = "STAFF_LOGIN"
HOLD_HISTORY_SETTING = "history.hold.retention_start"
PURGED = "-PURGED"


@dataclass(frozen=True)
class Settings:
    """What a run resolved about the source before any change (see ``prepare``)."""

    aging: Mapping[str, str] = field(default_factory=lambda: dict.fromkeys(AGING, "engine"))
    # Categories whose table carries Evergreen's own aging trigger.
    triggers: frozenset[str] = frozenset()
    # Category -> (keep birth year, keep post code) on the aged row.
    keep: Mapping[str, tuple[bool, bool]] = field(
        default_factory=lambda: dict.fromkeys(AGING, (True, True))
    )


def _settings(ctx: Context) -> Settings:
    found = ctx.options.get(SETTINGS_KEY)
    if isinstance(found, Settings):
        return found
    aging = {**dict.fromkeys(AGING, "engine"), **(ctx.options.get("aging") or {})}
    return Settings(aging=aging)


def _aged_by_evergreen(name: str):
    return lambda ctx: _settings(ctx).aging.get(name) == "evergreen"


# --- renewal chains ---------------------------------------------------------------------------


def _step(walk, name: str, link, with_parent: bool):
    """One step of a chain walk: the one circulation linked to each row walked so far.

    As a LATERAL subquery with LIMIT 1 (a circulation has one parent and at most one
    renewal), so PostgreSQL always takes it as an index probe, never as a join that scans
    the whole index once per walk.
    """
    n = circ.alias(name)
    cols = [n.c.id, *([n.c.parent_circ] if with_parent else []), n.c.xact_finish]
    nxt = select(*cols).where(link(n, walk)).limit(1).lateral(f"{name}_step")
    return select(*(nxt.c[c.name] for c in cols)).select_from(walk.join(nxt, true()))


def _chain_clock() -> ColumnElement:
    """When a circulation's whole renewal chain finished; NULL while any part is open.

    A circulation on its own (no parent, no renewal) is its own chain: its ``xact_finish``,
    with no subquery. Otherwise the chain is walked both ways through ``parent_circ``
    (indexed: the primary key upwards, ``circ_parent_idx`` downwards).
    """
    up_a = circ.alias("chain_up")
    up = (
        select(up_a.c.id, up_a.c.parent_circ, up_a.c.xact_finish)
        .where(up_a.c.id == circ.c.parent_circ)
        .correlate(circ)
        .cte("chain_up_walk", recursive=True, nesting=True)
    )
    up = up.union_all(_step(up, "chain_up_next", lambda n, w: n.c.id == w.c.parent_circ, True))
    down_a = circ.alias("chain_down")
    down = (
        select(down_a.c.id, down_a.c.xact_finish)
        .where(down_a.c.parent_circ == circ.c.id)
        .correlate(circ)
        .cte("chain_down_walk", recursive=True, nesting=True)
    )
    down = down.union_all(
        _step(down, "chain_down_next", lambda n, w: n.c.parent_circ == w.c.id, False)
    )
    members = union_all(
        select(up.c.xact_finish),
        select(down.c.xact_finish),
        select(circ.c.xact_finish).correlate(circ),
    ).subquery("chain_members")
    whole = select(
        case(
            (
                func.bool_and(members.c.xact_finish.isnot(None)),
                func.max(members.c.xact_finish),
            ),
            else_=null(),
        )
    ).scalar_subquery()
    kid = circ.alias("chain_kid")
    alone = and_(circ.c.parent_circ.is_(None), ~exists().where(kid.c.parent_circ == circ.c.id))
    return case((alone, circ.c.xact_finish), else_=whole)


CHAIN_CLOCK = _chain_clock()


def _later_loan_of_copy(ctx: Context) -> ColumnElement[bool]:
    """Blocker: the copy's most recent loan (Evergreen's ``history.circ.retention_count`` 1).

    A later loan of the same copy starts a chain of its own (``parent_circ`` NULL) after
    every circulation of this chain started, so this holds for a whole chain or none of it.
    """
    other = circ.alias("later_loan")
    return ~exists().where(
        other.c.target_copy == circ.c.target_copy,
        other.c.parent_circ.is_(None),
        other.c.xact_start > circ.c.xact_start,
        other.c.id != circ.c.id,
    )


# --- aging statements -------------------------------------------------------------------------


def _patron_keeps(patron_id, keep: tuple[bool, bool]) -> dict:
    """Evergreen's kept patron attributes on an aged row: post code, home library, profile,
    birth year (``action.all_circulation`` / ``action.all_hold_request``)."""
    keep_year, keep_post = keep
    u = usr.alias("aged_patron")
    ma = S.usr_address.alias("aged_mailing")
    ba = S.usr_address.alias("aged_billing_addr")

    def joins(src):
        return (
            src.outerjoin(u, u.c.id == patron_id)
            .outerjoin(ma, ma.c.id == u.c.mailing_address)
            .outerjoin(ba, ba.c.id == u.c.billing_address)
        )

    values = {
        "usr_post_code": func.coalesce(ma.c.post_code, ba.c.post_code) if keep_post else null(),
        "usr_home_ou": u.c.home_ou,
        "usr_profile": u.c.profile,
        "usr_birth_year": cast(extract("year", u.c.dob), Integer) if keep_year else null(),
    }
    return {"join": joins, "values": values, "patron": u}


def _age_circulations(ctx: Context, where: ColumnElement[bool]):
    s = _settings(ctx)
    if "finished_circulations" in s.triggers:
        # Evergreen's own trigger writes the aged row (and deletes the chain's earlier
        # circulations after the last one): the connector only deletes.
        return [delete(circ).where(where)]
    moved = delete(circ).where(where).returning(*circ.c).cte("circ_moved")
    keep = _patron_keeps(moved.c.usr, s.keep["finished_circulations"])
    cp = S.copy.alias("aged_copy")
    cn = S.call_number.alias("aged_call_number")
    src = keep["join"](moved).outerjoin(cp, cp.c.id == moved.c.target_copy)
    src = src.outerjoin(cn, cn.c.id == cp.c.call_number)
    values = {
        **keep["values"],
        "copy_call_number": cp.c.call_number,
        "copy_owning_lib": cn.c.owning_lib,
        "copy_circ_lib": cp.c.circ_lib,
        "copy_bib_record": cn.c.record,
        **{c.name: moved.c[c.name] for c in aged_circ.c if c.name in moved.c},
    }
    names = [c.name for c in aged_circ.c]
    sel = select(*(values[n] for n in names)).select_from(src)
    return [insert(aged_circ).from_select(names, sel)]


def _age_circulations_count(ctx: Context, where: ColumnElement[bool]):
    """With Evergreen's trigger, deleting a renewal also ages what it renews: count those."""
    if "finished_circulations" not in _settings(ctx).triggers:
        return None
    walk = (
        select(circ.c.id, circ.c.parent_circ).where(where).cte("aged_with_trigger", recursive=True)
    )
    parent = circ.alias("aged_parent")
    walk = walk.union_all(
        select(parent.c.id, parent.c.parent_circ).where(parent.c.id == walk.c.parent_circ)
    )
    return select(func.count(func.distinct(walk.c.id)))


def _notify_flag(col) -> ColumnElement:
    return case((or_(col.is_(None), col == ""), false()), else_=true())


def _age_holds(ctx: Context, where: ColumnElement[bool]):
    s = _settings(ctx)
    if "hold_requests" in s.triggers:
        return [delete(holds).where(where)]
    moved = delete(holds).where(where).returning(*holds.c).cte("holds_moved")
    keep = _patron_keeps(moved.c.usr, s.keep["hold_requests"])
    values = {
        **keep["values"],
        "staff_placed": moved.c.requestor != moved.c.usr,
        "phone_notify": _notify_flag(moved.c.phone_notify),
        "sms_notify": _notify_flag(moved.c.sms_notify),
    }
    for c in aged_holds.c:
        if c.name not in values:
            values[c.name] = moved.c[c.name]
    names = [c.name for c in aged_holds.c]
    sel = select(*(values[n] for n in names)).select_from(keep["join"](moved))
    return [insert(aged_holds).from_select(names, sel)]


_pg_class = table("pg_class", column("oid"), column("relname"), schema="pg_catalog")


def _age_bills(ctx: Context, where: ColumnElement[bool]):
    """``money.age_billings_and_payments_for_xact``, for a batch, then the transaction."""
    g = S.grocery
    xacts = select(g.c.id).where(where)
    b = S.billing
    p = S.payment.alias("pay")
    bnm = S.bnm_payment.alias("pay_bnm")
    desk = S.bnm_desk_payment.alias("pay_desk")
    adj = S.account_adjustment.alias("pay_adj")
    flag = S.global_flag.alias("refund_flag")
    relname = _pg_class.c.relname
    refundable = func.coalesce(
        select(flag.c.enabled)
        .where(flag.c.name == literal("money.") + relname + literal(".is_refundable"))
        .scalar_subquery(),
        true(),
    )
    payments = (
        select(
            p.c.id,
            p.c.xact,
            p.c.payment_ts,
            p.c.voided,
            p.c.amount,
            p.c.note,
            cast(relname, Text),
            refundable,
            bnm.c.accepting_usr,
            desk.c.cash_drawer,
            adj.c.billing,
        )
        .select_from(
            p.join(_pg_class, _pg_class.c.oid == literal_column("pay.tableoid"))
            .outerjoin(bnm, bnm.c.id == p.c.id)
            .outerjoin(desk, desk.c.id == p.c.id)
            .outerjoin(adj, adj.c.id == p.c.id)
        )
        .where(p.c.xact.in_(xacts))
    )
    billing_names = [c.name for c in S.aged_billing.c]
    return [
        insert(S.aged_billing).from_select(
            billing_names, select(*(b.c[n] for n in billing_names)).where(b.c.xact.in_(xacts))
        ),
        insert(S.aged_payment).from_select([c.name for c in S.aged_payment.c], payments),
        delete(S.payment).where(S.payment.c.xact.in_(xacts)),
        delete(b).where(b.c.xact.in_(xacts)),
        delete(g).where(where),
    ]


def _purge_patrons(ctx: Context, where: ColumnElement[bool]):
    """``actor.usr_delete``, for a batch: dependent rows first, the account row last."""
    ids = select(usr.c.id).where(where)
    addr = S.usr_address
    other = usr.alias("address_sharer")
    sharer = (
        select(other.c.id)
        .where(
            or_(other.c.mailing_address == addr.c.id, other.c.billing_address == addr.c.id),
            other.c.id != addr.c.usr,
        )
        .order_by(other.c.id)
        .limit(1)
        .scalar_subquery()
    )
    purged_name = cast(usr.c.id, Text) + literal(PURGED)
    values: dict = {c: null() for c in S.PERSONAL_COLUMNS}
    values.update(
        usrname=purged_name,
        first_given_name=purged_name,
        family_name=purged_name,
        active=false(),
        deleted=true(),
    )
    return [
        delete(S.card).where(S.card.c.usr.in_(ids)),
        delete(S.usr_setting).where(S.usr_setting.c.usr.in_(ids)),
        # Evergreen (LP#885270): an address another patron also uses moves to that patron.
        update(addr)
        .where(addr.c.usr.in_(ids), sharer.isnot(None))
        .values(usr=sharer, replaces=null()),
        update(addr).where(addr.c.usr.in_(ids)).values(replaces=null()),
        delete(addr).where(addr.c.usr.in_(ids)),
        update(usr).where(where).values(values),
    ]


# --- blockers on patrons ----------------------------------------------------------------------


def _staff_groups():
    """Profiles that may log in as staff: granted STAFF_LOGIN, or below one that is."""
    gpm = S.grp_perm_map
    perm = S.perm_list
    start = (
        select(gpm.c.grp.label("grp"))
        .join(perm, perm.c.id == gpm.c.perm)
        .where(perm.c.code == STAFF_PERMISSION)
        .cte("staff_groups", recursive=True, nesting=True)
    )
    child = S.grp_tree.alias("staff_child")
    return start.union_all(select(child.c.id).where(child.c.parent == start.c.grp))


def _staff_account(ctx: Context) -> ColumnElement[bool]:
    groups = _staff_groups()
    ugm = S.usr_grp_map
    upm = S.usr_perm_map
    perm = S.perm_list.alias("staff_perm")
    return or_(
        usr.c.super_user,
        usr.c.profile.in_(select(groups.c.grp)),
        exists().where(ugm.c.usr == usr.c.id, ugm.c.grp.in_(select(_staff_groups().c.grp))),
        exists().where(
            upm.c.usr == usr.c.id, upm.c.perm == perm.c.id, perm.c.code == STAFF_PERMISSION
        ),
    )


def _active_after_expiry(ctx: Context) -> ColumnElement[bool]:
    act = S.usr_activity
    x = S.billable_xact
    return or_(
        exists().where(act.c.usr == usr.c.id, act.c.event_time > usr.c.expire_date),
        exists().where(x.c.usr == usr.c.id, x.c.xact_start > usr.c.expire_date),
    )


# --- facts ------------------------------------------------------------------------------------


def _chain_facts_query(start: ColumnElement[bool]):
    """One row per loan (renewal chain) that holds a circulation matching ``start``.

    Walks up to each chain's first circulation, then down through its renewals: the loan
    starts with the first (its id is the loan's id) and ends with the last (its check-in).
    """
    up = (
        select(circ.c.id.label("id"), circ.c.parent_circ.label("parent"))
        .where(start)
        .cte("fact_up", recursive=True)
    )
    parent = circ.alias("fact_parent")
    up = up.union_all(select(parent.c.id, parent.c.parent_circ).where(parent.c.id == up.c.parent))
    present = circ.alias("fact_present")
    heads = (
        select(up.c.id.label("head"))
        .where(~exists().where(present.c.id == up.c.parent))
        .distinct()
        .cte("fact_heads")
    )
    down = select(heads.c.head.label("head"), heads.c.head.label("id")).cte(
        "fact_down", recursive=True
    )
    kid = circ.alias("fact_kid")
    down = down.union_all(select(down.c.head, kid.c.id).where(kid.c.parent_circ == down.c.id))
    chains = (
        select(
            down.c.head,
            func.count().label("circs"),
            func.max(down.c.id).label("last"),
        )
        .group_by(down.c.head)
        .subquery("fact_chains")
    )
    h = circ.alias("fact_first")
    t = circ.alias("fact_last")
    u = usr.alias("fact_patron")
    cp = S.copy.alias("fact_copy")
    loc = S.copy_location.alias("fact_location")
    ou = S.org_unit.alias("fact_branch")
    grp = S.grp_tree.alias("fact_profile")
    return (
        select(
            h.c.id.label("loan_id"),
            h.c.usr.label("patron_id"),
            h.c.xact_start.label("issued"),
            t.c.checkin_time.label("returned"),
            (chains.c.circs - 1).label("renewals"),
            u.c.dob,
            u.c.juvenile,
            grp.c.name.label("profile"),
            ou.c.shortname.label("branch"),
            cp.c.circ_modifier,
            loc.c.name.label("location"),
        )
        .select_from(
            chains.join(h, h.c.id == chains.c.head)
            .join(t, t.c.id == chains.c.last)
            .outerjoin(u, u.c.id == h.c.usr)
            .outerjoin(grp, grp.c.id == u.c.profile)
            .outerjoin(ou, ou.c.id == h.c.circ_lib)
            .outerjoin(cp, cp.c.id == h.c.target_copy)
            .outerjoin(loc, loc.c.id == cp.c.location)
        )
        .where(h.c.xact_start >= VALID_DATE_FLOOR)
    )


def _cut(value, n: int):
    return value[:n] if isinstance(value, str) else value


def _to_fact(r, ctx: Context) -> dict:
    return loan_fact(
        ctx.pseudonymizer,
        SOURCE,
        loan_id=r["loan_id"],
        patron_id=r["patron_id"],
        anonymous_patron=None,
        issued=r["issued"],
        returned=r["returned"],
        birth=r["dob"],
        branch=_cut(r["branch"], 32),
        item_type=_cut(r["circ_modifier"], 32),
        collection=_cut(r["location"], 80),
        patron_category=_cut(r["profile"], 32),
        category_type=None if r["juvenile"] is None else ("C" if r["juvenile"] else "A"),
        renewals=r["renewals"],
    )


def _record_loan_facts(conn: Connection, where: ColumnElement[bool], ctx: Context) -> Recording:
    if ctx.facts_sink is None or ctx.pseudonymizer is None:
        raise SourceConfigError(
            "finished_circulations: facts cannot be recorded (no warehouse or pseudonym "
            "keys), so no circulation is aged"
        )
    # One fact per loan, from the batch that holds its last circulation (batches run newest
    # first, so that batch comes first and still sees the whole chain).
    rows = conn.execute(_chain_facts_query(and_(where, _is_last()))).mappings().all()
    return lambda: ctx.facts_sink([_to_fact(r, ctx) for r in rows])


def _is_last() -> ColumnElement[bool]:
    """The circulation is the last of its chain: nothing renews it, live or already aged."""
    kid = circ.alias("renewed_by")
    aged_kid = aged_circ.alias("renewed_by_aged")
    return and_(
        ~exists().where(kid.c.parent_circ == circ.c.id),
        ~exists().where(aged_kid.c.parent_circ == circ.c.id),
    )


def extract_facts(engine: Engine, ctx: Context, since: datetime | None, batch_size: int) -> int:
    """Facts for loans whose last circulation was checked in in [since, as-of)."""
    last = and_(
        _is_last(),
        circ.c.checkin_time < ctx.as_of,
        circ.c.checkin_time >= (since or VALID_DATE_FLOOR),
    )

    def read(after):
        q = select(circ.c.id).where(last)
        if after is not None:
            q = q.where(circ.c.id > after)
        with engine.connect() as conn:
            ids = list(conn.execute(q.order_by(circ.c.id).limit(batch_size)).scalars())
            if not ids:
                return [], None
            rows = conn.execute(_chain_facts_query(circ.c.id.in_(ids))).mappings().all()
        return rows, ids[-1]

    return record_in_batches(read, lambda rows: ctx.facts_sink([_to_fact(r, ctx) for r in rows]))


# --- the categories ---------------------------------------------------------------------------

x = S.billable_xact
act = S.usr_activity
grocery = S.grocery

CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category(
            name="finished_circulations",
            source=SOURCE,
            table=circ,
            key=circ.c.id,
            clock=CHAIN_CLOCK,
            patron=circ.c.usr,
            description="Finished circulations (returned, nothing owed; renewals as one)",
            scope=lambda ctx: circ.c.xact_finish.isnot(None),
            # NULL clock: some circulation of the chain is still open. Not past any window.
            null_clock_is_error=False,
            blockers={"last_loan_of_copy": _later_loan_of_copy},
            anonymize=Anonymize(
                identifying=lambda ctx: true(),
                statements=_age_circulations,
                count=_age_circulations_count,
            ),
            deletable=False,
            before_change=_record_loan_facts,
            newest_first=True,
            enforced_by_source=_aged_by_evergreen("finished_circulations"),
        ),
        Category(
            name="hold_requests",
            source=SOURCE,
            table=holds,
            key=holds.c.id,
            clock=func.coalesce(holds.c.fulfillment_time, holds.c.cancel_time),
            patron=holds.c.usr,
            description="Hold requests, fulfilled or cancelled",
            scope=lambda ctx: or_(
                holds.c.fulfillment_time.isnot(None), holds.c.cancel_time.isnot(None)
            ),
            blockers={
                "keep_history": lambda ctx: exists().where(
                    S.usr_setting.c.usr == holds.c.usr,
                    S.usr_setting.c.name == HOLD_HISTORY_SETTING,
                )
            },
            anonymize=Anonymize(identifying=lambda ctx: true(), statements=_age_holds),
            strippable=("phone_notify", "sms_notify", "cancel_note"),
            deletable=False,
            enforced_by_source=_aged_by_evergreen("hold_requests"),
        ),
        Category(
            name="settled_bills",
            source=SOURCE,
            table=grocery,
            key=grocery.c.id,
            clock=grocery.c.xact_finish,
            patron=grocery.c.usr,
            description="Settled bills not tied to a loan, with their billings and payments",
            scope=lambda ctx: grocery.c.xact_finish.isnot(None),
            anonymize=Anonymize(identifying=lambda ctx: true(), statements=_age_bills),
            strippable=("note",),
            deletable=False,
        ),
        Category(
            name="expired_patrons",
            source=SOURCE,
            table=usr,
            key=usr.c.id,
            clock=usr.c.expire_date,
            patron=usr.c.id,
            description="Patrons whose card expired and who have not been back since",
            blockers={
                "open_loan": lambda ctx: exists().where(
                    circ.c.usr == usr.c.id,
                    circ.c.checkin_time.is_(None),
                    circ.c.xact_finish.is_(None),
                ),
                "outstanding_balance": lambda ctx: exists().where(
                    x.c.usr == usr.c.id, x.c.xact_finish.is_(None)
                ),
                "open_hold": lambda ctx: exists().where(
                    holds.c.usr == usr.c.id,
                    holds.c.fulfillment_time.is_(None),
                    holds.c.cancel_time.is_(None),
                ),
                "active_after_expiry": _active_after_expiry,
                "staff_account": _staff_account,
                "barred": lambda ctx: usr.c.barred,
            },
            anonymize=Anonymize(
                identifying=lambda ctx: not_(usr.c.usrname.like(f"%{PURGED}%")),
                statements=_purge_patrons,
            ),
            deletable=False,
        ),
        Category(
            name="user_activity",
            source=SOURCE,
            table=act,
            key=act.c.id,
            clock=act.c.event_time,
            patron=act.c.usr,
            description="Patron activity (logins, verifications)",
            anonymize=Anonymize(
                identifying=lambda ctx: act.c.usr.isnot(None),
                values=lambda ctx: {"usr": None, "event_data": None},
            ),
            strippable=("event_data",),
        ),
    )
}


# --- options and preparation ------------------------------------------------------------------


def check_options(opts: dict) -> list[str]:
    problems = []
    for key in sorted(set(opts) - set(OPTIONS)):
        problems.append(f"{key}: unknown option (expected one of {', '.join(OPTIONS)})")
    tz = opts.get("timezone")
    if tz is not None:
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone: unknown time zone {tz!r} (e.g. America/New_York)")
    problems.extend(check_batching(opts))
    aging = opts.get("aging") or {}
    if not isinstance(aging, dict):
        problems.append("aging: expected a mapping of category to 'engine' or 'evergreen'")
        aging = {}
    for name, mode in aging.items():
        if name not in AGING:
            problems.append(
                f"aging.{name}: Evergreen does not age {name} itself "
                f"(expected one of {', '.join(AGING)})"
            )
        elif mode not in AGING_MODES:
            problems.append(
                f"aging.{name}: expected 'engine' (the pipeline ages them) or 'evergreen' "
                f"(Evergreen's own purge does, the pipeline verifies), got {mode!r}"
            )
    return problems


_SESSION_LISTENERS: dict[str | None, object] = {}


def _session_setup(zone: str | None):
    if zone not in _SESSION_LISTENERS:

        def setup(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            if zone:
                cur.execute("SET TIME ZONE %s", (zone,))
            # The chain clock's correlated subqueries make the planner's cost estimates
            # large enough to trigger JIT compilation of every statement, which then costs
            # more than the statement itself (measured: ~0.4 s per batch statement).
            cur.execute("SET jit = off")
            cur.close()
            dbapi_conn.commit()

        _SESSION_LISTENERS[zone] = setup
    return _SESSION_LISTENERS[zone]


def configure_sessions(engine: Engine, zone: str | None) -> None:
    """Every connection of ``engine`` compares times in ``zone`` (the library's local time;
    None: the server's) and runs without JIT."""
    wanted = _session_setup(zone)
    for other in _SESSION_LISTENERS.values():
        if other is not wanted and event.contains(engine, "connect", other):
            event.remove(engine, "connect", other)
    if not event.contains(engine, "connect", wanted):
        event.listen(engine, "connect", wanted)
        engine.dispose()  # connections opened before now have the server's settings


def use_time_zone(engine: Engine, zone: str) -> None:
    configure_sessions(engine, zone)


def _triggers(conn: Connection) -> frozenset[str]:
    found = set()
    for name, spec in AGING.items():
        nsp, rel = spec["table"]
        present = conn.execute(
            text(
                "SELECT 1 FROM pg_catalog.pg_trigger t "
                "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :nsp AND c.relname = :rel AND t.tgname = :tg "
                "AND NOT t.tgisinternal AND t.tgenabled <> 'D'"
            ),
            {"nsp": nsp, "rel": rel, "tg": spec["trigger"]},
        ).first()
        if present:
            found.add(name)
    return frozenset(found)


def _keep_on_aged(conn: Connection) -> dict[str, tuple[bool, bool]]:
    """Evergreen's do-not-retain settings; set to true anywhere, they apply everywhere."""
    ous = S.org_unit_setting
    names = [spec[k] for spec in AGING.values() for k in ("no_birth_year", "no_post_code")]
    set_true = set(
        conn.execute(
            select(ous.c.name).where(ous.c.name.in_(names), func.trim(ous.c.value) == "true")
        ).scalars()
    )
    return {
        name: (spec["no_birth_year"] not in set_true, spec["no_post_code"] not in set_true)
        for name, spec in AGING.items()
    }


def prepare(engine: Engine, opts: dict, ctx: Context) -> None:
    """Resolve before any change: the session time zone, who ages what, Evergreen's settings."""
    if engine.dialect.name != "postgresql":
        raise SourceConfigError(
            f"evergreen: the Evergreen database is PostgreSQL, not {engine.dialect.name}"
        )
    zone = opts.get("timezone")
    configure_sessions(engine, str(zone) if zone else None)
    aging = {**dict.fromkeys(AGING, "engine"), **(opts.get("aging") or {})}
    with engine.connect() as conn:
        triggers = _triggers(conn)
        keep = _keep_on_aged(conn)
    ctx.options[SETTINGS_KEY] = Settings(aging=aging, triggers=triggers, keep=keep)


CONNECTOR = Connector(
    name=SOURCE,
    conn_id=connections.EVERGREEN_DB,
    categories=CATEGORIES,
    check_options=check_options,
    prepare=prepare,
    extract_facts=extract_facts,
    default_options={
        "timezone": None,
        "batch_size": 10_000,
        "aging": dict.fromkeys(AGING, "engine"),
    },
)


# --- the personal-data inventory -------------------------------------------------------------
#
# What discovery must know about Evergreen beyond its foreign keys to actor.usr: where a user
# id sits without one (PostgreSQL does not inherit foreign keys, so money.grocery's ``usr``
# has none although money.billable_xact's has; staff columns were never keyed), and
# Evergreen's own names for personal fields.
EVERGREEN_COLUMN_RULES: tuple[ColumnRule, ...] = (
    ColumnRule("name", r"(pref_)?(first_given|second_given|family)_name|name_keywords"),
    ColumnRule("name", r"(pref_)?(prefix|suffix)|alias", needs_link=True),
    ColumnRule("phone", r"(day|evening|other)_phone"),
    ColumnRule("address", r"street[12]|county|post_code"),
    ColumnRule("identifier", r"barcode|ident_value2?", needs_link=True),
    ColumnRule("login", r"usrname|passwd", needs_link=True),
)

_STAFF_COLUMNS = ("circ_staff", "checkin_staff", "fulfillment_staff", "creator", "editor")

KEYLESS_REFERENCES: tuple[KeylessLink, ...] = (
    KeylessLink("money.grocery", "usr", note="inherits billable_xact's column, not its key"),
    *(
        KeylessLink(t.fullname, col, note="staff member")
        for t in S.metadata.sorted_tables
        for col in (*_STAFF_COLUMNS, "accepting_usr")
        if col in t.c and not t.c[col].foreign_keys
    ),
)

INVENTORY = SourceInventory(
    source=SOURCE,
    patron_table="actor.usr",
    patron_key="id",
    keyless=KEYLESS_REFERENCES,
    column_rules=(*COLUMN_RULES, *EVERGREEN_COLUMN_RULES),
    schemas=S.SCHEMAS,
)
