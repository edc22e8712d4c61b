"""Rows for the Koha tables the inventory added (issue 3): for each category, one row past
its window that the rule must change, one inside its window, and one a blocker keeps.

Shared by the SQLite unit test and the MariaDB integration test, so both run the same
cases. Ids: 1xx past the window (changed), 2xx inside it (kept), 3xx blocked (kept).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from koha_builders import ANON, AS_OF, STAFF, T, add_patron
from patron_privacy.engine import Context, check_schema, enforce_rule, inspect_rule
from patron_privacy.policy import load_policy
from sqlalchemy import insert, select

OLD = AS_OF - timedelta(days=4 * 365)  # past every window
NEW = AS_OF - timedelta(days=2)  # inside every window
P, Q = 50, 51  # P: ordinary patron; Q: card expired long ago, anonymized guarantee
KEEPER = 52  # chose to keep their history (privacy = 0)
LOANED_ITEM = 150


def _d(when: datetime) -> date:
    return when.date()


# A patron's registration extras (issue 3, continued): 1xx belong to Q (anonymized, card
# expired long ago: removed), 2xx to P (active: kept), 3xx to 53 (expired long ago but not
# anonymized yet: kept until expired_patrons anonymizes it).
_OWNER_BY_HUNDRED = {1: Q, 2: P, 3: 53}
# table -> (key column, patron column, keys to write, extra columns)
REGISTRATION_EXTRAS = {
    "alert": ("alertid", "borrowernumber", (101, 201, 301), {"type": "issue", "externalid": "7"}),
    "borrower_attributes": ("id", "borrowernumber", (101, 201, 301), {"code": "SCHOOL"}),
    "borrower_message_preferences": (
        "borrower_message_preference_id",
        "borrowernumber",
        (101, 201, 301),
        {"message_attribute_id": 1},
    ),
    "borrower_password_history": ("id", "borrowernumber", (101, 201), {"password": "$2a$h"}),
    "discharges": ("discharge_id", "borrower", (101, 201), {"needed": OLD}),
    "housebound_profile": (
        "borrowernumber",
        "borrowernumber",
        (Q, P, 53),
        {"day": "1", "frequency": "weekly"},
    ),
    "housebound_role": ("borrowernumber_id", "borrowernumber_id", (Q, P), {}),
    "patron_list_patrons": (
        "patron_list_patron_id",
        "borrowernumber",
        (101, 201),
        {"patron_list_id": 1},
    ),
    "subscriptionroutinglist": ("routingid", "borrowernumber", (101, 201), {"subscriptionid": 1}),
    "patron_consent": ("id", "borrowernumber", (101, 201), {"type": "GDPR_PROCESSING"}),
    "virtualshelves": ("shelfnumber", "owner", (101, 201, 301), {"created_on": OLD}),
    "reviews": ("reviewid", "borrowernumber", (101, 201), {"review": "r", "biblionumber": 1}),
}


def _owner(key: int) -> int:
    return key if key in (Q, P, 53) else _OWNER_BY_HUNDRED[key // 100]


def _registration_extras() -> dict[str, list[dict]]:
    rows = {
        table: [{key: k, col: _owner(k), **extra} for k in keys]
        for table, (key, col, keys, extra) in REGISTRATION_EXTRAS.items()
    }
    # A category default (no patron) is not a patron's preference: never touched.
    rows["borrower_message_preferences"].append(
        {"borrower_message_preference_id": 202, "categorycode": "ADULT", "message_attribute_id": 1}
    )
    rows["ratings"] = [{"borrowernumber": b, "biblionumber": 1, "rating_value": 4} for b in (Q, P)]
    # Shares of P's list: to Q (removed), to KEEPER (kept), an invitation never accepted.
    rows["virtualshelfshares"] = [
        {"id": 101, "shelfnumber": 201, "borrowernumber": Q, "invitekey": "a"},
        {"id": 201, "shelfnumber": 201, "borrowernumber": KEEPER, "invitekey": "b"},
        {"id": 202, "shelfnumber": 201, "borrowernumber": None, "invitekey": "c"},
    ]
    # Entries Q and P added to lists that stay (their shelves: the key).
    rows["virtualshelfcontents"] = [
        {"shelfnumber": 201, "biblionumber": 1, "borrowernumber": Q, "dateadded": OLD},
        {"shelfnumber": 301, "biblionumber": 1, "borrowernumber": P, "dateadded": OLD},
    ]
    return rows


OPEN_HOLD = 900


def _own_clock_rows() -> dict[str, list[dict]]:
    hold = {"borrowernumber": P, "biblionumber": 1, "branchcode": "MAIN"}
    return {
        "reserves": [{"reserve_id": OPEN_HOLD, "hold_group_id": 301, **hold}],
        "old_reserves": [
            {"reserve_id": 801, "hold_group_id": 101, "timestamp": OLD, **hold},
            {"reserve_id": 802, "hold_group_id": 201, "timestamp": NEW, **hold},
        ],
        # 101: last hold closed long ago; 102: empty; 201: closed recently; 301: one open.
        "hold_groups": [{"hold_group_id": k, "borrowernumber": P} for k in (101, 102, 201, 301)],
        "club_holds": [
            {"id": 1, "club_id": 1, "biblio_id": 1, "date_created": OLD},
            {"id": 2, "club_id": 1, "biblio_id": 1, "date_created": NEW},
        ],
        "club_holds_to_patron_holds": [
            {"id": 101, "club_hold_id": 1, "patron_id": P, "error_code": "damaged"},
            {"id": 201, "club_hold_id": 2, "patron_id": P},
            {"id": 301, "club_hold_id": 1, "patron_id": P, "hold_id": OPEN_HOLD},
        ],
        # Batches of illrequests 101 (completed long ago), 201 (recently), 202 (open).
        "illbatches": [
            {"ill_batch_id": k, "name": f"b{k}", "backend": "Standard", "patron_id": P}
            for k in (101, 201, 301)
        ],
        "background_jobs": [
            {"id": 101, "status": "finished", "borrowernumber": STAFF, "ended_on": OLD},
            {"id": 201, "status": "finished", "borrowernumber": STAFF, "ended_on": NEW},
            {"id": 202, "status": "started", "borrowernumber": STAFF, "enqueued_on": OLD},
        ],
        "borrower_password_recovery": [
            {"borrowernumber": P, "uuid": "u1", "valid_until": OLD},
            {"borrowernumber": KEEPER, "uuid": "u2", "valid_until": AS_OF + timedelta(days=1)},
        ],
        "creator_batches": [
            {"label_id": 101, "borrower_number": P, "timestamp": OLD, "creator": "Patroncards"},
            {"label_id": 201, "borrower_number": P, "timestamp": NEW, "creator": "Patroncards"},
            {"label_id": 202, "borrower_number": None, "timestamp": OLD},
        ],
        "curbside_pickups": [
            {
                "id": 101,
                "borrowernumber": P,
                "branchcode": "MAIN",
                "scheduled_pickup_datetime": OLD,
            },
            {
                "id": 201,
                "borrowernumber": P,
                "branchcode": "MAIN",
                "scheduled_pickup_datetime": NEW,
            },
        ],
        "pending_offline_operations": [
            {
                "operationid": k,
                "userid": "staff",
                "branchcode": "MAIN",
                "timestamp": when,
                "action": "issue",
                "barcode": "39000000001",
                "cardnumber": f"2{P:013d}",
            }
            for k, when in ((101, OLD), (201, NEW))
        ],
        "patron_quota": [
            {
                "id": k,
                "description": "ILL",
                "patron_id": P,
                "allocation": 5,
                "start_date": _d(end - timedelta(days=365)),
                "end_date": _d(end),
            }
            for k, end in ((101, OLD), (201, NEW))
        ],
    }


def add_inventory_rows(c) -> None:
    add_patron(c, P, dateexpiry=date(2030, 1, 1))
    add_patron(c, Q, dateexpiry=date(2020, 1, 1), anonymized=1)
    add_patron(c, KEEPER, privacy=0)
    add_patron(c, 53, dateexpiry=date(2020, 1, 1))  # expired long ago, no blockers
    add_patron(c, 54, dateexpiry=date(2020, 1, 1), protected=1)  # expired but protected
    rows = {
        "items_last_borrower": [
            {"id": 101, "itemnumber": 1, "borrowernumber": P, "created_on": OLD},
            {"id": 201, "itemnumber": 2, "borrowernumber": P, "created_on": NEW},
        ],
        "borrower_modifications": [
            {"timestamp": OLD, "verification_token": "t1", "borrowernumber": 0, "surname": "x"},
            {"timestamp": NEW, "verification_token": "", "borrowernumber": P, "surname": "y"},
        ],
        "borrower_debarments": [
            {"borrower_debarment_id": 101, "borrowernumber": P, "expiration": _d(OLD), "type": "M"},
            {"borrower_debarment_id": 201, "borrowernumber": P, "expiration": _d(NEW), "type": "M"},
            {"borrower_debarment_id": 202, "borrowernumber": P, "expiration": None, "type": "M"},
        ],
        "illrequests": [
            {
                "illrequest_id": 101,
                "borrowernumber": P,
                "branchcode": "MAIN",
                "completed": _d(OLD),
                "notesopac": "please",
                "updated": OLD,
                "batch_id": 101,
            },
            {
                "illrequest_id": 201,
                "borrowernumber": P,
                "branchcode": "MAIN",
                "completed": _d(NEW),
                "notesopac": "please",
                "updated": NEW,
                "batch_id": 201,
            },
            {
                "illrequest_id": 202,
                "borrowernumber": P,
                "branchcode": "MAIN",
                "completed": None,
                "placed": _d(OLD),
                "updated": OLD,
                "batch_id": 301,
            },
        ],
        "illcomments": [
            {"illcomment_id": 101, "illrequest_id": 101, "borrowernumber": P, "timestamp": OLD},
            {"illcomment_id": 201, "illrequest_id": 101, "borrowernumber": P, "timestamp": NEW},
            {"illcomment_id": 301, "illrequest_id": 202, "borrowernumber": P, "timestamp": OLD},
        ],
        "suggestions": [
            {
                "suggestionid": 101,
                "suggestedby": P,
                "suggesteddate": _d(OLD),
                "STATUS": "AVAILABLE",
                "note": "n",
                "patronreason": "r",
                "date": OLD,
            },
            {
                "suggestionid": 201,
                "suggestedby": P,
                "suggesteddate": _d(NEW),
                "STATUS": "REJECTED",
                "date": NEW,
            },
            {
                "suggestionid": 301,
                "suggestedby": P,
                "suggesteddate": _d(OLD),
                "STATUS": "ORDERED",
                "date": OLD,
            },
        ],
        "article_requests": [
            {
                "id": 101,
                "borrowernumber": P,
                "biblionumber": 1,
                "status": "COMPLETED",
                "updated_on": OLD,
            },
            {
                "id": 201,
                "borrowernumber": P,
                "biblionumber": 1,
                "status": "COMPLETED",
                "updated_on": NEW,
            },
            {
                "id": 202,
                "borrowernumber": P,
                "biblionumber": 1,
                "status": "PENDING",
                "updated_on": OLD,
            },
        ],
        "bookings": [
            {
                "booking_id": 101,
                "patron_id": P,
                "biblio_id": 1,
                "item_id": 3,
                "pickup_library_id": "MAIN",
                "start_date": OLD,
                "end_date": OLD,
            },
            {
                "booking_id": 201,
                "patron_id": P,
                "biblio_id": 1,
                "item_id": 4,
                "pickup_library_id": "MAIN",
                "start_date": NEW,
                "end_date": NEW,
            },
            {
                "booking_id": 301,
                "patron_id": P,
                "biblio_id": 1,
                "item_id": LOANED_ITEM,
                "pickup_library_id": "MAIN",
                "start_date": OLD,
                "end_date": OLD,
            },
        ],
        "recalls": [
            {
                "recall_id": 101,
                "patron_id": P,
                "biblio_id": 1,
                "completed": 1,
                "completed_date": OLD,
                "status": "fulfilled",
            },
            {
                "recall_id": 201,
                "patron_id": P,
                "biblio_id": 1,
                "completed": 1,
                "completed_date": NEW,
                "status": "cancelled",
            },
            {
                "recall_id": 202,
                "patron_id": P,
                "biblio_id": 1,
                "completed": 0,
                "created_date": OLD,
                "status": "requested",
            },
        ],
        "linktracker": [
            {"id": 101, "biblionumber": 1, "borrowernumber": P, "url": "u", "timeclicked": OLD},
            {"id": 201, "biblionumber": 1, "borrowernumber": P, "url": "u", "timeclicked": NEW},
        ],
        "checkout_renewals": [
            {
                "renewal_id": 101,
                "checkout_id": 5,
                "renewer_id": P,
                "interface": "opac",
                "timestamp": OLD,
            },
            {
                "renewal_id": 201,
                "checkout_id": 5,
                "renewer_id": P,
                "interface": "opac",
                "timestamp": NEW,
            },
            {
                "renewal_id": 301,
                "checkout_id": 900,
                "renewer_id": P,
                "interface": "opac",
                "timestamp": OLD,
            },
            {
                "renewal_id": 302,
                "checkout_id": 6,
                "renewer_id": KEEPER,
                "interface": "opac",
                "timestamp": OLD,
            },
        ],
        "club_enrollments": [
            {"id": 101, "club_id": 1, "borrowernumber": P, "date_canceled": OLD},
            {"id": 201, "club_id": 1, "borrowernumber": P, "date_canceled": NEW},
            {"id": 202, "club_id": 1, "borrowernumber": P, "date_canceled": None},
        ],
        "housebound_visit": [
            {"id": 101, "borrowernumber": P, "appointment_date": _d(OLD)},
            {"id": 201, "borrowernumber": P, "appointment_date": _d(NEW)},
        ],
        "return_claims": [
            {"id": 101, "itemnumber": 7, "borrowernumber": P, "resolved_on": OLD},
            {"id": 201, "itemnumber": 8, "borrowernumber": P, "resolved_on": NEW},
            {"id": 202, "itemnumber": 9, "borrowernumber": P, "resolved_on": None},
        ],
        "problem_reports": [
            {
                "reportid": 101,
                "content": "c",
                "borrowernumber": P,
                "branchcode": "MAIN",
                "created_on": OLD,
            },
            {
                "reportid": 201,
                "content": "c",
                "borrowernumber": P,
                "branchcode": "MAIN",
                "created_on": NEW,
            },
        ],
        "tickets": [
            {"id": 101, "reporter_id": P, "title": "t", "body": "b", "resolved_date": OLD},
            {"id": 201, "reporter_id": P, "title": "t", "body": "b", "resolved_date": NEW},
            {"id": 202, "reporter_id": P, "title": "t", "body": "b", "resolved_date": None},
        ],
        "messages": [
            {
                "message_id": 101,
                "borrowernumber": P,
                "message_type": "L",
                "message": "m",
                "message_date": OLD,
            },
            {
                "message_id": 201,
                "borrowernumber": P,
                "message_type": "B",
                "message": "m",
                "message_date": NEW,
            },
        ],
        "tags_all": [
            {
                "tag_id": 101,
                "borrowernumber": P,
                "biblionumber": 1,
                "term": "t",
                "date_created": OLD,
            },
            {
                "tag_id": 201,
                "borrowernumber": P,
                "biblionumber": 1,
                "term": "t",
                "date_created": NEW,
            },
            {
                "tag_id": 301,
                "borrowernumber": KEEPER,
                "biblionumber": 1,
                "term": "t",
                "date_created": OLD,
            },
        ],
        "patronimage": [
            {"borrowernumber": 53, "mimetype": "image/png", "imagefile": b"png"},
            {"borrowernumber": P, "mimetype": "image/png", "imagefile": b"png"},
            {"borrowernumber": 54, "mimetype": "image/png", "imagefile": b"png"},
        ],
        "borrower_files": [
            {
                "file_id": 101,
                "borrowernumber": 53,
                "file_name": "f",
                "file_type": "t",
                "file_content": b"x",
            },
            {
                "file_id": 201,
                "borrowernumber": P,
                "file_name": "f",
                "file_type": "t",
                "file_content": b"x",
            },
            {
                "file_id": 301,
                "borrowernumber": 54,
                "file_name": "f",
                "file_type": "t",
                "file_content": b"x",
            },
        ],
        "pseudonymized_transactions": [
            {"id": 101, "hashed_borrowernumber": "$2a$x", "datetime": OLD, "branchcode": "MAIN"},
            {"id": 201, "hashed_borrowernumber": "$2a$x", "datetime": NEW, "branchcode": "MAIN"},
        ],
        "deletedborrowers": [
            {
                "borrowernumber": 101,
                "surname": "gone",
                "categorycode": "ADULT",
                "branchcode": "MAIN",
                "updated_on": OLD,
            },
            {
                "borrowernumber": 201,
                "surname": "gone",
                "categorycode": "ADULT",
                "branchcode": "MAIN",
                "updated_on": NEW,
            },
        ],
        "borrower_relationships": [
            {"id": 101, "guarantor_id": P, "guarantee_id": Q, "relationship": "parent"},
            {"id": 201, "guarantor_id": P, "guarantee_id": KEEPER, "relationship": "parent"},
        ],
    }
    rows.update(_registration_extras())
    rows.update(_own_clock_rows())
    for table, table_rows in rows.items():
        for row in table_rows:  # one by one: the rows set different columns
            c.execute(insert(T[table]), [row])
    c.execute(
        insert(T["issues"]),
        [
            {
                "issue_id": 900,
                "borrowernumber": P,
                "itemnumber": LOANED_ITEM,
                "issuedate": NEW,
                "date_due": AS_OF + timedelta(days=10),
                "booking_id": 301,  # the booking this loan fulfils
            }
        ],
    )


# What each category leaves: (table, key column, check) -> ids still present / still linked.
EXPECTED_KEYS_LEFT = {
    "last_borrowers": ("items_last_borrower", "id", {201}),
    "patron_change_requests": ("borrower_modifications", "verification_token", {""}),
    "expired_restrictions": ("borrower_debarments", "borrower_debarment_id", {201, 202}),
    "ill_comments": ("illcomments", "illcomment_id", {201, 301}),
    "article_requests": ("article_requests", "id", {201, 202}),
    "bookings": ("bookings", "booking_id", {201, 301}),
    "recalls": ("recalls", "recall_id", {201, 202}),
    "club_enrollments": ("club_enrollments", "id", {201, 202}),
    "housebound_visits": ("housebound_visit", "id", {201}),
    "return_claims": ("return_claims", "id", {201, 202}),
    "problem_reports": ("problem_reports", "reportid", {201}),
    "catalog_tickets": ("tickets", "id", {201, 202}),
    "patron_messages": ("messages", "message_id", {201}),
    "patron_photos": ("patronimage", "borrowernumber", {P, 54}),
    "patron_files": ("borrower_files", "file_id", {201, 301}),
    "pseudonymized_transactions": ("pseudonymized_transactions", "id", {201}),
    "deleted_patrons": ("deletedborrowers", "borrowernumber", {201}),
    "guarantor_links": ("borrower_relationships", "id", {201}),
    "patron_alerts": ("alert", "alertid", {201, 301}),
    "patron_attributes": ("borrower_attributes", "id", {201, 301}),
    "messaging_preferences": (
        "borrower_message_preferences",
        "borrower_message_preference_id",
        {201, 202, 301},
    ),
    "password_history": ("borrower_password_history", "id", {201}),
    "patron_discharges": ("discharges", "discharge_id", {201}),
    "housebound_profiles": ("housebound_profile", "borrowernumber", {P, 53}),
    "housebound_roles": ("housebound_role", "borrowernumber_id", {P}),
    "patron_list_entries": ("patron_list_patrons", "patron_list_patron_id", {201}),
    "routing_list_entries": ("subscriptionroutinglist", "routingid", {201}),
    "patron_consents": ("patron_consent", "id", {201}),
    "patron_ratings": ("ratings", "borrowernumber", {P}),
    "patron_reading_lists": ("virtualshelves", "shelfnumber", {201, 301}),
    "list_shares": ("virtualshelfshares", "id", {201, 202}),
    "club_hold_links": ("club_holds_to_patron_holds", "id", {201, 301}),
    "hold_groups": ("hold_groups", "hold_group_id", {201, 301}),
    "background_jobs": ("background_jobs", "id", {201, 202}),
    "password_recovery": ("borrower_password_recovery", "borrowernumber", {KEEPER}),
    "card_print_batches": ("creator_batches", "label_id", {201, 202}),
    "curbside_pickups": ("curbside_pickups", "id", {201}),
    "offline_circulation": ("pending_offline_operations", "operationid", {201}),
    "patron_quotas": ("patron_quota", "id", {201}),
}
# Anonymized categories: (table, key, patron column) -> ids still linked to a patron.
EXPECTED_STILL_LINKED = {
    "ill_requests": ("illrequests", "illrequest_id", "borrowernumber", {201, 202}),
    "purchase_suggestions": ("suggestions", "suggestionid", "suggestedby", {201, 301}),
    "link_clicks": ("linktracker", "id", "borrowernumber", {201}),
    "checkout_renewals": ("checkout_renewals", "renewal_id", "renewer_id", {201, 301, 302}),
    "patron_tags": ("tags_all", "tag_id", "borrowernumber", {201, 301}),
    "list_entries_added": ("virtualshelfcontents", "shelfnumber", "borrowernumber", {301}),
    "patron_reviews": ("reviews", "reviewid", "borrowernumber", {201}),
    "ill_batches": ("illbatches", "ill_batch_id", "patron_id", {201, 301}),
}

NEW_CATEGORIES = set(EXPECTED_KEYS_LEFT) | set(EXPECTED_STILL_LINKED)


def run_inventory_rules(engine) -> dict:
    rules = [r for r in load_policy().rules_for("koha") if r.category.name in NEW_CATEGORIES]
    assert {r.category.name for r in rules} == NEW_CATEGORIES
    ctx = Context(as_of=AS_OF, anonymous_patron=ANON)
    with engine.connect() as c:
        check_schema(c, rules, ctx)
    before = {r.category.name: inspect_rule(engine, r, ctx, "dry_run") for r in rules}
    after = {r.category.name: enforce_rule(engine, r, ctx, batch_size=2) for r in rules}
    verify = {r.category.name: inspect_rule(engine, r, ctx, "verify") for r in rules}
    return {"before": before, "after": after, "verify": verify}


def check_end_state(engine, results) -> None:
    with engine.connect() as c:
        for cat, (table, key, left) in EXPECTED_KEYS_LEFT.items():
            got = set(c.execute(select(T[table].c[key])).scalars())
            assert got == left, (cat, got)
        for cat, (table, key, col, linked) in EXPECTED_STILL_LINKED.items():
            t = T[table]
            got = set(c.execute(select(t.c[key]).where(t.c[col].isnot(None))).scalars())
            assert got == linked, (cat, got)
    for name, r in results["verify"].items():
        assert r.remaining == 0, (name, r)
        assert r.data_errors == 0, (name, r)
    for name, r in results["after"].items():
        assert r.changed == results["before"][name].remaining, name
