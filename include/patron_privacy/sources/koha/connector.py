"""The Koha connector: Koha's record categories as SQL the engine can run.

Each category follows Koha's own conventions (see the source-schemas notes):
history is anonymized by re-pointing ``borrowernumber`` to the patron Koha
names in ``AnonymousPatron`` (or to NULL, if the library chooses), a patron
is anonymized the way Koha's ``anonymize`` does it (personal columns blanked,
``anonymized`` set), and a patron's ``privacy = 0`` ("keep my history") is
honoured. Unlike Koha's cleanup, the copies Koha forgets are covered too:
``statistics.borrowernumber``, notices and action logs.

The rest of Koha's patron data (issue 3) has categories too: last borrowers, change
requests, expired restrictions, ILL requests and comments, suggestions, article
requests, bookings, recalls, link clicks, renewals, clubs, housebound visits, return
claims, problem reports, tickets, messages, tags, photos, files, Koha's
pseudonymized transactions, deleted patrons and guarantor links; a patron's registration
extras (``PATRON_DEPENDENTS``: attributes, messaging preferences, lists, consents...),
removed once the patron is anonymized because Koha removes them only on deletion; and
club holds, hold groups, ILL batches, jobs, password resets, card batches, curbside
pickups, offline circulation and quotas on clocks of their own. ``KEYLESS_REFERENCES``
and ``INVENTORY`` (end of this module) are what the personal-data inventory
(:mod:`patron_privacy.inventory`) knows about Koha beyond its foreign keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    DateTime,
    Engine,
    and_,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from patron_privacy import connections
from patron_privacy.engine import VALID_DATE_FLOOR, Anonymize, Category, Context, Recording
from patron_privacy.facts import loan_fact, record_in_batches
from patron_privacy.inventory import KeylessLink, SourceInventory
from patron_privacy.sources.base import Connector, SourceConfigError, check_batching
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
deletedborrowers = T["deletedborrowers"]

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


def _record_loan_facts(conn: Connection, where: ColumnElement[bool], ctx: Context) -> Recording:
    if ctx.facts_sink is None or ctx.pseudonymizer is None:
        raise SourceConfigError(
            "returned_loans: facts cannot be recorded (no warehouse or pseudonym keys), "
            "so no loan is unlinked"
        )
    rows = conn.execute(_loan_fact_query().where(where)).mappings().all()
    return lambda: ctx.facts_sink([_to_fact(r, ctx) for r in rows])


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
    base = _loan_fact_query().where(
        old_issues.c.returndate < ctx.as_of,
        old_issues.c.returndate >= (since or datetime(1900, 1, 1)),
    )

    def read(after):
        q = base if after is None else base.where(old_issues.c.issue_id > after)
        with engine.connect() as conn:
            result = conn.execute(q.order_by(old_issues.c.issue_id).limit(batch_size))
            rows = result.mappings().all()
        return rows, rows[-1]["issue_id"] if rows else None

    return record_in_batches(read, lambda rows: ctx.facts_sink([_to_fact(r, ctx) for r in rows]))


# --- the rest of Koha's patron data (issue 3: the personal-data inventory) ---------------------

items_last_borrower = T["items_last_borrower"]
borrower_modifications = T["borrower_modifications"]
borrower_debarments = T["borrower_debarments"]
illrequests = T["illrequests"]
illcomments = T["illcomments"]
suggestions = T["suggestions"]
article_requests = T["article_requests"]
bookings = T["bookings"]
recalls = T["recalls"]
linktracker = T["linktracker"]
checkout_renewals = T["checkout_renewals"]
club_enrollments = T["club_enrollments"]
housebound_visit = T["housebound_visit"]
return_claims = T["return_claims"]
problem_reports = T["problem_reports"]
tickets = T["tickets"]
messages = T["messages"]
tags_all = T["tags_all"]
patronimage = T["patronimage"]
borrower_files = T["borrower_files"]
pseudonymized_transactions = T["pseudonymized_transactions"]

# Suggestion statuses still being worked on (the patron is told when the title arrives).
OPEN_SUGGESTION_STATUSES = ("ASKED", "CHECKED", "ACCEPTED", "ORDERED")
# Columns of pseudonymized_transactions that describe the person behind the pseudonym.
PSEUDONYM_QUASI_IDENTIFIERS = (
    "title",
    "city",
    "state",
    "zipcode",
    "country",
    "sex",
    "sort1",
    "sort2",
    "dateenrolled",
)


def _keeps_history(col):
    """The patron ``col`` points at chose to keep their history (``privacy = 0``)."""
    return lambda ctx: exists().where(borrowers.c.borrowernumber == col, borrowers.c.privacy == 0)


def _patron_expiry(col):
    """The card expiry of the patron ``col`` points at, as a correlated subquery (a clock)."""
    return select(borrowers.c.dateexpiry).where(borrowers.c.borrowernumber == col).scalar_subquery()


def _patron_blockers(col) -> dict:
    """What keeps a patron's own record (photo, files) while the patron is still around."""
    return {
        "open_loan": lambda ctx: exists().where(issues.c.borrowernumber == col),
        "outstanding_balance": lambda ctx: exists().where(
            accountlines.c.borrowernumber == col, accountlines.c.amountoutstanding != 0
        ),
        "protected": lambda ctx: exists().where(
            borrowers.c.borrowernumber == col, borrowers.c.protected == 1
        ),
        "staff_account": lambda ctx: exists().where(
            borrowers.c.borrowernumber == col,
            categories.c.categorycode == borrowers.c.categorycode,
            categories.c.category_type == "S",
        ),
    }


