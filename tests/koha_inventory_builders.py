"""Rows for the Koha tables the inventory added (issue 3): for each category, one row past
its window that the rule must change, one inside its window, and one a blocker keeps.

Shared by the SQLite unit test and the MariaDB integration test, so both run the same
cases. Ids: 1xx past the window (changed), 2xx inside it (kept), 3xx blocked (kept).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from koha_builders import ANON, AS_OF, T, add_patron
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
            },
            {
                "illrequest_id": 201,
                "borrowernumber": P,
                "branchcode": "MAIN",
                "completed": _d(NEW),
                "notesopac": "please",
                "updated": NEW,
            },
            {
                "illrequest_id": 202,
                "borrowernumber": P,
                "branchcode": "MAIN",
                "completed": None,
                "placed": _d(OLD),
                "updated": OLD,
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
}
# Anonymized categories: (table, key, patron column) -> ids still linked to a patron.
EXPECTED_STILL_LINKED = {
    "ill_requests": ("illrequests", "illrequest_id", "borrowernumber", {201, 202}),
    "purchase_suggestions": ("suggestions", "suggestionid", "suggestedby", {201, 301}),
    "link_clicks": ("linktracker", "id", "borrowernumber", {201}),
    "checkout_renewals": ("checkout_renewals", "renewal_id", "renewer_id", {201, 301, 302}),
    "patron_tags": ("tags_all", "tag_id", "borrowernumber", {201, 301}),
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
