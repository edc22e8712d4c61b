"""Hand-built Evergreen states for tests, on a real PostgreSQL: every row placed on purpose,
so each test knows exactly which records are inside their window, blocked or eligible.

Times are naive library-local datetimes; the engines made here compare them in the
library's zone, as a run does (``use_time_zone``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import date, datetime, timedelta

from patron_privacy import connections
from patron_privacy.sources.evergreen import schema as S
from patron_privacy.sources.evergreen.connector import use_time_zone
from sqlalchemy import create_engine, delete, insert, text

PG_SERVER = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
ZONE = "America/New_York"
AS_OF = datetime(2026, 11, 30)
STAFF = 1
BRANCH = 2
PATRONS_GRP, STAFF_GRP, CIRCULATORS_GRP = 2, 3, 4
LOGIN = 1


@contextlib.contextmanager
def pg_database(prefix: str = "pp_eg"):
    """A fresh PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    server = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with server.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with server.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def engine_for(url: str):
    eng = connections.engine_for_url(url)
    use_time_zone(eng, ZONE)
    return eng


def airflow_uri(url: str) -> str:
    """The same database as an ``AIRFLOW_CONN_*`` URI."""
    return url.replace("postgresql+psycopg2://", "postgres://")


def register_validation_suite(monkeypatch) -> None:
    """``enforce`` validates a source first; the Evergreen suite lives with the connector
    (``sources/evergreen/expectations.py``). Registered here until the registry names it."""
    try:
        from patron_privacy import validation
    except ImportError:  # pragma: no cover - a tree without the validation step
        return
    registry = getattr(validation, "SUITES", None)
    if isinstance(registry, dict) and "evergreen" not in registry:
        monkeypatch.setitem(registry, "evergreen", "patron_privacy.sources.evergreen.expectations")


def make_evergreen(engine) -> None:
    S.create_schema(engine)
    with engine.begin() as c:
        c.execute(
            insert(S.org_unit_type),
            [
                {"id": 1, "name": "Consortium", "opac_label": "All", "depth": 0, "parent": None},
                {"id": 2, "name": "Branch", "opac_label": "This Branch", "depth": 1, "parent": 1},
            ],
        )
        c.execute(
            insert(S.org_unit),
            [
                {
                    "id": 1,
                    "parent_ou": None,
                    "ou_type": 1,
                    "shortname": "CONS",
                    "name": "Consortium",
                },
                {"id": BRANCH, "parent_ou": 1, "ou_type": 2, "shortname": "BR1", "name": "Main"},
            ],
        )
        c.execute(
            insert(S.grp_tree),
            [
                {"id": 1, "name": "Users", "parent": None},
                {"id": PATRONS_GRP, "name": "Patrons", "parent": 1},
                {"id": STAFF_GRP, "name": "Staff", "parent": 1},
                {"id": CIRCULATORS_GRP, "name": "Circulators", "parent": STAFF_GRP},
            ],
        )
        c.execute(insert(S.perm_list), [{"id": 1, "code": "STAFF_LOGIN"}])
        c.execute(insert(S.grp_perm_map), [{"grp": STAFF_GRP, "perm": 1, "depth": 0}])
        c.execute(
            insert(S.usr_activity_type),
            [{"id": LOGIN, "ewhat": "login", "label": "Login", "egroup": "authen"}],
        )
        c.execute(insert(S.copy_location), [{"id": 1, "name": "Stacks", "owning_lib": BRANCH}])
        c.execute(
            insert(S.call_number),
            [
                {
                    "id": 1,
                    "creator": STAFF,
                    "editor": STAFF,
                    "record": 1,
                    "owning_lib": BRANCH,
                    "label": "FIC A",
                    "label_class": 1,
                }
            ],
        )
        c.execute(
            insert(S.copy),
            [
                {
                    "id": i,
                    "circ_lib": BRANCH,
                    "creator": STAFF,
                    "editor": STAFF,
                    "call_number": 1,
                    "location": 1,
                    "loan_duration": 2,
                    "fine_level": 2,
                    "barcode": f"3900000{i:05d}",
                    "circ_modifier": "book",
                }
                for i in range(1, 201)
            ],
        )
        c.execute(
            insert(S.hold_request_cancel_cause), [{"id": 1, "label": "Untargeted expiration"}]
        )
        add_patron(c, STAFF, profile=CIRCULATORS_GRP, expire=datetime(2020, 1, 1))


def clear_activity(engine) -> None:
    with engine.begin() as c:
        for t in (
            S.aged_circulation,
            S.aged_hold_request,
            S.aged_billing,
            S.aged_payment,
            S.circulation,
            S.hold_request,
            S.payment,
            S.billing,
            S.grocery,
            S.usr_activity,
            S.usr_setting,
            S.usr_grp_map,
        ):
            c.execute(delete(t))
        c.execute(text("UPDATE actor.usr SET mailing_address = NULL, billing_address = NULL"))
        c.execute(delete(S.card).where(S.card.c.usr != STAFF))
        c.execute(delete(S.usr_address).where(S.usr_address.c.usr != STAFF))
        c.execute(delete(S.usr).where(S.usr.c.id != STAFF))