def _unlink(table, col: str, *, keep: tuple[str, ...] = (), clear: tuple[str, ...] = ()):
    """Anonymize by setting the patron column (and ``clear`` text) to NULL, keeping ``keep``
    (Koha's ON UPDATE timestamps, which are also the retention clocks) as they were."""

    def values(ctx: Context) -> dict:
        out: dict = {col: None, **{c: None for c in clear}}
        out.update({k: table.c[k] for k in keep})
        return out

    return Anonymize(
        identifying=lambda ctx: or_(*(table.c[c].isnot(None) for c in (col, *clear))),
        values=values,
    )


def _blank_deleted_patron(ctx: Context) -> dict:
    values: dict = {}
    for name in schema.PERSONAL_COLUMNS:
        values[name] = None if deletedborrowers.c[name].nullable else ""
    values["anonymized"] = 1
    # updated_on is when Koha moved the row here (the retention clock): keep it.
    values["updated_on"] = deletedborrowers.c.updated_on
    return values


def _anonymized_on_either_side(ctx: Context):
    return exists().where(
        borrowers.c.anonymized == 1,
        or_(
            borrowers.c.borrowernumber == relationships.c.guarantee_id,
            borrowers.c.borrowernumber == relationships.c.guarantor_id,
        ),
    )


_INVENTORY_CATEGORIES: tuple[Category, ...] = (
    Category(
        name="last_borrowers",
        source=SOURCE,
        table=items_last_borrower,
        key=items_last_borrower.c.id,
        clock=items_last_borrower.c.created_on,
        patron=items_last_borrower.c.borrowernumber,
        description="Last borrower of each item (StoreLastBorrower)",
    ),
    Category(
        name="patron_change_requests",
        source=SOURCE,
        table=borrower_modifications,
        key=borrower_modifications.c.timestamp,
        clock=borrower_modifications.c.timestamp,
        patron=borrower_modifications.c.borrowernumber,
        description="Patron change requests and unverified self-registrations",
    ),
    Category(
        name="expired_restrictions",
        source=SOURCE,
        table=borrower_debarments,
        key=borrower_debarments.c.borrower_debarment_id,
        clock=borrower_debarments.c.expiration,
        patron=borrower_debarments.c.borrowernumber,
        description="Restrictions (debarments) that have expired",
        # A restriction without an expiry date is indefinite, so still in force.
        scope=lambda ctx: borrower_debarments.c.expiration.isnot(None),
        null_clock_is_error=False,
        strippable=("comment",),
    ),
    Category(
        name="ill_requests",
        source=SOURCE,
        table=illrequests,
        key=illrequests.c.illrequest_id,
        clock=illrequests.c.completed,
        patron=illrequests.c.borrowernumber,
        description="Completed interlibrary loan requests",
        scope=lambda ctx: illrequests.c.completed.isnot(None),
        null_clock_is_error=False,
        anonymize=_unlink(illrequests, "borrowernumber", keep=("updated",), clear=("notesopac",)),
        strippable=("notesopac", "notesstaff"),
    ),
    Category(
        name="ill_comments",
        source=SOURCE,
        table=illcomments,
        key=illcomments.c.illcomment_id,
        clock=illcomments.c.timestamp,
        patron=illcomments.c.borrowernumber,
        description="Comments on interlibrary loan requests",
        blockers={
            "open_request": lambda ctx: exists().where(
                illrequests.c.illrequest_id == illcomments.c.illrequest_id,
                illrequests.c.completed.is_(None),
            ),
        },
    ),
    Category(
        name="purchase_suggestions",
        source=SOURCE,
        table=suggestions,
        key=suggestions.c.suggestionid,
        clock=suggestions.c.suggesteddate,
        patron=suggestions.c.suggestedby,
        description="Purchase suggestions made by patrons",
        blockers={
            "open_suggestion": lambda ctx: suggestions.c.STATUS.in_(OPEN_SUGGESTION_STATUSES),
        },
        anonymize=_unlink(
            suggestions, "suggestedby", keep=("date",), clear=("note", "patronreason")
        ),
        strippable=("note", "patronreason"),
    ),
    Category(
        name="article_requests",
        source=SOURCE,
        table=article_requests,
        key=article_requests.c.id,
        clock=article_requests.c.updated_on,
        patron=article_requests.c.borrowernumber,
        description="Completed or cancelled article (scan) requests",
        scope=lambda ctx: article_requests.c.status.in_(("COMPLETED", "CANCELED")),
        blockers={
            "outstanding_balance": lambda ctx: exists().where(
                accountlines.c.accountlines_id == article_requests.c.debit_id,
                accountlines.c.amountoutstanding != 0,
            ),
        },
        strippable=("patron_notes", "notes"),
    ),
    Category(
        name="bookings",
        source=SOURCE,
        table=bookings,
        key=bookings.c.booking_id,
        clock=bookings.c.end_date,
        patron=bookings.c.patron_id,
        description="Item bookings whose period has ended",
        blockers={
            "open_loan": lambda ctx: exists().where(issues.c.booking_id == bookings.c.booking_id),
        },
    ),
    Category(
        name="recalls",
        source=SOURCE,
        table=recalls,
        key=recalls.c.recall_id,
        clock=recalls.c.completed_date,
        patron=recalls.c.patron_id,
        description="Completed recalls (fulfilled, cancelled, expired)",
        scope=lambda ctx: recalls.c.completed == 1,
        strippable=("notes",),
    ),
    Category(
        name="link_clicks",
        source=SOURCE,
        table=linktracker,
        key=linktracker.c.id,
        clock=linktracker.c.timeclicked,
        patron=linktracker.c.borrowernumber,
        description="Clicks on catalogue links (TrackClicks)",
        anonymize=_unlink(linktracker, "borrowernumber"),
    ),
    Category(
        name="checkout_renewals",
        source=SOURCE,
        table=checkout_renewals,
        key=checkout_renewals.c.renewal_id,
        clock=checkout_renewals.c.timestamp,
        patron=checkout_renewals.c.renewer_id,
        description="Who renewed each loan",
        blockers={
            "keep_history": _keeps_history(checkout_renewals.c.renewer_id),
            "open_loan": lambda ctx: exists().where(
                issues.c.issue_id == checkout_renewals.c.checkout_id
            ),
        },
        anonymize=_unlink(checkout_renewals, "renewer_id"),
        deletable=False,
    ),
    Category(
        name="club_enrollments",
        source=SOURCE,
        table=club_enrollments,
        key=club_enrollments.c.id,
        clock=club_enrollments.c.date_canceled,
        patron=club_enrollments.c.borrowernumber,
        description="Cancelled club enrollments",
        scope=lambda ctx: club_enrollments.c.date_canceled.isnot(None),
        null_clock_is_error=False,
    ),
    Category(
        name="housebound_visits",
        source=SOURCE,
        table=housebound_visit,
        key=housebound_visit.c.id,
        clock=housebound_visit.c.appointment_date,
        patron=housebound_visit.c.borrowernumber,
        description="Past home-delivery visits",
    ),
    Category(
        name="return_claims",
        source=SOURCE,
        table=return_claims,
        key=return_claims.c.id,
        clock=return_claims.c.resolved_on,
        patron=return_claims.c.borrowernumber,
        description="Resolved claims that an item was returned",
        scope=lambda ctx: return_claims.c.resolved_on.isnot(None),
        null_clock_is_error=False,
        blockers={
            "outstanding_balance": lambda ctx: exists().where(
                or_(
                    accountlines.c.issue_id == return_claims.c.issue_id,
                    accountlines.c.old_issue_id == return_claims.c.issue_id,
                ),
                accountlines.c.amountoutstanding != 0,
            ),
        },
        strippable=("notes",),
    ),
    Category(
        name="problem_reports",
        source=SOURCE,
        table=problem_reports,
        key=problem_reports.c.reportid,
        clock=problem_reports.c.created_on,
        patron=problem_reports.c.borrowernumber,
        description="Problem reports sent from the OPAC",
    ),
    Category(
        name="catalog_tickets",
        source=SOURCE,
        table=tickets,
        key=tickets.c.id,
        clock=tickets.c.resolved_date,
        patron=tickets.c.reporter_id,
        description="Resolved catalog concerns reported by patrons",
        scope=lambda ctx: tickets.c.resolved_date.isnot(None),
        null_clock_is_error=False,
    ),
    Category(
        name="patron_messages",
        source=SOURCE,
        table=messages,
        key=messages.c.message_id,
        clock=messages.c.message_date,
        patron=messages.c.borrowernumber,
        description="Messages on patron records (to the patron, or staff notes)",
        strippable=("message",),
    ),
    Category(
        name="patron_tags",
        source=SOURCE,
        table=tags_all,
        key=tags_all.c.tag_id,
        clock=tags_all.c.date_created,
        patron=tags_all.c.borrowernumber,
        description="Who added each tag to a title",
        blockers={"keep_history": _keeps_history(tags_all.c.borrowernumber)},
        anonymize=_unlink(tags_all, "borrowernumber"),
        deletable=False,
    ),
    Category(
        name="patron_photos",
        source=SOURCE,
        table=patronimage,
        key=patronimage.c.borrowernumber,
        clock=_patron_expiry(patronimage.c.borrowernumber),
        patron=patronimage.c.borrowernumber,
        description="Patron photos, by the card's expiry",
        null_clock_is_error=False,
        blockers=_patron_blockers(patronimage.c.borrowernumber),
    ),
    Category(
        name="patron_files",
        source=SOURCE,
        table=borrower_files,
        key=borrower_files.c.file_id,
        clock=_patron_expiry(borrower_files.c.borrowernumber),
        patron=borrower_files.c.borrowernumber,
        description="Files attached to patron records, by the card's expiry",
        null_clock_is_error=False,
        blockers=_patron_blockers(borrower_files.c.borrowernumber),
    ),
    Category(
        name="pseudonymized_transactions",
        source=SOURCE,
        table=pseudonymized_transactions,
        key=pseudonymized_transactions.c.id,
        clock=pseudonymized_transactions.c.datetime,
        # A bcrypt pseudonym under Koha's site key: no borrowernumber to match a legal
        # hold against, so holds cannot name these rows (see the policy's reason).
        patron=None,
        description="Koha's pseudonymized transactions (fixed-key pseudonym)",
        strippable=PSEUDONYM_QUASI_IDENTIFIERS,
    ),
    Category(
        name="deleted_patrons",
        source=SOURCE,
        table=deletedborrowers,
        key=deletedborrowers.c.borrowernumber,
        clock=deletedborrowers.c.updated_on,
        patron=deletedborrowers.c.borrowernumber,
        description="Deleted patrons' records (deletedborrowers)",
        anonymize=Anonymize(
            identifying=lambda ctx: deletedborrowers.c.anonymized == 0,
            values=_blank_deleted_patron,
        ),
    ),
    Category(
        name="guarantor_links",
        source=SOURCE,
        table=relationships,
        key=relationships.c.id,
        clock=_patron_expiry(relationships.c.guarantee_id),
        patron=relationships.c.guarantee_id,
        description="Guarantor links where one side is already anonymized",
        scope=_anonymized_on_either_side,
        null_clock_is_error=False,
    ),
)


