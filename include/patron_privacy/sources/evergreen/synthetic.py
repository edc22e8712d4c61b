"""A deterministic, entirely invented Evergreen library for tests, demos and benchmarks.

The same library as the Koha generator describes, told in Evergreen's tables: a consortium
with one system and four branches, Evergreen's stock permission groups (Patrons; Staff and
its Circulators and Catalogers), a catalogue of copies, and patrons whose cards are issued,
renewed and left to lapse over ``years`` before ``as_of``. Every value comes from
``random.Random(seed)`` and a seeded ``Faker``; nothing reads the clock, so one
``(patrons, years, seed, as_of)`` always gives identical tables.

What it holds, so every retention rule has something to bite on:

* Circulations in visits while a card is valid; 21-day loans, a quarter renewed once or
  twice (each renewal a new circulation whose ``parent_circ`` is the one it renews, the
  renewed one checked in with ``stop_fines = 'RENEW'``), late returns billed as overdue
  fines (most paid: ``xact_finish`` set when nothing is owed), a few lost items, and loans
  still out on ``as_of``.
* Holds fulfilled, cancelled (with a cause) or still open, some with a phone number to
  call; some patrons keep their hold history (``history.hold.retention_start``).
* Fees not tied to a loan (``money.grocery``: lost cards, printing), paid by cash, check or
  card, or forgiven, a few still owed.
* Activity (logins and verifications), for some lapsed patrons after their card expired.
* Staff accounts, a few barred patrons, juveniles with a guardian.

Times are the library's local time (``timezone``), written with their zone.
The generator logs counts only, never a generated personal value.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker
from sqlalchemy import Connection, Engine, create_engine, func, inspect, select

from . import schema as S

__all__ = ["BRANCHES", "build_evergreen", "build_evergreen_from_url"]

log = logging.getLogger(__name__)

# id, shortname, name, post codes of its neighbourhood, share of patrons
BRANCHES = (
    (4, "BR1", "Central Library", ("06103", "06105", "06106"), 0.4),
    (5, "BR2", "North Branch Library", ("06112", "06120"), 0.2),
    (6, "BR3", "Eastside Branch Library", ("06108", "06118"), 0.2),
    (7, "BR4", "West End Branch Library", ("06107", "06119"), 0.2),
)
CONSORTIUM, SYSTEM = 1, 2
USERS, PATRONS, STAFF, CATALOGERS, CIRCULATORS = 1, 2, 3, 4, 5
STAFF_LOGIN = 2
ADMIN = 1  # the first account, as on a stock install

LOAN_DAYS = 21
# circ_modifier, share of copies, daily fine, maximum fine, location
MODIFIERS = (
    ("book", 0.55, Decimal("0.25"), Decimal("5.00"), 1),
    ("juvenile", 0.2, Decimal("0.10"), Decimal("2.00"), 2),
    ("dvd", 0.12, Decimal("1.00"), Decimal("10.00"), 3),
    ("audiobook", 0.08, Decimal("0.25"), Decimal("5.00"), 3),
    ("magazine", 0.05, Decimal("0.10"), Decimal("2.00"), 4),
)
LOCATIONS = ((1, "Stacks"), (2, "Children's Room"), (3, "Media"), (4, "Periodicals"))
ACTIVITY_TYPES = (
    (1, "login", "opensrf", "authen", "Login via opensrf"),
    (9, "verify", "opensrf", "authz", "Verification via opensrf"),
    (15, "verify", "sip2", "authz", "SIP2 User Verification"),
)
CANCEL_CAUSES = (
    (1, "Untargeted expiration", False),
    (2, "Hold Shelf expiration", False),
    (3, "Patron via phone", True),
    (4, "Patron in person", True),
    (5, "Staff forced", True),
    (6, "Patron via OPAC", False),
)
GROCERY_FEES = (("Lost card", Decimal("2.00")), ("Printing", Decimal("0.90")))
GLOBAL_FLAGS = (
    ("history.circ.retention_age", None, "Historical Circulation Retention Age"),
    ("history.circ.retention_count", None, "Historical Circulations per Copy"),
    ("history.hold.retention_age", None, "Historical Hold Retention Age"),
    ("history.money.age_with_circs", None, "Age billings and payments when circulations age"),
    ("history.money.retention_age", None, "Age billings and payments whose transactions ended"),
)
_HOURS = {0: (9, 20), 1: (9, 20), 2: (9, 20), 3: (9, 20), 4: (9, 18), 5: (9, 17), 6: (13, 17)}


def _add_months(day: dt.date, months: int) -> dt.date:
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class _Sink:
    """Buffers rows per table and writes them parents first (foreign keys, inheritance)."""

    def __init__(self, conn: Connection, batch_size: int):
        self.conn = conn
        self.batch_size = batch_size
        self.order = [t.fullname for t in S.metadata.sorted_tables]
        self.buffers: dict[str, list[dict]] = {n: [] for n in self.order}
        self.counts: dict[str, int] = dict.fromkeys(self.order, 0)

    def add(self, table, row: dict) -> None:
        buf = self.buffers[table.fullname]
        buf.append(row)
        if len(buf) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        for name in self.order:
            buf = self.buffers[name]
            if buf:
                # executemany sends the first row's keys for all: group rows by their keys,
                # so a key left out keeps its server default instead of becoming NULL.
                groups: dict[tuple, list[dict]] = defaultdict(list)
                for row in buf:
                    groups[tuple(sorted(row))].append(row)
                for rows in groups.values():
                    self.conn.execute(S.metadata.tables[name].insert(), rows)
                self.counts[name] += len(buf)
                buf.clear()


class _Library:
    def __init__(self, *, patrons: int, years: int, seed: int, as_of: dt.date, zone: str):
        self.n = patrons
        self.years = years
        self.as_of = as_of
        self.zone = ZoneInfo(zone)
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.start = _add_months(as_of, -12 * years)
        self.ids: dict[str, int] = defaultdict(int)
        self.copy_free: dict[int, dt.datetime] = {}
        self.copies_by_mod: dict[str, list[int]] = defaultdict(list)
        self.copy_mod: dict[int, str] = {}
        self.barcodes: set[str] = set()

    # --- helpers ------------------------------------------------------------------------------

    def next_id(self, seq: str) -> int:
        self.ids[seq] += 1
        return self.ids[seq]

    def at(self, day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)

    def desk_time(self, day: dt.date) -> dt.datetime:
        lo, hi = _HOURS[day.weekday()]
        return self.at(day, self.rng.randint(lo, hi - 1), self.rng.randint(0, 59))

    def end(self) -> dt.datetime:
        """The last instant anything may happen: just before midnight starting as_of."""
        return self.at(self.as_of, 0) - dt.timedelta(minutes=1)

    def barcode(self, prefix: str) -> str:
        while True:
            code = prefix + "".join(self.rng.choice("0123456789") for _ in range(10))
            if code not in self.barcodes:
                self.barcodes.add(code)
                return code

    # --- reference data -----------------------------------------------------------------------

    def place(self, out: _Sink) -> None:
        for tid, name, label in (
            (1, "Consortium", "Everywhere"),
            (2, "System", "Local Library System"),
            (3, "Branch", "This Branch"),
        ):
            out.add(
                S.org_unit_type,
                {"id": tid, "name": name, "opac_label": label, "depth": tid - 1,
                 "parent": tid - 1 or None},
            )  # fmt: skip
        out.add(
            S.org_unit,
            {"id": CONSORTIUM, "parent_ou": None, "ou_type": 1, "shortname": "CONS",
             "name": "Example Consortium"},
        )  # fmt: skip
        out.add(
            S.org_unit,
            {"id": SYSTEM, "parent_ou": CONSORTIUM, "ou_type": 2, "shortname": "SYS",
             "name": "Example Library System"},
        )  # fmt: skip
        for ou, short, name, _codes, _share in BRANCHES:
            out.add(
                S.org_unit,
                {"id": ou, "parent_ou": SYSTEM, "ou_type": 3, "shortname": short, "name": name,
                 "phone": f"860-555-01{ou:02d}"},
            )  # fmt: skip
        out.add(
            S.org_unit_setting,
            {"id": 1, "org_unit": CONSORTIUM, "name": "lib.timezone",
             "value": f'"{self.zone.key}"'},
        )  # fmt: skip
        for gid, name, parent in (
            (USERS, "Users", None),
            (PATRONS, "Patrons", USERS),
            (STAFF, "Staff", USERS),
            (CATALOGERS, "Catalogers", STAFF),
            (CIRCULATORS, "Circulators", STAFF),
        ):
            out.add(S.grp_tree, {"id": gid, "name": name, "parent": parent})
        out.add(S.perm_list, {"id": STAFF_LOGIN, "code": "STAFF_LOGIN"})
        out.add(S.grp_perm_map, {"id": 1, "grp": STAFF, "perm": STAFF_LOGIN, "depth": 0})
        for aid, what, how, group, label in ACTIVITY_TYPES:
            out.add(
                S.usr_activity_type,
                {"id": aid, "ewhat": what, "ehow": how, "egroup": group, "label": label},
            )
        for cid, label, manual in CANCEL_CAUSES:
            out.add(S.hold_request_cancel_cause, {"id": cid, "label": label, "manual": manual})
        for name, value, label in GLOBAL_FLAGS:
            out.add(S.global_flag, {"name": name, "value": value, "enabled": False, "label": label})
        for lid, name in LOCATIONS:
            out.add(S.copy_location, {"id": lid, "name": name, "owning_lib": CONSORTIUM})

    def catalog(self, out: _Sink) -> None:
        n_copies = max(300, self.n * 2)
        catalogued = self.at(_add_months(self.start, -12), 10)
        weights = [m[1] for m in MODIFIERS]
        for cid in range(1, n_copies + 1):
            mod, _share, _fine, _cap, loc = self.rng.choices(MODIFIERS, weights)[0]
            branch = self.rng.choice(BRANCHES)[0]
            record = 1 + (cid - 1) // 2
            out.add(
                S.call_number,
                {"id": cid, "creator": ADMIN, "editor": ADMIN, "record": record,
                 "owning_lib": branch, "label": f"{mod.upper()[:3]} {record:05d}",
                 "label_class": 1, "create_date": catalogued, "edit_date": catalogued},
            )  # fmt: skip
            out.add(
                S.copy,
                {"id": cid, "circ_lib": branch, "creator": ADMIN, "editor": ADMIN,
                 "call_number": cid, "location": loc, "loan_duration": 2, "fine_level": 2,
                 "barcode": self.barcode("39"), "circ_modifier": mod,
                 "create_date": catalogued, "edit_date": catalogued,
                 "active_date": catalogued,
                 "price": Decimal(self.rng.choice(("12.99", "24.95", "19.99", "29.98")))},
            )  # fmt: skip
            self.copies_by_mod[mod].append(cid)
            self.copy_mod[cid] = mod
            self.copy_free[cid] = self.at(self.start, 0)

    # --- patrons ------------------------------------------------------------------------------

    def patrons(self, out: _Sink) -> list[dict]:
        people = []
        admin = self.person(ADMIN, kind="staff", branch=BRANCHES[0])
        admin["profile"] = CIRCULATORS
        people.append(admin)
        for uid in range(2, self.n + 2):
            r = self.rng.random()
            kind = "staff" if r < 0.02 else "juvenile" if r < 0.17 else "adult"
            branch = self.rng.choices(BRANCHES, [b[4] for b in BRANCHES])[0]
            people.append(self.person(uid, kind=kind, branch=branch))
        for p in people:
            self.write_person(out, p)
        return people

    def person(self, uid: int, *, kind: str, branch) -> dict:
        rng, fake = self.rng, self.fake
        as_of = self.as_of
        # Enrolment: some long before the generated period (legacy patrons), most during it.
        if rng.random() < 0.45:
            created = as_of - dt.timedelta(days=rng.randint(365 * self.years, 365 * 12))
        else:
            created = as_of - dt.timedelta(days=rng.randint(1, 365 * self.years))
        # Cards run three years, renewed while the patron stays.
        fate = rng.random()
        leaves = (
            None
            if fate < 0.65 or kind == "staff"
            else created
            + dt.timedelta(days=rng.randint(200, max(201, (as_of - created).days + 400)))
        )
        expire = _add_months(created, 36)
        while leaves is None and expire <= as_of:
            expire = _add_months(expire, 36)
        while leaves is not None and expire < leaves:
            expire = _add_months(expire, 36)
        if kind == "juvenile":
            dob = as_of - dt.timedelta(days=rng.randint(4 * 365, 17 * 365))
        else:
            dob = as_of - dt.timedelta(days=rng.randint(18 * 365, 88 * 365))
        first = fake.first_name()
        last = fake.last_name()
        street = fake.street_address()
        return {
            "id": uid,
            "kind": kind,
            "branch": branch,
            "created": created,
            "expire": expire,
            "active_until": min(expire, as_of),
            "dob": dob if rng.random() > 0.05 else None,
            "first": first,
            "last": last,
            "street": street,
            "post_code": rng.choice(branch[3]),
            "profile": CIRCULATORS if kind == "staff" else PATRONS,
            "email": self.email(first, last) if rng.random() < 0.8 else None,
            "phone": fake.numerify("860-555-####"),
            "barred": kind == "adult" and rng.random() < 0.01,
            "keeps_holds": rng.random() < 0.08,
            "rate": rng.choice((0.0, 0.5, 1.0, 1.5, 2.5)) if kind != "staff" else 0.3,
        }

    def email(self, first: str, last: str) -> str:
        domain = self.rng.choice(("org", "net", "com"))
        return f"{first}.{last}{self.rng.randint(1, 99)}@example.{domain}".lower()

    def write_person(self, out: _Sink, p: dict) -> None:
        uid = p["id"]
        created = self.at(p["created"], 10)
        out.add(
            S.usr_address,
            {"id": uid, "usr": uid, "street1": p["street"], "city": "Hartford", "state": "CT",
             "country": "US", "post_code": p["post_code"], "address_type": "MAILING",
             "replaces": None},
        )  # fmt: skip
        card = self.barcode("2")
        out.add(S.card, {"id": uid, "usr": uid, "barcode": card, "active": True})
        out.add(
            S.usr,
            {
                "id": uid,
                "card": uid,
                "profile": p["profile"],
                "usrname": card
                if p["kind"] != "staff"
                else f"{p['first'][0]}{p['last']}".lower() + str(uid),
                "email": p["email"],
                "ident_type": 1,
                "ident_value": self.fake.numerify("#########") if self.rng.random() < 0.4 else None,
                "first_given_name": p["first"],
                "family_name": p["last"],
                "guardian": self.fake.name() if p["kind"] == "juvenile" else None,
                "day_phone": p["phone"],
                "mailing_address": uid,
                "billing_address": None,
                "home_ou": p["branch"][0],
                "dob": p["dob"],
                "juvenile": p["kind"] == "juvenile",
                "barred": p["barred"],
                "create_date": created,
                "expire_date": self.at(p["expire"], 0),
                "last_update_time": created,
                "super_user": p["id"] == ADMIN,
            },
        )
        if p["keeps_holds"]:
            out.add(
                S.usr_setting,
                {"id": self.next_id("usr_setting"), "usr": uid,
                 "name": "history.hold.retention_start", "value": f'"{p["created"]}"'},
            )  # fmt: skip

    # --- circulation --------------------------------------------------------------------------

    def circulate(self, out: _Sink, people: list[dict]) -> None:
        end = self.end()
        for p in people:
            first = max(p["created"], self.start)
            last = min(p["active_until"], self.as_of - dt.timedelta(days=1))
            days = (last - first).days
            if days <= 0 or p["rate"] == 0:
                continue
            visits = _poisson(self.rng, p["rate"] * days / 30)
            for _ in range(visits):
                day = first + dt.timedelta(days=self.rng.randint(0, days))
                when = self.desk_time(day)
                if when >= end:
                    continue
                for _item in range(self.rng.choice((1, 1, 2, 3))):
                    self.loan(out, p, when, end)
            self.activity(out, p, first, end)

    def pick_copy(self, p: dict, when: dt.datetime) -> int | None:
        mod = "juvenile" if p["kind"] == "juvenile" and self.rng.random() < 0.7 else None
        pool = self.copies_by_mod[mod] if mod else list(self.copy_mod)
        for _ in range(6):
            cid = self.rng.choice(pool)
            if self.copy_free[cid] <= when:
                return cid
        return None

    def loan(self, out: _Sink, p: dict, when: dt.datetime, end: dt.datetime) -> None:
        cid = self.pick_copy(p, when)
        if cid is None:
            return
        mod = self.copy_mod[cid]
        fine, cap = next((m[2], m[3]) for m in MODIFIERS if m[0] == mod)
        renewals = self.rng.choices((0, 1, 2), (0.75, 0.17, 0.08))[0]
        lost = self.rng.random() < 0.01
        parent = None
        start = when
        for n in range(renewals + 1):
            xid = self.next_id("xact")
            due = start + dt.timedelta(days=LOAN_DAYS)
            last_one = n == renewals
            if last_one:
                late = self.rng.random() < 0.15
                back = due + dt.timedelta(
                    days=self.rng.randint(1, 20) if late else -self.rng.randint(0, 19),
                    hours=self.rng.randint(-3, 3),
                )
                if lost:
                    back = None
            else:
                late = False
                back = due - dt.timedelta(days=self.rng.randint(0, 3), hours=1)
            checkin = back if back is not None and back < end else None
            row = {
                "id": xid,
                "usr": p["id"],
                "xact_start": start,
                "xact_finish": None,
                "target_copy": cid,
                "circ_lib": p["branch"][0],
                "circ_staff": ADMIN,
                "checkin_staff": ADMIN if checkin else None,
                "checkin_lib": p["branch"][0] if checkin else None,
                "renewal_remaining": 2 - n,
                "grace_period": dt.timedelta(days=1),
                "due_date": due,
                "checkin_time": checkin,
                "checkin_scan_time": checkin,
                "stop_fines": ("RENEW" if not last_one else "CHECKIN") if checkin else None,
                "stop_fines_time": checkin,
                "duration": dt.timedelta(days=LOAN_DAYS),
                "recurring_fine": fine,
                "max_fine": cap,
                "desk_renewal": n > 0,
                "duration_rule": "default",
                "recurring_fine_rule": "default",
                "max_fine_rule": "default",
                "copy_location": 1,
                "parent_circ": parent,
                "create_time": start,
            }
            owed = Decimal("0")
            if lost and last_one and due + dt.timedelta(days=30) < end:
                lost_at = due + dt.timedelta(days=30)
                row.update(stop_fines="LOST", stop_fines_time=lost_at)
                owed = Decimal("24.95")
                self.bill(out, xid, lost_at, owed, "Lost Materials", 3)
                paid = self.rng.random() < 0.6
                if paid:
                    paid_at = lost_at + dt.timedelta(days=self.rng.randint(1, 60))
                    if paid_at < end:
                        self.pay(out, xid, paid_at, owed)
                        row["xact_finish"] = paid_at
            elif checkin is not None:
                if late:
                    days_late = max(1, (checkin - due).days)
                    owed = min(cap, fine * days_late)
                    self.bill(out, xid, checkin, owed, "Overdue materials", 1)
                    if self.rng.random() < 0.75:
                        paid_at = checkin + dt.timedelta(days=self.rng.randint(0, 45))
                        if paid_at < end:
                            self.pay(out, xid, paid_at, owed)
                            row["xact_finish"] = paid_at
                else:
                    row["xact_finish"] = checkin
            out.add(S.circulation, row)
            if checkin is None or last_one:
                self.copy_free[cid] = checkin or end + dt.timedelta(days=1)
                break
            parent = xid
            start = checkin

    def bill(self, out, xid: int, when: dt.datetime, amount: Decimal, kind: str, btype: int):
        out.add(
            S.billing,
            {"id": self.next_id("billing"), "xact": xid, "billing_ts": when, "voided": False,
             "amount": amount, "billing_type": kind, "btype": btype, "create_date": when,
             "note": None},
        )  # fmt: skip

    def pay(self, out, xid: int, when: dt.datetime, amount: Decimal) -> None:
        pid = self.next_id("payment")
        r = self.rng.random()
        base = {"id": pid, "xact": xid, "payment_ts": when, "voided": False, "amount": amount,
                "amount_collected": amount, "accepting_usr": ADMIN, "note": None}  # fmt: skip
        if r < 0.5:
            out.add(S.cash_payment, {**base, "cash_drawer": None})
        elif r < 0.75:
            out.add(
                S.credit_card_payment,
                {**base, "cash_drawer": None, "cc_number": self.fake.numerify("####"),
                 "approval_code": self.fake.bothify("??####").upper()},
            )  # fmt: skip
        elif r < 0.9:
            out.add(
                S.check_payment,
                {**base, "cash_drawer": None, "check_number": self.fake.numerify("####")},
            )
        else:
            out.add(S.forgive_payment, {**base, "note": "Forgiven at the desk"})

    def activity(self, out: _Sink, p: dict, first: dt.date, end: dt.datetime) -> None:
        last = min(self.as_of - dt.timedelta(days=1), p["active_until"])
        if p["active_until"] < self.as_of and self.rng.random() < 0.2:
            # Came back (logged in, was verified) after the card expired.
            last = min(self.as_of - dt.timedelta(days=1), p["expire"] + dt.timedelta(days=200))
        days = (last - first).days
        for _ in range(_poisson(self.rng, max(0, days) / 60)):
            day = first + dt.timedelta(days=self.rng.randint(0, max(0, days)))
            etype = self.rng.choice(ACTIVITY_TYPES)[0]
            when = self.desk_time(day)
            if when < end:
                out.add(
                    S.usr_activity,
                    {"id": self.next_id("activity"), "usr": p["id"], "etype": etype,
                     "event_time": when, "event_data": None},
                )  # fmt: skip

    # --- holds and bills ----------------------------------------------------------------------

    def holds_and_bills(self, out: _Sink, people: list[dict]) -> None:
        end = self.end()
        for p in people:
            first = max(p["created"], self.start)
            last = min(p["active_until"], self.as_of - dt.timedelta(days=1))
            days = (last - first).days
            if days <= 0:
                continue
            for _ in range(_poisson(self.rng, p["rate"] * days / 120)):
                placed = self.desk_time(first + dt.timedelta(days=self.rng.randint(0, days)))
                fate = self.rng.random()
                done = placed + dt.timedelta(days=self.rng.randint(2, 40))
                fulfilled = done if fate < 0.7 and done < end else None
                cancelled = done if 0.7 <= fate < 0.92 and done < end else None
                hid = self.next_id("hold")
                phone = p["phone"] if self.rng.random() < 0.3 else None
                out.add(
                    S.hold_request,
                    {
                        "id": hid,
                        "usr": p["id"],
                        "requestor": p["id"] if self.rng.random() < 0.85 else ADMIN,
                        "request_time": placed,
                        "capture_time": fulfilled - dt.timedelta(days=1) if fulfilled else None,
                        "fulfillment_time": fulfilled,
                        "fulfillment_staff": ADMIN if fulfilled else None,
                        "fulfillment_lib": p["branch"][0] if fulfilled else None,
                        "cancel_time": cancelled,
                        "cancel_cause": self.rng.choice(CANCEL_CAUSES)[0] if cancelled else None,
                        "target": self.rng.randint(1, max(1, self.n)),
                        "request_lib": p["branch"][0],
                        "selection_ou": CONSORTIUM,
                        "pickup_lib": p["branch"][0],
                        "hold_type": "T",
                        "phone_notify": phone,
                        "email_notify": p["email"] is not None,
                        "expire_time": placed + dt.timedelta(days=365),
                    },
                )
            for _ in range(_poisson(self.rng, days / 500)):
                kind, amount = self.rng.choice(GROCERY_FEES)
                when = self.desk_time(first + dt.timedelta(days=self.rng.randint(0, days)))
                if when >= end:
                    continue
                xid = self.next_id("xact")
                paid = self.rng.random() < 0.85
                paid_at = when + dt.timedelta(days=self.rng.randint(0, 10))
                finished = paid_at if paid and paid_at < end else None
                out.add(
                    S.grocery,
                    {"id": xid, "usr": p["id"], "xact_start": when, "xact_finish": finished,
                     "billing_location": p["branch"][0], "note": None},
                )  # fmt: skip
                self.bill(out, xid, when, amount, kind, 101)
                if finished is not None:
                    self.pay(out, xid, finished, amount)


def _check_empty(conn: Connection) -> None:
    insp = inspect(conn)
    for table in S.metadata.sorted_tables:
        if (
            table.name in insp.get_table_names(schema=table.schema)
            and conn.execute(select(func.count()).select_from(table)).scalar_one()
        ):
            raise ValueError(
                f"refusing to build into a non-empty database ({table.fullname} has rows)"
            )


def _set_sequences(conn: Connection) -> None:
    """Move each id sequence past the ids written, so Evergreen's next row gets a fresh id."""
    for table in S.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].name != "id":
            continue
        seq = conn.exec_driver_sql(
            "SELECT pg_get_serial_sequence(%s, 'id')", (table.fullname,)
        ).scalar()
        if seq:
            conn.exec_driver_sql(
                f"SELECT setval(%s, GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table.fullname}),"
                " 1))",
                (seq,),
            )