def add_patron(c, uid: int, *, profile: int = PATRONS_GRP, expire=datetime(2030, 1, 1), **kw):
    """A patron with a card and a mailing address, every personal field filled."""
    row = {
        "id": uid,
        "profile": profile,
        "usrname": f"user{uid}",
        "email": f"p{uid}@example.org",
        "ident_type": 1,
        "ident_value": f"DL{uid:07d}",
        "first_given_name": f"First{uid}",
        "family_name": f"Family{uid}",
        "day_phone": f"860-555-{uid % 10000:04d}",
        "home_ou": BRANCH,
        "dob": date(1980, 5, 17),
        "create_date": datetime(2015, 1, 1),
        "expire_date": expire,
    }
    row.update(kw)
    c.execute(insert(S.usr), [row])
    c.execute(insert(S.card), [{"id": uid, "usr": uid, "barcode": f"2{uid:013d}", "active": True}])
    c.execute(
        insert(S.usr_address),
        [
            {
                "id": uid,
                "usr": uid,
                "street1": f"{uid} Main St",
                "city": "Hartford",
                "state": "CT",
                "country": "US",
                "post_code": "06103",
            }
        ],
    )
    c.execute(
        text("UPDATE actor.usr SET card = :id, mailing_address = :id WHERE id = :id"), {"id": uid}
    )


def add_circ(
    c,
    cid: int,
    uid: int,
    finished: datetime | None,
    *,
    parent: int | None = None,
    copy: int = 1,
    start: datetime | None = None,
    checkin: datetime | None = None,
    returned: bool = True,
) -> None:
    """One circulation; ``finished`` is xact_finish (None: still open)."""
    start = start or ((finished or AS_OF) - timedelta(days=14))
    if checkin is None and returned:
        checkin = finished
    c.execute(
        insert(S.circulation),
        [
            {
                "id": cid,
                "usr": uid,
                "xact_start": start,
                "xact_finish": finished,
                "target_copy": copy,
                "circ_lib": BRANCH,
                "circ_staff": STAFF,
                "renewal_remaining": 2,
                "grace_period": timedelta(days=1),
                "due_date": start + timedelta(days=21),
                "checkin_time": checkin,
                "duration_rule": "default",
                "recurring_fine_rule": "default",
                "max_fine_rule": "default",
                "stop_fines": "CHECKIN" if checkin else None,
                "parent_circ": parent,
                "copy_location": 1,
            }
        ],
    )


def add_chain(c, first_id: int, uid: int, finishes: list, *, copy: int = 1) -> list[int]:
    """A loan and its renewals: one circulation per entry of ``finishes``, each renewing
    the one before it."""
    ids = []
    parent = None
    for i, fin in enumerate(finishes):
        cid = first_id + i
        start = (fin or AS_OF) - timedelta(days=14) if fin else None
        add_circ(c, cid, uid, fin, parent=parent, copy=copy, start=start)
        ids.append(cid)
        parent = cid
    return ids


def add_hold(
    c, hid: int, uid: int, *, fulfilled=None, cancelled=None, phone: str | None = None
) -> None:
    c.execute(
        insert(S.hold_request),
        [
            {
                "id": hid,
                "usr": uid,
                "requestor": uid,
                "request_time": (fulfilled or cancelled or AS_OF) - timedelta(days=10),
                "fulfillment_time": fulfilled,
                "cancel_time": cancelled,
                "cancel_cause": 1 if cancelled else None,
                "target": 1,
                "request_lib": BRANCH,
                "selection_ou": BRANCH,
                "pickup_lib": BRANCH,
                "hold_type": "T",
                "phone_notify": phone,
            }
        ],
    )


def add_bill(c, xid: int, uid: int, finished: datetime | None, *, amount="2.50", note=None):
    """A fee not tied to a loan (money.grocery), billed, and paid in cash when finished."""
    start = (finished or AS_OF) - timedelta(days=20)
    c.execute(
        insert(S.grocery),
        [
            {
                "id": xid,
                "usr": uid,
                "xact_start": start,
                "xact_finish": finished,
                "billing_location": BRANCH,
                "note": note,
            }
        ],
    )
    c.execute(
        insert(S.billing),
        [
            {
                "id": xid,
                "xact": xid,
                "billing_ts": start,
                "amount": amount,
                "billing_type": "Lost card",
                "btype": 1,
                "create_date": start,
            }
        ],
    )
    if finished is not None:
        c.execute(
            insert(S.credit_card_payment),
            [
                {
                    "id": xid,
                    "xact": xid,
                    "payment_ts": finished,
                    "amount": amount,
                    "amount_collected": amount,
                    "accepting_usr": STAFF,
                    "cc_number": "4111",
                    "approval_code": "A1",
                }
            ],
        )


def add_activity(c, aid: int, uid: int | None, when: datetime) -> None:
    c.execute(
        insert(S.usr_activity),
        [{"id": aid, "usr": uid, "etype": LOGIN, "event_time": when, "event_data": "opac"}],
    )