# --- the rest of Koha's patron-linked tables (issue 3, continued) ----------------------------
#
# Koha deletes most of these rows when it deletes a patron (foreign keys ON DELETE CASCADE or
# SET NULL), but this pipeline anonymizes expired patrons instead of deleting them, so
# nothing would ever remove them: a registration blanked three years after expiry would keep
# its extended attributes, housebound notes, lists and consents. Each is a category of its
# own, acting once the patron is anonymized (or gone), so verification counts what is left
# of each table.


@dataclass(frozen=True)
class _Dependent:
    """A table whose rows belong to one patron's registration and live as long as it does.

    ``unlink``: set the patron column to NULL instead of deleting the row (the row is the
    library's, e.g. a review on a title or an entry on someone else's list); ``keep``: Koha's
    ON UPDATE timestamps the unlinking must not move (when an entry was added).
    """

    name: str
    table: str
    patron: str
    key: str
    description: str
    unlink: bool = False
    keep: tuple[str, ...] = ()


PATRON_DEPENDENTS: tuple[_Dependent, ...] = (
    _Dependent("patron_alerts", "alert", "borrowernumber", "alertid", "Serial issue alerts"),
    _Dependent(
        "patron_attributes", "borrower_attributes", "borrowernumber", "id", "Extended attributes"
    ),
    _Dependent(
        "messaging_preferences",
        "borrower_message_preferences",
        "borrowernumber",
        "borrower_message_preference_id",
        "Notice and messaging preferences",
    ),
    _Dependent(
        "password_history", "borrower_password_history", "borrowernumber", "id", "Old passwords"
    ),
    _Dependent("patron_discharges", "discharges", "borrower", "discharge_id", "Discharges"),
    _Dependent(
        "housebound_profiles",
        "housebound_profile",
        "borrowernumber",
        "borrowernumber",
        "Home-delivery profiles",
    ),
    _Dependent(
        "housebound_roles",
        "housebound_role",
        "borrowernumber_id",
        "borrowernumber_id",
        "Home-delivery volunteer roles",
    ),
    _Dependent(
        "patron_list_entries",
        "patron_list_patrons",
        "borrowernumber",
        "patron_list_patron_id",
        "Places on staff patron lists",
    ),
    _Dependent(
        "routing_list_entries",
        "subscriptionroutinglist",
        "borrowernumber",
        "routingid",
        "Places on serial routing lists",
    ),
    _Dependent("patron_consents", "patron_consent", "borrowernumber", "id", "Consents"),
    _Dependent("patron_ratings", "ratings", "borrowernumber", "borrowernumber", "Star ratings"),
    _Dependent(
        "patron_reading_lists", "virtualshelves", "owner", "shelfnumber", "Lists a patron owns"
    ),
    _Dependent("list_shares", "virtualshelfshares", "borrowernumber", "id", "Lists shared with"),
    _Dependent(
        "list_entries_added",
        "virtualshelfcontents",
        "borrowernumber",
        "shelfnumber",
        "Who added an entry to a list",
        unlink=True,
        keep=("dateadded",),
    ),
    _Dependent(
        "patron_reviews", "reviews", "borrowernumber", "reviewid", "Who wrote a review", unlink=True
    ),
)