def build_evergreen(
    engine: Engine,
    *,
    patrons: int,
    years: int,
    seed: int,
    as_of: dt.date,
    timezone: str = "America/New_York",
    batch_size: int = 5000,
) -> dict[str, int]:
    """Create Evergreen's schema in an empty PostgreSQL database and fill it with one invented
    library. Returns the rows written per table (``schema.table``)."""
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    if patrons < 10:
        raise ValueError("patrons must be at least 10")
    if years < 1:
        raise ValueError("years must be at least 1")
    S.create_schema(engine)
    with engine.begin() as conn:
        _check_empty(conn)
        lib = _Library(patrons=patrons, years=years, seed=seed, as_of=as_of, zone=timezone)
        out = _Sink(conn, batch_size)
        lib.place(out)
        lib.catalog(out)
        people = lib.patrons(out)
        out.flush()
        lib.circulate(out, people)
        lib.holds_and_bills(out, people)
        out.flush()
        _set_sequences(conn)
    counts = {name: n for name, n in out.counts.items() if n}
    log.info(
        "synthetic Evergreen library built: %s",
        ", ".join(f"{name}={n}" for name, n in sorted(counts.items())),
    )
    return counts


def build_evergreen_from_url(url: str, **kw: Any) -> dict[str, int]:
    """``build_evergreen`` for callers that hold a SQLAlchemy URL rather than an engine."""
    engine = create_engine(url)
    try:
        return build_evergreen(engine, **kw)
    finally:
        engine.dispose()
