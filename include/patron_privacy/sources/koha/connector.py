"""The Koha connector: Koha's record categories as SQL the engine can run.

Each category follows Koha's own conventions (see the source-schemas notes):
history is anonymized by re-pointing ``borrowernumber`` to the patron Koha
names in ``AnonymousPatron`` (or to NULL, if the library chooses), a patron
is anonymized the way Koha's ``anonymize`` does it (personal columns blanked,
``anonymized`` set), and a patron's ``privacy = 0`` ("keep my history") is
honoured. Unlike Koha's cleanup, the copies Koha forgets are covered too:
``statistics.borrowernumber``, notices and action logs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    exists,
    or_,
    select,
    true,
)

from patron_privacy import connections
from patron_privacy.engine import Anonymize, Category, Context
from patron_privacy.facts import loan_fact
from patron_privacy.sources.base import Connector, SourceConfigError
from patron_privacy.sources.koha import schema

T = schema.metadata.tables
borrowers = T["borrowers"]
issues = T["issues"]
old_issues = T["old_issues"]
old_reserves = T["old_reserves"]
reserves = T["reserves"]
accountlines = T["accountlines"]
statistics = T["statistics"]
search_history = T["search_history"]
action_logs = T["action_logs"]
message_queue = T["message_queue"]
items = T["items"]
categories = T["categories"]
relationships = T["borrower_relationships"]
systempreferences = T["systempreferences"]

SOURCE = "koha"
# Action-log modules whose rows are about patrons and their use of the library.
PATRON_LOG_MODULES = ("MEMBERS", "CIRCULATION", "FINES", "HOLDS", "NOTICES", "RECALLS")


def _not_anonymous(col, ctx: Context) -> ColumnElement[bool]:
    if ctx.anonymous_patron is None:
        return col.isnot(None)
    return and_(col.isnot(None), col != ctx.anonymous_patron)


def _repoint(table, ctx: Context) -> dict:
    values = {"borrowernumber": ctx.anonymous_patron}
    if "timestamp" in table.c:
        # Keep Koha's ON UPDATE timestamp: it is the hold-history clock.
        values["timestamp"] = table.c.timestamp
    return values


def _history_anonymize(table) -> Anonymize:
    return Anonymize(
        identifying=lambda ctx: _not_anonymous(table.c.borrowernumber, ctx),
        values=lambda ctx: _repoint(table, ctx),
    )


def _keep_history(table):
    return lambda ctx: exists().where(
        borrowers.c.borrowernumber == table.c.borrowernumber, borrowers.c.privacy == 0
    )


def _blank_patron(ctx: Context) -> dict:
    """Koha's patron anonymization, plus the birth date (the warehouse keeps the age band)."""
    values: dict = {}
    for name in schema.PERSONAL_COLUMNS:
        col = borrowers.c[name]
        values[name] = None if col.nullable else ""
    values["anonymized"] = 1
    return values


def _record_loan_facts(conn: Connection, where: ColumnElement[bool], ctx: Context) -> int:
    if ctx.facts_sink is None or ctx.pseudonymizer is None:
        raise SourceConfigError(
            "returned_loans: facts cannot be recorded (no warehouse or pseudonym keys), "
            "so no loan is unlinked"
        )
    rows = conn.execute(_loan_fact_query().where(where)).mappings().all()
    return ctx.facts_sink([_to_fact(r, ctx) for r in rows])


def _loan_fact_query():
    # Aliases, so a blocker's EXISTS over borrowers in the WHERE clause stays a
    # correlated subquery instead of collapsing into this join.
    pb = borrowers.alias("fact_patron")
    pi = items.alias("fact_item")
    pc = categories.alias("fact_category")
    return (
        select(
            old_issues.c.issue_id,
            old_issues.c.borrowernumber,
            old_issues.c.issuedate,
            old_issues.c.returndate,
            old_issues.c.branchcode,
            old_issues.c.renewals_count,
            pi.c.itype,
            pi.c.ccode,
            pb.c.categorycode,
            pb.c.dateofbirth,
            pc.c.category_type,
        )
        .select_from(
            old_issues.outerjoin(pi, pi.c.itemnumber == old_issues.c.itemnumber)
            .outerjoin(pb, pb.c.borrowernumber == old_issues.c.borrowernumber)
            .outerjoin(pc, pc.c.categorycode == pb.c.categorycode)
        )
        .where(old_issues.c.issuedate >= datetime(1900, 1, 1))
    )