def _registration_gone(col):
    """The patron ``col`` names has been anonymized, or is no longer in ``borrowers``."""
    return lambda ctx: and_(
        col.isnot(None),
        not_(exists().where(borrowers.c.borrowernumber == col, borrowers.c.anonymized == 0)),
    )


def _expiry_or_floor(col):
    """The owner's card expiry; a row whose owner is gone counts as expired since ever."""
    return func.coalesce(_patron_expiry(col), literal(VALID_DATE_FLOOR.date(), Date), type_=Date)


def _dependent_category(d: _Dependent) -> Category:
    table = T[d.table]
    col = table.c[d.patron]
    return Category(
        name=d.name,
        source=SOURCE,
        table=table,
        key=table.c[d.key],
        clock=_expiry_or_floor(col),
        patron=col,
        description=f"{d.description} of anonymized or deleted patrons",
        scope=_registration_gone(col),
        null_clock_is_error=False,
        anonymize=_unlink(table, d.patron, keep=d.keep) if d.unlink else None,
        deletable=not d.unlink,
    )


club_holds = T["club_holds"]
club_hold_links = T["club_holds_to_patron_holds"]
hold_groups = T["hold_groups"]
illbatches = T["illbatches"]
background_jobs = T["background_jobs"]
password_recovery = T["borrower_password_recovery"]
creator_batches = T["creator_batches"]
curbside_pickups = T["curbside_pickups"]
offline_operations = T["pending_offline_operations"]
patron_quota = T["patron_quota"]

