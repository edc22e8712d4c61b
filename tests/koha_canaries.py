"""Known personal values ("canaries") planted in a synthetic Koha on MariaDB, for the
leak tests of runs on a real server (the distributed run, the fault runs): whatever the
run leaves behind is searched for every form of them (``canary_needles``)."""

from __future__ import annotations

from datetime import date

from leak_scan import digit_forms
from sqlalchemy import create_engine, text

# Planted over a synthetic patron whose card expired past the window (the night
# anonymizes it) and over an active one (the night keeps it): every form they could
# take in an artifact is a needle.
PAST = {
    "surname": "Zqxserverpastsurname",
    "firstname": "Zqxserverpastfirst",
    "cardnumber": "29977100009917",
    "userid": "zqxserver.past.login",
    "email": "zqxserver.past@example.org",
    "phone": "860-555-9917",
    "address": "77 Zqxserverpast Way",
    "borrowernotes": "Zqxserverpastnote: asked about a protective order",
}
INSIDE = {
    "surname": "Zqxserverinsidesurname",
    "firstname": "Zqxserverinsidefirst",
    "cardnumber": "29977100009924",
    "userid": "zqxserver.inside.login",
    "email": "zqxserver.inside@example.org",
    "phone": "(203) 555-9924",
    "address": "12 Zqxserverinside Court",
    "borrowernotes": "Zqxserverinsidenote: reads up on a custody hearing",
}
PAST_BIRTH, INSIDE_BIRTH = date(1961, 7, 23), date(1988, 2, 9)
TEXTS = {
    "old_issues.note": "Zqxserver loan note: a letter was left inside",
    "search_history.query_desc": "zqxserver-search: eviction notice help",
    "message_queue.content": "Dear Zqxserverpastfirst, your hold is waiting",
    "action_logs.info": "zqxserver-log changed the address of Zqxserverpastsurname",
}

# where -> (table, column, the column that orders rows from oldest to newest)
PLANTED = {
    "old_issues.note": ("old_issues", "note", "returndate"),
    "search_history.query_desc": ("search_history", "query_desc", "time"),
    "message_queue.content": ("message_queue", "content", "time_queued"),
    "action_logs.info": ("action_logs", "info", "timestamp"),
}


def canary_needles() -> list[str]:
    out = ["zqxserver"]  # the stem: any fragment of any canary
    for patron in (PAST, INSIDE):
        for key, value in patron.items():
            out += digit_forms(value) if key in ("phone", "cardnumber") else [value]
    for d in (PAST_BIRTH, INSIDE_BIRTH):
        out += [d.isoformat(), d.strftime("%Y%m%d"), d.strftime("%m/%d/%Y")]
    return [*dict.fromkeys([*out, *TEXTS.values()])]


def plant_canaries(url: str) -> dict[str, int]:
    """Canaries over rows of a synthetic Koha (``synthetic.build_koha``) on MariaDB: the
    first expired patron nothing blocks (the night anonymizes it) and the first active
    one with a recent loan (the night keeps it), and free text in their activity.
    Deterministic for a given library. Returns the two patrons' ids."""
    expired = """
        SELECT b.borrowernumber FROM borrowers b JOIN categories c USING (categorycode)
        WHERE b.dateexpiry < '2023-11-30' AND b.anonymized = 0 AND b.protected = 0
          AND c.category_type <> 'S'
          AND b.borrowernumber <> (SELECT CAST(value AS SIGNED) FROM systempreferences
                                   WHERE variable = 'AnonymousPatron')
          AND NOT EXISTS (SELECT 1 FROM issues i WHERE i.borrowernumber = b.borrowernumber)
          AND NOT EXISTS (SELECT 1 FROM accountlines a WHERE a.borrowernumber = b.borrowernumber
                          AND a.amountoutstanding <> 0)
          AND NOT EXISTS (SELECT 1 FROM reserves r WHERE r.borrowernumber = b.borrowernumber)
          AND NOT EXISTS (SELECT 1 FROM borrower_relationships g
                          WHERE g.guarantor_id = b.borrowernumber)
        ORDER BY b.borrowernumber LIMIT 1
    """
    active = """
        SELECT b.borrowernumber FROM borrowers b
        WHERE b.dateexpiry > '2027-01-01' AND EXISTS (
            SELECT 1 FROM old_issues o WHERE o.borrowernumber = b.borrowernumber
              AND o.returndate >= '2026-11-15')
        ORDER BY b.borrowernumber LIMIT 1
    """
    engine = create_engine(url)
    try:
        with engine.begin() as c:
            past = c.execute(text(expired)).scalar_one()
            inside = c.execute(text(active)).scalar_one()
            for bn, values, birth in ((past, PAST, PAST_BIRTH), (inside, INSIDE, INSIDE_BIRTH)):
                sets = ", ".join(f"{k} = :{k}" for k in values)
                c.execute(
                    text(f"UPDATE borrowers SET {sets}, dateofbirth = :dob "
                         "WHERE borrowernumber = :bn"),
                    {**values, "dob": birth, "bn": bn},
                )  # fmt: skip
            # Free text on the oldest row (past its window) and the newest (inside it).
            for where, (table, column, key) in PLANTED.items():
                for order in ("ASC", "DESC"):
                    n = c.execute(
                        text(f"UPDATE {table} SET {column} = :v ORDER BY {key} {order} LIMIT 1"),
                        {"v": TEXTS[where]},
                    ).rowcount
                    assert n == 1, f"no synthetic row to plant {where} in"
    finally:
        engine.dispose()
    return {"past": past, "inside": inside}