def _to_fact(r, ctx: Context) -> dict:
    return loan_fact(
        ctx.pseudonymizer,
        SOURCE,
        loan_id=r["issue_id"],
        patron_id=r["borrowernumber"],
        anonymous_patron=ctx.anonymous_patron,
        issued=r["issuedate"],
        returned=r["returndate"],
        birth=r["dateofbirth"],
        branch=r["branchcode"],
        item_type=r["itype"],
        collection=r["ccode"],
        patron_category=r["categorycode"],
        category_type=r["category_type"],
        renewals=r["renewals_count"],
    )


def extract_facts(engine: Engine, ctx: Context, since: datetime | None, batch_size: int) -> int:
    """Facts for loans returned in [since, as-of), keyset-batched on issue_id."""
    written = 0
    lo = None
    base = _loan_fact_query().where(
        old_issues.c.returndate < ctx.as_of,
        old_issues.c.returndate >= (since or datetime(1900, 1, 1)),
    )
    while True:
        q = base if lo is None else base.where(old_issues.c.issue_id > lo)
        with engine.connect() as conn:
            rows = (
                conn.execute(q.order_by(old_issues.c.issue_id).limit(batch_size)).mappings().all()
            )
        if not rows:
            return written
        written += ctx.facts_sink([_to_fact(r, ctx) for r in rows])
        lo = rows[-1]["issue_id"]


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category(
            name="returned_loans",
            source=SOURCE,
            table=old_issues,
            key=old_issues.c.issue_id,
            clock=old_issues.c.returndate,
            patron=old_issues.c.borrowernumber,
            description="Returned loans (reading history)",
            blockers={
                "keep_history": _keep_history(old_issues),
                # Koha moves a fine's issue_id to old_issue_id at check-in;
                # older rows may still carry issue_id. Either way it is this loan.
                "outstanding_balance": lambda ctx: or_(
                    exists().where(
                        accountlines.c.old_issue_id == old_issues.c.issue_id,
                        accountlines.c.amountoutstanding != 0,
                    ),
                    exists().where(
                        accountlines.c.issue_id == old_issues.c.issue_id,
                        accountlines.c.amountoutstanding != 0,
                    ),
                ),
            },
            anonymize=_history_anonymize(old_issues),
            strippable=("note",),
            before_change=_record_loan_facts,
        ),
        Category(
            name="hold_history",
            source=SOURCE,
            table=old_reserves,
            key=old_reserves.c.reserve_id,
            clock=old_reserves.c.timestamp,
            patron=old_reserves.c.borrowernumber,
            description="Closed holds (filled, cancelled, expired)",
            blockers={"keep_history": _keep_history(old_reserves)},
            anonymize=_history_anonymize(old_reserves),
            strippable=("reservenotes",),
        ),
        Category(
            name="settled_fines",
            source=SOURCE,
            table=accountlines,
            key=accountlines.c.accountlines_id,
            clock=accountlines.c.date,
            patron=accountlines.c.borrowernumber,
            description="Settled fines, fees and payments",
            scope=lambda ctx: accountlines.c.amountoutstanding == 0,
            blockers={
                "open_loan": lambda ctx: exists().where(
                    issues.c.issue_id == accountlines.c.issue_id
                ),
            },
            anonymize=_history_anonymize(accountlines),
            strippable=("description", "note"),
        ),
        Category(
            name="circulation_statistics",
            source=SOURCE,
            table=statistics,
            key=statistics.c.datetime,
            clock=statistics.c.datetime,
            patron=statistics.c.borrowernumber,
            description="Circulation statistics' patron link",
            blockers={"keep_history": _keep_history(statistics)},
            anonymize=Anonymize(
                identifying=lambda ctx: statistics.c.borrowernumber.isnot(None),
                values=lambda ctx: {"borrowernumber": None},
            ),
            deletable=False,
        ),
        Category(
            name="opac_search_history",
            source=SOURCE,
            table=search_history,
            key=search_history.c.id,
            clock=search_history.c.time,
            patron=search_history.c.userid,
            description="OPAC search history",
        ),
        Category(
            name="notices",
            source=SOURCE,
            table=message_queue,
            key=message_queue.c.message_id,
            clock=message_queue.c.time_queued,
            patron=message_queue.c.borrowernumber,
            description="Notices sent to patrons (email, SMS, print)",
            blockers={"pending_notice": lambda ctx: message_queue.c.status == "pending"},
            strippable=("subject", "content", "to_address"),
        ),
        Category(
            name="patron_action_logs",
            source=SOURCE,
            table=action_logs,
            key=action_logs.c.action_id,
            clock=action_logs.c.timestamp,
            patron=action_logs.c.object,
            description="Action logs about patrons",
            scope=lambda ctx: action_logs.c.module.in_(PATRON_LOG_MODULES),
            strippable=("info", "diff"),
        ),
        Category(
            name="expired_patrons",
            source=SOURCE,
            table=borrowers,
            key=borrowers.c.borrowernumber,
            clock=borrowers.c.dateexpiry,
            patron=borrowers.c.borrowernumber,
            description="Patrons whose card expired",
            scope=lambda ctx: (
                borrowers.c.borrowernumber != ctx.anonymous_patron
                if ctx.anonymous_patron is not None
                else true()
            ),
            # A NULL expiry means the card never expires: not a data error.
            null_clock_is_error=False,
            blockers={
                "open_loan": lambda ctx: exists().where(
                    issues.c.borrowernumber == borrowers.c.borrowernumber
                ),
                "outstanding_balance": lambda ctx: exists().where(
                    accountlines.c.borrowernumber == borrowers.c.borrowernumber,
                    accountlines.c.amountoutstanding != 0,
                ),
                "protected": lambda ctx: borrowers.c.protected == 1,
                "open_hold": lambda ctx: exists().where(
                    reserves.c.borrowernumber == borrowers.c.borrowernumber
                ),
                "guarantor": lambda ctx: exists().where(
                    relationships.c.guarantor_id == borrowers.c.borrowernumber
                ),
                "staff_account": lambda ctx: exists().where(
                    categories.c.categorycode == borrowers.c.categorycode,
                    categories.c.category_type == "S",
                ),
            },
            anonymize=Anonymize(
                identifying=lambda ctx: borrowers.c.anonymized == 0,
                values=_blank_patron,
            ),
        ),
    )
}


