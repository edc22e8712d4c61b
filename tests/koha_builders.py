"""Hand-built Koha states for tests: every row placed on purpose, so each test
knows exactly which records are inside their window, blocked or eligible."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from patron_privacy.sources.koha import schema
from sqlalchemy import delete, insert

T = schema.metadata.tables
AS_OF = datetime(2026, 11, 30)
ANON = 1
STAFF = 2


def make_koha(engine, *, anonymous_patron: int | None = ANON) -> None:
    schema.create_schema(engine)
    with engine.begin() as c:
        c.execute(insert(T["branches"]), [{"branchcode": "MAIN", "branchname": "Main Library"}])
        c.execute(
            insert(T["categories"]),
            [
                {"categorycode": "ADULT", "description": "Adult", "category_type": "A"},
                {"categorycode": "CHILD", "description": "Child", "category_type": "C"},
                {"categorycode": "STAFF", "description": "Staff", "category_type": "S"},
                {"categorycode": "ANON", "description": "Anonymous", "category_type": "X"},
            ],
        )
        c.execute(insert(T["itemtypes"]), [{"itemtype": "BK", "description": "Book"}])
        c.execute(
            insert(T["biblio"]),
            [{"biblionumber": 1, "title": "A Book", "datecreated": date(2020, 1, 1)}],
        )
        c.execute(
            insert(T["items"]),
            [
                {
                    "itemnumber": i,
                    "biblionumber": 1,
                    "barcode": f"3900000{i:05d}",
                    "itype": "BK",
                    "homebranch": "MAIN",
                    "holdingbranch": "MAIN",
                    "ccode": "FIC",
                }
                for i in range(1, 201)
            ],
        )
        c.execute(
            insert(T["borrowers"]),
            [
                {
                    "borrowernumber": ANON,
                    "surname": "Anonymous",
                    "categorycode": "ANON",
                    "branchcode": "MAIN",
                },
                {
                    "borrowernumber": STAFF,
                    "surname": "Staffer",
                    "categorycode": "STAFF",
                    "branchcode": "MAIN",
                },
            ],
        )
        if anonymous_patron is not None:
            c.execute(
                insert(T["systempreferences"]),
                [{"variable": "AnonymousPatron", "value": str(anonymous_patron)}],
            )


def clear_activity(engine) -> None:
    with engine.begin() as c:
        for name in (
            "accountlines",
            "statistics",
            "old_issues",
            "issues",
            "old_reserves",
            "reserves",
            "search_history",
            "message_queue",
            "action_logs",
            "borrower_relationships",
        ):
            c.execute(delete(T[name]))
        c.execute(delete(T["borrowers"]).where(T["borrowers"].c.borrowernumber > STAFF))


def add_patron(c, bn: int, **kw) -> None:
    row = {
        "borrowernumber": bn,
        "cardnumber": f"2{bn:013d}",
        "userid": f"user{bn}",
        "surname": f"Surname{bn}",
        "firstname": f"First{bn}",
        "email": f"p{bn}@example.org",
        "phone": f"860-555-{bn % 10000:04d}",
        "address": f"{bn} Main St",
        "city": "Hartford",
        "dateofbirth": date(1980, 5, 17),
        "categorycode": "ADULT",
        "branchcode": "MAIN",
        "dateenrolled": date(2019, 1, 1),
        "dateexpiry": date(2030, 1, 1),
        "privacy": 1,
        "protected": 0,
        "anonymized": 0,
    }
    row.update(kw)
    c.execute(insert(T["borrowers"]), [row])


def add_old_issue(c, issue_id: int, bn: int | None, returned, *, item: int = 1, note=None) -> None:
    issued = (
        (returned - timedelta(days=14)) if isinstance(returned, datetime) else datetime(2020, 1, 1)
    )
    c.execute(
        insert(T["old_issues"]),
        [
            {
                "issue_id": issue_id,
                "borrowernumber": bn,
                "itemnumber": item,
                "issuedate": issued,
                "date_due": issued + timedelta(days=21),
                "returndate": returned,
                "branchcode": "MAIN",
                "note": note,
            }
        ],
    )


def add_fine(
    c, line_id: int, bn: int, issue_id: int | None, outstanding: float, when: datetime
) -> None:
    c.execute(
        insert(T["accountlines"]),
        [
            {
                "accountlines_id": line_id,
                "borrowernumber": bn,
                "old_issue_id": issue_id,
                "date": when,
                "amount": 2.5,
                "amountoutstanding": outstanding,
                "debit_type_code": "OVERDUE",
                "interface": "intranet",
                "branchcode": "MAIN",
            }
        ],
    )


def loan_scenario(c, loans: list[dict], keep_history: set[int], held: set[int]) -> dict:
    """Patrons 10-15 and the given loans (``patron``, ``days_ago`` or None, optional
    ``hours``, ``fine_owed``); returns each loan's expected patron after returned_loans
    is enforced at AS_OF: the anonymous patron where eligible, its own otherwise."""
    cutoff = AS_OF - timedelta(days=30)
    expected = {}
    for bn in range(10, 16):
        add_patron(c, bn, privacy=0 if bn in keep_history else 1)
    for i, ln in enumerate(loans, 1):
        ret = (
            None
            if ln["days_ago"] is None
            else AS_OF - timedelta(days=ln["days_ago"], hours=-ln.get("hours", 0))
        )
        add_old_issue(c, i, ln["patron"], ret)
        if ln["fine_owed"]:
            add_fine(c, i, ln["patron"], i, 1.0, AS_OF - timedelta(days=100))
        eligible = (
            ret is not None
            and ret < cutoff
            and ln["patron"] not in keep_history
            and not ln["fine_owed"]
            and ln["patron"] not in held
        )
        expected[i] = ANON if eligible else ln["patron"]
    return expected