# Statuses of a background job that will not run again.
ENDED_JOB_STATUSES = ("finished", "cancelled", "failed")

OWN_CLOCK_CATEGORIES: tuple[Category, ...] = (
    Category(
        name="club_hold_links",
        source=SOURCE,
        table=club_hold_links,
        key=club_hold_links.c.id,
        clock=select(club_holds.c.date_created)
        .where(club_holds.c.id == club_hold_links.c.club_hold_id)
        .scalar_subquery(),
        patron=club_hold_links.c.patron_id,
        description="Patrons a club hold placed holds for, once their hold is closed",
        scope=lambda ctx: and_(
            club_hold_links.c.patron_id.isnot(None),
            not_(exists().where(reserves.c.reserve_id == club_hold_links.c.hold_id)),
        ),
        null_clock_is_error=False,
        strippable=("error_message",),
    ),
    Category(
        name="hold_groups",
        source=SOURCE,
        table=hold_groups,
        key=hold_groups.c.hold_group_id,
        # When the group's last hold closed (Koha moves closed holds to old_reserves); a
        # group with no hold at all is empty and counts as closed since ever.
        clock=func.coalesce(
            select(func.max(old_reserves.c.timestamp))
            .where(old_reserves.c.hold_group_id == hold_groups.c.hold_group_id)
            .scalar_subquery(),
            literal(VALID_DATE_FLOOR, DateTime),
            type_=DateTime,
        ),
        patron=hold_groups.c.borrowernumber,
        description="Groups of holds placed together, once none of them is open",
        scope=lambda ctx: and_(
            hold_groups.c.borrowernumber.isnot(None),
            not_(exists().where(reserves.c.hold_group_id == hold_groups.c.hold_group_id)),
        ),
    ),
    Category(
        name="ill_batches",
        source=SOURCE,
        table=illbatches,
        key=illbatches.c.ill_batch_id,
        # When the batch's last request was completed; a batch with no request yet is in
        # use (NULL clock: never past its window).
        clock=select(func.max(illrequests.c.completed))
        .where(illrequests.c.batch_id == illbatches.c.ill_batch_id)
        .scalar_subquery(),
        patron=illbatches.c.patron_id,
        description="Interlibrary loan batches whose requests are all completed",
        scope=lambda ctx: not_(
            exists().where(
                illrequests.c.batch_id == illbatches.c.ill_batch_id,
                illrequests.c.completed.is_(None),
            )
        ),
        null_clock_is_error=False,
        anonymize=_unlink(illbatches, "patron_id"),
        deletable=False,
    ),
    Category(
        name="background_jobs",
        source=SOURCE,
        table=background_jobs,
        key=background_jobs.c.id,
        clock=background_jobs.c.ended_on,
        patron=background_jobs.c.borrowernumber,
        description="Ended background jobs (their data and context can name patrons)",
        scope=lambda ctx: background_jobs.c.status.in_(ENDED_JOB_STATUSES),
        null_clock_is_error=False,
        strippable=("data", "context"),
    ),
    Category(
        name="password_recovery",
        source=SOURCE,
        table=password_recovery,
        key=password_recovery.c.borrowernumber,
        clock=password_recovery.c.valid_until,
        patron=password_recovery.c.borrowernumber,
        description="Password reset requests, by when their link expires",
    ),
    Category(
        name="card_print_batches",
        source=SOURCE,
        table=creator_batches,
        key=creator_batches.c.label_id,
        clock=creator_batches.c.timestamp,
        patron=creator_batches.c.borrower_number,
        description="Patrons queued in patron card printing batches",
        scope=lambda ctx: creator_batches.c.borrower_number.isnot(None),
    ),
    Category(
        name="curbside_pickups",
        source=SOURCE,
        table=curbside_pickups,
        key=curbside_pickups.c.id,
        clock=curbside_pickups.c.scheduled_pickup_datetime,
        patron=curbside_pickups.c.borrowernumber,
        description="Curbside pickup appointments",
        strippable=("notes",),
    ),
    Category(
        name="offline_circulation",
        source=SOURCE,
        table=offline_operations,
        key=offline_operations.c.operationid,
        clock=offline_operations.c.timestamp,
        # The card number names the patron; a legal hold on that patron keeps the row.
        patron=select(borrowers.c.borrowernumber)
        .where(borrowers.c.cardnumber == offline_operations.c.cardnumber)
        .scalar_subquery(),
        description="Offline circulation uploads never processed",
    ),
    Category(
        name="patron_quotas",
        source=SOURCE,
        table=patron_quota,
        key=patron_quota.c.id,
        clock=patron_quota.c.end_date,
        patron=patron_quota.c.patron_id,
        description="Patron quotas whose period has ended (their usage goes with them)",
    ),
)


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
        *_INVENTORY_CATEGORIES,
        *(_dependent_category(d) for d in PATRON_DEPENDENTS),
        *OWN_CLOCK_CATEGORIES,
    )
}