def check_options(opts: dict) -> list[str]:
    problems = []
    anon = opts.get("anonymous_patron", "preference")
    if not (anon in ("preference", None, "null") or (isinstance(anon, int) and anon > 0)):
        problems.append(
            f"anonymous_patron: expected 'preference', a borrowernumber or null, got {anon!r}"
        )
    batch = opts.get("batch_size", 10_000)
    if not isinstance(batch, int) or not 1 <= batch <= 1_000_000:
        problems.append(f"batch_size: expected a whole number from 1 to 1000000, got {batch!r}")
    return problems


def prepare(engine: Engine, opts: dict, ctx: Context) -> None:
    """Resolve the anonymous patron before anything changes (Koha bug 9942 failed silently)."""
    anon = opts.get("anonymous_patron", "preference")
    if anon in (None, "null"):
        ctx.anonymous_patron = None
        return
    with engine.connect() as conn:
        if anon == "preference":
            value = conn.execute(
                select(systempreferences.c.value).where(
                    systempreferences.c.variable == "AnonymousPatron"
                )
            ).scalar()
            if value is None or not str(value).strip().isdigit() or int(value) == 0:
                raise SourceConfigError(
                    "koha: system preference AnonymousPatron is not set; set it in Koha, or set "
                    "sources.koha.anonymous_patron in the policy (a borrowernumber, or null)"
                )
            anon = int(value)
        found = conn.execute(
            select(borrowers.c.borrowernumber).where(borrowers.c.borrowernumber == anon)
        ).scalar()
    if found is None:
        raise SourceConfigError(f"koha: the anonymous patron {anon} does not exist in borrowers")
    ctx.anonymous_patron = int(anon)


CONNECTOR = Connector(
    name=SOURCE,
    conn_id=connections.KOHA_DB,
    categories=CATEGORIES,
    check_options=check_options,
    prepare=prepare,
    extract_facts=extract_facts,
    default_options={"anonymous_patron": "preference", "batch_size": 10_000},
)