def check_options(opts: dict) -> list[str]:
    problems = []
    anon = opts.get("anonymous_patron", "preference")
    if not (anon in ("preference", None, "null") or (isinstance(anon, int) and anon > 0)):
        problems.append(
            f"anonymous_patron: expected 'preference', a borrowernumber or null, got {anon!r}"
        )
    problems.extend(check_batching(opts))
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


# --- the personal-data inventory -------------------------------------------------------------
#
# Where Koha keeps a patron's number without a foreign key to ``borrowers``: the one list of
# keyless references (discovery finds the foreign keys itself). Facts from kohastructure.sql
# and Koha's code; each is checked against the live schema (a column that is not there is
# skipped), so the list may name tables this project does not model.
KEYLESS_REFERENCES: tuple[KeylessLink, ...] = (
    KeylessLink(
        "statistics", "borrowernumber", note="left identifying after history is anonymized"
    ),
    KeylessLink("search_history", "userid", note="OPAC searches; userid is the borrowernumber"),
    KeylessLink(
        "action_logs",
        "object",
        scope=("module", PATRON_LOG_MODULES),
        note="the patron an action was about (for patron modules)",
    ),
    KeylessLink("action_logs", "user", note="the staff member who acted"),
    KeylessLink("deletedborrowers", "borrowernumber", note="deleted patrons' full records"),
    KeylessLink(
        "pseudonymized_transactions",
        "hashed_borrowernumber",
        queryable=False,
        note="bcrypt of the borrowernumber under one site key: one pseudonym per patron forever",
    ),
    KeylessLink("borrower_modifications", "borrowernumber", note="0 for self-registrations"),
    KeylessLink("borrower_password_recovery", "borrowernumber"),
    KeylessLink("housebound_visit", "borrowernumber", note="key to housebound_profile"),
    KeylessLink("background_jobs", "borrowernumber", note="staff who queued the job"),
    KeylessLink("saved_sql", "borrowernumber", note="staff who wrote the report"),
    KeylessLink("uploaded_files", "owner"),
    KeylessLink("aqbudgets", "budget_owner_id"),
    KeylessLink("aqbasket", "authorisedby", note="varchar holding a borrowernumber"),
    KeylessLink("curbside_pickups", "delivered_by"),
    KeylessLink("pending_offline_operations", "cardnumber", via="cardnumber"),
    KeylessLink("pending_offline_operations", "userid", via="userid", note="staff login"),
    KeylessLink("problem_reports", "username", via="userid"),
    KeylessLink("subscription", "librarian", via="userid"),
)

INVENTORY = SourceInventory(
    source=SOURCE,
    patron_table="borrowers",
    patron_key="borrowernumber",
    keyless=KEYLESS_REFERENCES,
)
