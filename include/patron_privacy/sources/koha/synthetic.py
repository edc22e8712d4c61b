"""A deterministic, entirely invented Koha library for tests, demos and benchmarks.

Retention and anonymisation code has to be exercised against data that behaves like a real
Koha database (years of loans, lapsed cards, fines, holds, notices, search history, staff
logs, patrons deleted long ago) and no real patron's data may ever be used for that. Every
value here comes from ``random.Random(seed)`` and a seeded ``Faker``; nothing reads the
clock, so one ``(patrons, years, seed, as_of)`` always gives byte-identical tables, and a
failing test can be reproduced anywhere.

The model, briefly (``as_of`` is the day the snapshot is taken; every event happens before
midnight at its start, every DATE column holding an event is before it):

* 4 branches, categories ADULT/CHILD/STAFF plus the statistical ANON category, and one
  anonymous patron whose borrowernumber is the ``AnonymousPatron`` system preference.
* Patrons: ~70% active (cards renewed every enrolment period), ~17% whose card lapsed in the
  last three years and ~15% whose card lapsed more than three years ago (those were enrolled
  before the generated period, as real legacy patrons are). A few whose card lapsed more
  than ~13 months ago were deleted: their row is in ``deletedborrowers``, their loans, holds
  and fines point at NULL (Koha's ON DELETE SET NULL), their notices are gone (CASCADE), but
  ``statistics`` and ``search_history`` (no foreign key) still carry their borrowernumber.
* Circulation only while a card is valid, in visits of several items, seasonal (children
  borrow most in summer, everyone less in December, closed on four holidays), with item
  availability respected so one copy is never out twice. 21-day loans, up to two renewals,
  a share of late returns per patron. Loans not returned by ``as_of`` are in ``issues``.
* Late returns raise OVERDUE fines (about 70% later paid), each linked to its checkout:
  ``old_issue_id`` for returned loans (Koha's FK on ``issue_id`` points at ``issues``, so a
  returned loan's fine cannot use it) and ``issue_id`` for loans still out.
* Holds (filled, cancelled, expired, a few open), OPAC searches (including sensitive
  topics), notices (with names, titles and addresses), and action logs.

Columns that by nature hold a future date (due dates, card expiry, hold expiry) are listed
in ``SCHEDULED_COLUMNS``; every other date or time is at most ``as_of``.

The generator logs counts only; it must never print or log a generated personal value,
because the same habits are what keep real data out of logs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from typing import Any
from urllib.parse import quote

from faker import Faker
from sqlalchemy import Connection, Engine, create_engine, func, inspect, select

from . import schema

__all__ = [
    "BRANCH_CODES",
    "CATEGORY_CODES",
    "ITEMTYPE_CODES",
    "SCHEDULED_COLUMNS",
    "build_koha",
    "build_koha_from_url",
]

log = logging.getLogger(__name__)

# --- fixed reference data ---------------------------------------------------------------------

_BRANCHES = (
    # code, name, street address, share of patrons
    ("MAIN", "Central Library", "100 Library Plaza", 0.40),
    ("NORTH", "North Branch Library", "2200 Northview Road", 0.20),
    ("EAST", "Eastside Branch Library", "415 Orchard Avenue", 0.20),
    ("WEST", "West End Branch Library", "78 Harbor Street", 0.20),
)
BRANCH_CODES: tuple[str, ...] = tuple(b[0] for b in _BRANCHES)

ADULT, CHILD, STAFF, ANON = "ADULT", "CHILD", "STAFF", "ANON"
CATEGORY_CODES: tuple[str, ...] = (ADULT, CHILD, STAFF, ANON)
_ENROLMENT_MONTHS = {ADULT: 36, CHILD: 24, STAFF: 60, ANON: 999}

BK, DVD, MAG, AUD, EBK = "BK", "DVD", "MAG", "AUD", "EBK"
ITEMTYPE_CODES: tuple[str, ...] = (BK, DVD, MAG, AUD, EBK)
_ITEMTYPE_NAMES = {BK: "Books", DVD: "DVDs", MAG: "Magazines", AUD: "Audiobooks", EBK: "eBooks"}

LOAN_DAYS = 21
_FINE_PER_DAY = {
    BK: Decimal("0.25"),
    DVD: Decimal("1.00"),
    MAG: Decimal("0.10"),
    AUD: Decimal("0.25"),
}
_FINE_CAP = {BK: Decimal("5.00"), DVD: Decimal("10.00"), MAG: Decimal("2.00"), AUD: Decimal("5.00")}

# Dates that Koha stores ahead of time; everything else is an event and is <= as_of.
SCHEDULED_COLUMNS: dict[str, tuple[str, ...]] = {
    "borrowers": ("dateexpiry", "password_expiration_date", "debarred"),
    "deletedborrowers": ("dateexpiry", "password_expiration_date", "debarred"),
    "issues": ("date_due",),
    "old_issues": ("date_due",),
    "items": ("onloan",),
    "reserves": ("expirationdate", "patron_expiration_date"),
    "old_reserves": ("expirationdate", "patron_expiration_date"),
    "borrower_password_recovery": ("valid_until",),
    "patron_quota": ("end_date",),
}

# Opening hours per weekday (Mon=0): first and last hour the desk is open.
_HOURS = {0: (9, 20), 1: (9, 20), 2: (9, 20), 3: (9, 20), 4: (9, 18), 5: (9, 17), 6: (13, 17)}
_WEEKDAY_WEIGHT = (1.0, 1.05, 1.05, 1.0, 0.95, 1.25, 0.45)
_SEASON = {  # month -> weight, per borrowing category
    ADULT: (1.05, 1.0, 1.05, 1.0, 0.95, 1.0, 1.05, 1.05, 0.95, 1.0, 0.95, 0.70),
    CHILD: (0.85, 0.85, 0.9, 0.9, 0.9, 1.5, 1.8, 1.5, 0.8, 0.85, 0.8, 0.6),
}

# Catalogue vocabulary. Fictional titles; the non-fiction list deliberately includes topics
# whose borrowing or searching reveals health, legal, family or immigration circumstances.
_ADJ = (
    "Silent",
    "Hidden",
    "Last",
    "Broken",
    "Golden",
    "Winter",
    "Midnight",
    "Lost",
    "Burning",
    "Quiet",
    "Distant",
    "Secret",
    "Crimson",
    "Forgotten",
    "Wild",
    "Glass",
    "Paper",
    "Salt",
    "Iron",
    "Summer",
    "Northern",
    "Hollow",
    "Bright",
    "Restless",
)
_NOUN = (
    "River",
    "Garden",
    "House",
    "Orchard",
    "Harbor",
    "Letters",
    "Witness",
    "Daughter",
    "Crossing",
    "Promise",
    "Island",
    "Station",
    "Season",
    "Kingdom",
    "Shadows",
    "Lighthouse",
    "Sisters",
    "Bridge",
    "Storm",
    "Road",
    "Inheritance",
    "Tide",
    "Ledger",
)
_ANIMALS = (
    "Bear",
    "Fox",
    "Owl",
    "Rabbit",
    "Dragon",
    "Penguin",
    "Turtle",
    "Giraffe",
    "Mouse",
    "Dinosaur",
    "Kitten",
    "Puppy",
    "Whale",
    "Llama",
)
_SCHOOLS = ("Lincoln Elementary", "Oak Hill Middle", "Riverside High", "Maple Street School")
_REVIEWS = (
    "Could not put it down.",
    "Slow start, strong finish.",
    "My book club loved it.",
    "Good for younger readers.",
)
_HASH_CHARS = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_KID_NAMES = ("Max", "Lily", "Pip", "Rosie", "Milo", "Zara", "Otis", "Ruby", "Finn", "Hazel")
_TOPICS = (
    # (title, subject heading, Dewey class)
    ("Gardening for Beginners", "Gardening", "635"),
    ("Understanding Depression", "Depression, Mental", "616.85"),
    ("Living with Anxiety", "Anxiety", "616.85"),
    ("The Complete Guide to Divorce", "Divorce", "346.01"),
    ("Bankruptcy: Your Options", "Bankruptcy", "346.07"),
    ("Pregnancy Week by Week", "Pregnancy", "618.2"),
    ("Coping with Cancer", "Cancer", "616.99"),
    ("Recovering from Addiction", "Substance abuse", "362.29"),
    ("Immigration Law Made Simple", "Emigration and immigration law", "342.08"),
    ("Managing Diabetes", "Diabetes", "616.46"),
    ("Caring for Aging Parents", "Aging parents", "306.87"),
    ("Coming Out: Stories and Advice", "Coming out (Sexual orientation)", "306.76"),
    ("Job Hunting After 50", "Job hunting", "650.14"),
    ("Home Repair Basics", "Dwellings--Maintenance", "643.7"),
    ("The Everyday Pressure Cooker", "Cooking", "641.5"),
    ("World War II: A New History", "World War, 1939-1945", "940.53"),
    ("Learn Spanish Fast", "Spanish language", "468"),
    ("Personal Finance Made Easy", "Finance, Personal", "332.024"),
    ("Grief and Healing", "Grief", "155.9"),
    ("Raising Teens Today", "Parenting", "649.1"),
    ("Dog Training Made Easy", "Dogs--Training", "636.7"),
    ("Birds of North America", "Birds", "598"),
    ("Yoga for Everyone", "Yoga", "613.7"),
    ("Starting a Small Business", "Small business", "658.02"),
    ("Understanding Autism", "Autism", "616.85"),
    ("Sleep Better Tonight", "Sleep disorders", "616.8"),
    ("Quitting Smoking for Good", "Smoking cessation", "616.86"),
    ("HIV and AIDS: The Facts", "HIV infections", "616.97"),
    ("Leaving an Abusive Relationship", "Family violence", "362.82"),
    ("Citizenship Test Study Guide", "Citizenship", "323.6"),
    ("Bipolar Disorder Explained", "Manic-depressive illness", "616.89"),
    ("Surviving Infertility", "Infertility", "616.69"),
    ("Eating Disorders: A Guide for Families", "Eating disorders", "616.85"),
    ("Know Your Rights as a Tenant", "Landlord and tenant", "346.04"),
    ("Fixing Your Credit", "Consumer credit", "332.7"),
    ("Plant-Based Cooking", "Vegan cooking", "641.56"),
    ("The Story of Jazz", "Jazz", "781.65"),
    ("Retire with Confidence", "Retirement--Planning", "332.024"),
)
_SUBTITLES = (
    "",
    "",
    ": A Practical Guide",
    ": What You Need to Know",
    ": Expert Advice",
    " (2nd edition)",
    ": Real Stories",
)
_MAGAZINES = (
    "Home & Garden Monthly",
    "Consumer Review",
    "Outdoor Life Today",
    "Parenting Now",
    "Health Matters",
    "Tech Trends",
    "Easy Weeknight Cooking",
    "Woodworking Journal",
    "The Weekly Review",
    "Travel & Leisure Guide",
)
_SEARCH_EXTRA = (
    "harry potter",
    "cookbooks",
    "knitting",
    "tax forms",
    "divorce lawyer",
    "depression",
    "pregnancy",
    "bankruptcy",
    "immigration",
    "ged practice test",
    "dinosaurs",
    "true crime",
    "large print mysteries",
    "resume writing",
    "suicide prevention",
    "sexually transmitted diseases",
    "rehab centers",
    "custody rights",
    "ancestry",
    "learn english",
)

_CHECKOUT_NOTES = (
    "Pages {n} and {m} are torn, it was like that when I got it.",
    "Disc 2 is scratched and skips. - {first}",
    "My son spilled juice on the cover, sorry!",
    "The map insert is missing.",
    "Please call me at {phone} about this item.",
    "Someone wrote notes in the margins in pencil.",
)
_HOLD_NOTES = (
    "Please call {first} at {phone} when it arrives.",
    "For my book club, need it by the 15th.",
    "Large print if possible.",
    "My husband {other} will pick it up.",
    "Any format is fine.",
)
_STAFF_NOTES = (
    "Library card replaced (lost).",
    "Prefers contact by email; hearing impaired.",
    "Address verified with driver's licence.",
    "Disputed a fine in person; waived once.",
    "Homebound delivery patron.",
    "Called about overdue items, left voicemail at {phone}.",
)


# --- small helpers ----------------------------------------------------------------------------


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _add_months(day: dt.date, months: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _closed(day: dt.date) -> bool:
    if (day.month, day.day) in ((1, 1), (7, 4), (12, 25)):
        return True
    # Thanksgiving: fourth Thursday of November.
    return day.month == 11 and day.weekday() == 3 and 22 <= day.day <= 28


def _desk_time(rng: random.Random, day: dt.date) -> dt.datetime:
    """A moment the desk is open on ``day`` (never in the 02:00 DST gap)."""
    first, last = _HOURS[day.weekday()]
    return dt.datetime.combine(day, dt.time(first)) + dt.timedelta(
        seconds=rng.randrange((last - first) * 3600)
    )


def _dodge_dst(when: dt.datetime) -> dt.datetime:
    """Move 02:xx to 03:xx: that hour does not exist once a year in local time, and MariaDB
    TIMESTAMP columns would silently shift it, breaking determinism across servers."""
    return when + dt.timedelta(hours=1) if when.hour == 2 else when


def _online_time(rng: random.Random, day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(6)) + dt.timedelta(seconds=rng.randrange(17 * 3600))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _ascii(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isascii() and ch.isalnum())


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


class _Picker:
    """Weighted choice with precomputed cumulative weights (O(log n) per draw)."""

    def __init__(self, values: list, weights: list[float]):
        self.values = values
        self.cum = list(accumulate(weights))

    def __call__(self, rng: random.Random):
        return rng.choices(self.values, cum_weights=self.cum)[0]


# --- in-memory model --------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    itemnumber: int
    biblionumber: int
    itype: str
    ccode: str
    location: str | None
    homebranch: str
    accessioned: dt.date
    callnumber: str
    price: Decimal
    barcode: str
    enumchron: str | None
    juvenile: bool
    weight: float
    # circulation aggregates
    free_at: dt.datetime = dt.datetime.min
    issues: int = 0
    renewals: int = 0
    holds: int = 0
    last_borrowed: dt.date | None = None
    last_seen: dt.datetime | None = None
    holding: str = ""
    onloan: dt.date | None = None


@dataclass(slots=True)
class _Biblio:
    biblionumber: int
    title: str
    subtitle: str | None
    author: str | None
    medium: str | None
    subject: str | None
    copyright: int
    kind: str
    created: dt.date = dt.date.max


@dataclass(slots=True)
class _Patron:
    idx: int
    category: str
    kind: str  # staff | anon | active | lapsed_recent | lapsed_old
    branch: str
    enrolled: dt.date
    expiry: dt.date
    renewed: dt.date | None
    row: dict[str, Any]
    visit_rate: float = 0.0
    late_prob: float = 0.05
    search_rate: float = 0.0
    wants_predue: bool = False
    borrowernumber: int = 0
    guarantor: _Patron | None = None
    has_guarantees: bool = False
    last_active: dt.datetime | None = None
    open_loans: int = 0
    unpaid: bool = False
    open_holds: int = 0
    deleted_at: dt.datetime | None = None

    @property
    def first(self) -> str:
        return self.row["firstname"] or ""

    @property
    def full_name(self) -> str:
        return f"{self.row['firstname'] or ''} {self.row['surname'] or ''}".strip()

    def seen(self, when: dt.datetime) -> None:
        if self.last_active is None or when > self.last_active:
            self.last_active = when


@dataclass(slots=True)
class _Loan:
    issue_id: int
    patron: _Patron
    item: _Item
    issuer_id: int | None
    branch: str
    issued: dt.datetime
    interface: str
    due: dt.datetime
    renewals: list[tuple[dt.datetime, str]]
    returned: dt.datetime | None
    checkin_branch: str | None
    note: str | None = None
    notedate: dt.datetime | None = None
    fine: Decimal | None = None
    fine_date: dt.datetime | None = None
    paid_at: dt.datetime | None = None
    pay_branch: str | None = None
    pay_type: str | None = None
    pay_manager: int | None = None


@dataclass(slots=True)
class _Hold:
    patron: _Patron
    biblio: _Biblio
    item: _Item | None
    branch: str
    reservedate: dt.date
    found: str | None
    waitingdate: dt.date | None
    cancellationdate: dt.date | None
    expirationdate: dt.date | None
    patron_expiration_date: dt.date | None
    notes: str | None
    timestamp: dt.datetime
    priority: int
    is_open: bool
    reserve_id: int = 0


# --- writing ----------------------------------------------------------------------------------


class _Sink:
    """Buffers rows per table and writes them in foreign-key order.

    Every flush writes all buffers parents-first, so a child row is never sent before the
    row it references (MariaDB enforces the foreign keys, SQLite does not).
    """

    def __init__(self, conn: Connection, batch_size: int):
        self.conn = conn
        self.batch_size = batch_size
        self.order = [t.name for t in schema.metadata.sorted_tables]
        self.buffers: dict[str, list[dict]] = {name: [] for name in self.order}
        self.counts: dict[str, int] = {name: 0 for name in self.order}

    def add(self, table: str, row: dict) -> None:
        buf = self.buffers[table]
        buf.append(row)
        if len(buf) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        for name in self.order:
            buf = self.buffers[name]
            if buf:
                self.conn.execute(schema.metadata.tables[name].insert(), buf)
                self.counts[name] += len(buf)
                buf.clear()


# --- the generator ----------------------------------------------------------------------------


class _Library:
    def __init__(self, *, patrons: int, years: int, seed: int, as_of: dt.date):
        self.n_patrons = patrons
        self.years = years
        self.as_of = as_of
        self.start = _years_before(as_of, years)
        self.last_day = as_of - dt.timedelta(days=1)
        self.cutoff = dt.datetime.combine(as_of, dt.time())
        self.log_from = self.cutoff - dt.timedelta(days=180)
        master = random.Random(seed)
        # One stream per phase, so changing one phase does not reshuffle the others.
        self.rng = {
            phase: random.Random(master.getrandbits(64))
            for phase in (
                "place",
                "catalog",
                "patrons",
                "circ",
                "holds",
                "search",
                "notices",
                "logs",
                "delete",
                "extras",
            )
        }
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.items: list[_Item] = []
        self.biblios: list[_Biblio] = []
        self.patrons: list[_Patron] = []
        self.loans: list[_Loan] = []
        self.holds: list[_Hold] = []
        self.searches: list[tuple] = []
        self.staff: list[_Patron] = []
        self.anon: _Patron | None = None
        self.extra_rows: dict[str, list[dict]] = {}
        self.hold_group_of: dict[int, int] = {}  # reserve_id -> hold_group_id

    # -- place ---------------------------------------------------------------------------------

    def make_place(self) -> None:
        rng, fake = self.rng["place"], self.fake
        self.state = fake.state_abbr(include_territories=False)
        cities: list[str] = []
        while len(cities) < 6:
            city = fake.city()
            if city not in cities:
                cities.append(city)
        self.cities = cities
        self.zips = {c: [fake.zipcode_in_state(self.state) for _ in range(2)] for c in cities}
        self.branch_city = dict(zip(BRANCH_CODES, cities, strict=False))
        self.area_codes = [str(rng.randint(201, 989)) for _ in range(3)]
        self.branch_picker = _Picker(list(BRANCH_CODES), [b[3] for b in _BRANCHES])

    def phone(self, rng: random.Random) -> str:
        # 555-0100..0199 are reserved for fiction, so no generated number can ring anyone.
        return f"({rng.choice(self.area_codes)}) 555-01{rng.randrange(100):02d}"

    # -- catalogue -----------------------------------------------------------------------------

    def make_catalog(self) -> None:
        rng, fake = self.rng["catalog"], self.fake
        n_biblio = max(300, round(self.n_patrons * 2.0))
        kinds = _Picker(
            ["FIC", "NFIC", "JUV", "YA", "DVD", "AUD", "MAG", "EBK"],
            [0.29, 0.20, 0.18, 0.07, 0.10, 0.06, 0.04, 0.06],
        )
        oldest = _years_before(self.start, 15)
        for bn in range(1, n_biblio + 1):
            kind = kinds(rng)
            subject = None
            medium = None
            subtitle = None
            author: str | None = fake.name()
            if kind in ("FIC", "AUD", "DVD"):
                title = rng.choice(
                    (
                        f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)}",
                        f"{rng.choice(_NOUN)} of {rng.choice(self.cities)}",
                        f"A {rng.choice(_ADJ)} {rng.choice(_NOUN)}",
                        f"The {rng.choice(_NOUN)} at {rng.choice(_NOUN)} End",
                    )
                )
                medium = {"AUD": "[sound recording]", "DVD": "[videorecording]"}.get(kind)
                if kind == "DVD" and rng.random() < 0.4:
                    author = None
            elif kind in ("NFIC", "EBK"):
                base, subject, _ = rng.choice(_TOPICS)
                title = base
                subtitle = rng.choice(_SUBTITLES).lstrip(": ") or None
                if kind == "EBK":
                    medium = "[electronic resource]"
            elif kind == "JUV":
                title = rng.choice(
                    (
                        f"{rng.choice(_KID_NAMES)} and the "
                        f"{rng.choice(_ADJ)} {rng.choice(_ANIMALS)}",
                        f"The {rng.choice(_ADJ)} {rng.choice(_ANIMALS)}",
                        f"Goodnight, {rng.choice(_ANIMALS)}",
                        f"{rng.choice(_ANIMALS)}s Can't Dance!",
                    )
                )
            elif kind == "YA":
                title = rng.choice(
                    (
                        f"The {rng.choice(_NOUN)} Trials",
                        f"{rng.choice(_ADJ)} Hearts",
                        f"Shadow of the {rng.choice(_NOUN)}",
                    )
                )
            else:  # MAG
                title = rng.choice(_MAGAZINES)
                author = None
            year = self.as_of.year - min(60, int(rng.expovariate(1 / 8)))
            biblio = _Biblio(bn, title, subtitle, author, medium, subject, year, kind)
            self.biblios.append(biblio)

            itype = {"DVD": DVD, "AUD": AUD, "MAG": MAG, "EBK": EBK}.get(kind, BK)
            n_copies = {
                BK: rng.choice((1, 1, 1, 2, 2, 3)),
                DVD: rng.choice((1, 1, 2)),
                AUD: rng.choice((1, 2)),
                MAG: 1,
                EBK: 1,
            }[itype]
            if rng.random() < 0.8:
                first_day = oldest + dt.timedelta(days=rng.randrange((self.start - oldest).days))
            else:
                first_day = self.start + dt.timedelta(
                    days=rng.randrange(max(1, (self.last_day - self.start).days))
                )
            popularity = math.exp(rng.gauss(0, 0.9)) * (1.8 if first_day >= self.start else 1.0)
            for copy in range(n_copies):
                accessioned = first_day + dt.timedelta(days=copy * rng.randrange(0, 60))
                accessioned = min(accessioned, self.last_day)
                biblio.created = min(biblio.created, accessioned)
                self.items.append(self._item(rng, biblio, kind, itype, accessioned, popularity))

    def _item(
        self, rng, biblio: _Biblio, kind: str, itype: str, accessioned: dt.date, weight: float
    ) -> _Item:
        number = len(self.items) + 1
        ccode, location = {
            "FIC": ("FIC", "GEN"),
            "NFIC": ("NFIC", "GEN"),
            "JUV": ("JUV", "CHILD"),
            "YA": ("YA", "YA"),
            "DVD": ("MEDIA", "AV"),
            "AUD": ("AUDIO", "AV"),
            "MAG": ("PER", "PER"),
            "EBK": ("EBOOK", None),
        }[kind]
        author_key = (biblio.author or biblio.title).split()[-1].upper()[:3]
        if kind == "NFIC" or (kind == "EBK" and biblio.subject):
            dewey = next(d for t, _, d in _TOPICS if t == biblio.title)
            callnumber = f"{dewey} {author_key}"
        else:
            prefix = {
                "JUV": "J FIC",
                "YA": "YA FIC",
                "DVD": "DVD",
                "AUD": "CD FIC",
                "MAG": "PER",
                "EBK": "EBOOK",
            }.get(kind, "FIC")
            callnumber = f"{prefix} {author_key}"
        price = {
            BK: Decimal(rng.randrange(1299, 3499)) / 100,
            DVD: Decimal("24.99"),
            AUD: Decimal("39.99"),
            MAG: Decimal("5.99"),
            EBK: Decimal("0.00"),
        }[itype]
        enumchron = None
        if itype == MAG:
            enumchron = f"v. {rng.randint(5, 40)} no. {rng.randint(1, 12)}"
        home = self.branch_picker(rng) if itype != EBK else "MAIN"
        return _Item(
            itemnumber=number,
            biblionumber=biblio.biblionumber,
            itype=itype,
            ccode=ccode,
            location=location,
            homebranch=home,
            accessioned=accessioned,
            callnumber=callnumber,
            price=price,
            barcode=f"31234{number:09d}",
            enumchron=enumchron,
            juvenile=kind in ("JUV", "YA"),
            weight=weight,
            free_at=dt.datetime.combine(accessioned, dt.time(8)),
            holding=home,
        )

    # -- patrons -------------------------------------------------------------------------------

    def make_patrons(self) -> None:
        rng = self.rng["patrons"]
        n_staff = max(3, round(self.n_patrons * 0.01))
        n_child = round((self.n_patrons - n_staff) * 0.22)
        n_adult = self.n_patrons - n_staff - n_child
        userids: dict[str, int] = {}
        cards = rng.sample(range(10**9), self.n_patrons)

        setup_day = _years_before(self.start, 16)
        anon = self._new_patron(rng, ANON, "anon", userids, card=None, setup_day=setup_day)
        self.anon = anon
        for i in range(n_staff):
            self.staff.append(
                self._new_patron(rng, STAFF, "staff", userids, card=cards[i], setup_day=setup_day)
            )
        adults = [
            self._new_patron(rng, ADULT, None, userids, card=cards[n_staff + i])
            for i in range(n_adult)
        ]
        for i in range(n_child):
            self._new_patron(
                rng, CHILD, None, userids, card=cards[n_staff + n_adult + i], adults=adults
            )

        # Koha numbers patrons in order of enrolment.
        for number, patron in enumerate(
            sorted(self.patrons, key=lambda p: (p.enrolled, p.idx)), start=1
        ):
            patron.borrowernumber = number

    def _new_patron(
        self,
        rng: random.Random,
        category: str,
        kind: str | None,
        userids: dict[str, int],
        *,
        card: int | None,
        setup_day: dt.date | None = None,
        adults: list[_Patron] | None = None,
    ) -> _Patron:
        fake = self.fake
        as_of = self.as_of
        months = _ENROLMENT_MONTHS[category]
        renewed = None
        if kind == "anon":
            enrolled, expiry = setup_day, dt.date(2099, 12, 31)
        elif kind == "staff":
            enrolled = (
                setup_day
                if not self.staff
                else as_of - dt.timedelta(days=rng.randint(60, 15 * 365))
            )
            expiry, renewed = self._renew_until_valid(rng, enrolled, months)
        else:
            r = rng.random()
            kind = "lapsed_old" if r < 0.15 else "lapsed_recent" if r < 0.32 else "active"
            if kind == "active":
                if rng.random() < 0.55:
                    enrolled = self.start + dt.timedelta(
                        days=rng.randrange(max(1, (self.last_day - self.start).days))
                    )
                else:
                    oldest = _years_before(self.start, 8)
                    enrolled = oldest + dt.timedelta(days=rng.randrange((self.start - oldest).days))
                expiry, renewed = self._renew_until_valid(rng, enrolled, months)
            else:
                if kind == "lapsed_old":
                    expiry = _years_before(as_of, 3) - dt.timedelta(days=rng.randint(30, 4 * 365))
                else:
                    expiry = as_of - dt.timedelta(days=rng.randint(1, 3 * 365 - 5))
                terms = rng.choice((1, 1, 2, 3))
                enrolled = _add_months(expiry, -months * terms)
                if terms > 1:
                    renewed = _add_months(expiry, -months) - dt.timedelta(days=rng.randint(0, 20))

        if kind == "anon":
            patron = _Patron(
                idx=len(self.patrons),
                category=ANON,
                kind=kind,
                branch="MAIN",
                enrolled=enrolled,
                expiry=expiry,
                renewed=None,
                row={},
            )
            patron.row = self._anonymous_row(patron)
            self.patrons.append(patron)
            return patron

        sex = rng.choices(("F", "M", None), (0.49, 0.44, 0.07))[0]
        if sex == "F":
            first = fake.first_name_female()
        elif sex == "M":
            first = fake.first_name_male()
        else:
            first = fake.first_name()
        surname = fake.last_name()

        dob = self._birth_date(rng, category, enrolled)
        if dob is None:  # a child too old to have enrolled that long ago becomes an adult
            category = ADULT
            dob = self._birth_date(rng, ADULT, enrolled)

        patron = _Patron(
            idx=len(self.patrons),
            category=category,
            kind=kind,
            branch="MAIN",
            enrolled=enrolled,
            expiry=expiry,
            renewed=renewed,
            row={},
        )
        branch = self.branch_picker(rng)
        if category == CHILD and adults:
            patron.guarantor = self._guarantor(rng, adults, dob, enrolled)
            if patron.guarantor is not None:
                branch = patron.guarantor.branch
                if rng.random() < 0.85:
                    surname = patron.guarantor.row["surname"]
        patron.branch = branch
        patron.row = self._person_row(rng, patron, first, surname, sex, dob, card, userids)

        # Behaviour.
        base = {ADULT: 15.5, CHILD: 12.0, STAFF: 12.0}[category]
        patron.visit_rate = 0.0 if rng.random() < 0.12 else base * rng.gammavariate(1.3, 1 / 1.3)
        patron.late_prob = rng.choices((0.05, 0.15, 0.4), (0.70, 0.22, 0.08))[0]
        age = (as_of - dob).days / 365.25 if dob else 40
        if patron.row["email"] and age >= 10 and rng.random() < (0.5 if age >= 18 else 0.2):
            patron.search_rate = 5.0 * rng.gammavariate(1.2, 1 / 1.2)
        patron.wants_predue = bool(patron.row["email"]) and rng.random() < 0.25
        self.patrons.append(patron)
        return patron

    def _renew_until_valid(self, rng, enrolled: dt.date, months: int):
        expiry, renewed = _add_months(enrolled, months), None
        while expiry <= self.as_of:
            renewed = max(
                enrolled, min(self.last_day, expiry - dt.timedelta(days=rng.randint(0, 30)))
            )
            expiry = _add_months(expiry, months)
        return expiry, renewed

    def _birth_date(self, rng, category: str, enrolled: dt.date) -> dt.date | None:
        as_of = self.as_of
        if category == CHILD:
            youngest = min(_years_before(as_of, 4), _years_before(enrolled, 4))
            oldest = _years_before(as_of, 18) + dt.timedelta(days=1)
        elif category == STAFF:
            youngest = min(_years_before(as_of, 22), _years_before(enrolled, 18))
            oldest = _years_before(as_of, 66)
        else:
            youngest = min(_years_before(as_of, 18), _years_before(enrolled, 18))
            oldest = _years_before(as_of, 90)
        span = (youngest - oldest).days
        if span <= 0:
            if category == CHILD:
                return None
            return oldest
        if category == ADULT:  # more working-age adults than the very old
            return youngest - dt.timedelta(days=int(span * rng.random() ** 1.4))
        return oldest + dt.timedelta(days=rng.randrange(span))

    def _guarantor(
        self, rng, adults: list[_Patron], dob: dt.date, enrolled: dt.date
    ) -> _Patron | None:
        if rng.random() >= 0.65:
            return None
        for _ in range(12):
            cand = rng.choice(adults)
            gdob = cand.row["dateofbirth"]
            if cand.enrolled <= enrolled and gdob and 18 <= (dob - gdob).days / 365.25 <= 55:
                cand.has_guarantees = True
                return cand
        return None

    def _anonymous_row(self, patron: _Patron) -> dict[str, Any]:
        row = {c.name: None for c in schema.borrowers.c}
        row.update(
            surname="Anonymous",
            branchcode="MAIN",
            categorycode=ANON,
            userid="anonymous",
            dateenrolled=patron.enrolled,
            dateexpiry=patron.expiry,
            auth_method="password",
            privacy=1,
            privacy_guarantor_fines=0,
            privacy_guarantor_checkouts=0,
            checkprevcheckout="inherit",
            lang="default",
            login_attempts=0,
            anonymized=0,
            autorenew_checkouts=0,
            protected=1,
            borrowernotes="Statistical patron that anonymized circulation history points to.",
        )
        return row

    def _person_row(
        self,
        rng,
        patron: _Patron,
        first: str,
        surname: str,
        sex: str | None,
        dob: dt.date,
        card: int,
        userids: dict[str, int],
    ) -> dict[str, Any]:
        fake = self.fake
        g = patron.guarantor
        row = {c.name: None for c in schema.borrowers.c}
        if g is not None:  # same household
            for col in (
                "streetnumber",
                "streettype",
                "address",
                "address2",
                "city",
                "state",
                "zipcode",
                "country",
                "phone",
            ):
                row[col] = g.row[col]
        else:
            city = (
                self.branch_city[patron.branch] if rng.random() < 0.75 else rng.choice(self.cities)
            )
            if rng.random() < 0.6:
                row["streetnumber"] = fake.building_number()
                row["address"] = fake.street_name()
            else:
                row["address"] = fake.street_address()
            if rng.random() < 0.15:
                row["address2"] = fake.secondary_address()
            row.update(
                city=city,
                state=self.state,
                zipcode=rng.choice(self.zips[city]),
                country=rng.choice(("USA", None, None)),
            )
            row["phone"] = self.phone(rng) if rng.random() < 0.85 else None

        base = f"{_ascii(first)}.{_ascii(surname)}" or "patron"
        userids[base] = userids.get(base, 0) + 1
        userid = base if userids[base] == 1 else f"{base}{userids[base] - 1}"
        email = None
        if patron.category == CHILD and g is not None and rng.random() < 0.5:
            email = g.row["email"]
        elif patron.category != CHILD or rng.random() < 0.3:
            if rng.random() < 0.9:
                suffix = str(rng.randint(1, 99)) if rng.random() < 0.5 else ""
                domain = rng.choice(("example.com", "example.net", "example.org"))
                email = f"{base}{suffix}@{domain}"
        mobile = self.phone(rng) if rng.random() < 0.5 else None
        adult = patron.category != CHILD

        row.update(
            cardnumber=f"21234{card:09d}",
            surname=surname,
            firstname=first,
            preferred_name=first[:3] if rng.random() < 0.04 and len(first) > 4 else None,
            middle_name=fake.first_name() if rng.random() < 0.3 else None,
            title=(
                rng.choice(("Mr.", "Ms.", "Mrs.", "Dr.", "Mx."))
                if adult and rng.random() < 0.3
                else None
            ),
            othernames=fake.last_name() if rng.random() < 0.02 else None,
            initials=f"{first[:1]}{surname[:1]}" if rng.random() < 0.5 else None,
            pronouns=(
                rng.choice(("she/her", "he/him", "they/them")) if rng.random() < 0.05 else None
            ),
            email=email,
            mobile=mobile,
            fax=self.phone(rng) if adult and rng.random() < 0.005 else None,
            emailpro=f"{base}@work.example.com" if adult and rng.random() < 0.05 else None,
            phonepro=self.phone(rng) if adult and rng.random() < 0.05 else None,
            dateofbirth=dob,
            branchcode=patron.branch,
            categorycode=patron.category,
            dateenrolled=patron.enrolled,
            dateexpiry=patron.expiry,
            date_renewed=patron.renewed,
            gonenoaddress=1 if rng.random() < 0.01 else 0,
            lost=1 if rng.random() < 0.01 else 0,
            sex=sex,
            password="$2a$08$"
            + "".join(
                rng.choices(
                    "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=53
                )
            )
            if rng.random() < 0.85
            else None,
            auth_method="password",
            userid=userid,
            sort1=rng.choice(("RES", "RES", "RES", "NONRES")),
            smsalertnumber=mobile if mobile and rng.random() < 0.3 else None,
            privacy=rng.choices((1, 0, 2), (0.87, 0.08, 0.05))[0],
            privacy_guarantor_fines=0,
            privacy_guarantor_checkouts=1 if g is not None and rng.random() < 0.3 else 0,
            checkprevcheckout="inherit",
            lang="default",
            login_attempts=0,
            anonymized=0,
            autorenew_checkouts=1,
            primary_contact_method=(
                ("email" if email else "phone") if rng.random() < 0.6 else None
            ),
            protected=1 if rng.random() < 0.02 else 0,
        )
        if rng.random() < 0.08:
            row.update(
                B_streetnumber=fake.building_number(),
                B_address=fake.street_name(),
                B_city=fake.city(),
                B_state=fake.state_abbr(),
                B_zipcode=fake.zipcode(),
                B_phone=self.phone(rng) if rng.random() < 0.5 else None,
            )
            if rng.random() < 0.25:
                row["B_email"] = f"{base}.alt@example.net"
        if g is not None:
            rel = (
                "grandparent"
                if rng.random() < 0.1
                else {"F": "mother", "M": "father"}.get(g.row["sex"], "guardian")
            )
            row.update(
                contactname=g.row["surname"],
                contactfirstname=g.row["firstname"],
                contacttitle=g.row["title"],
                relationship=rel,
            )
            row["sort2"] = f"{rng.choice(self.cities)} Elementary"
        elif rng.random() < 0.06:
            row.update(
                altcontactfirstname=fake.first_name(),
                altcontactsurname=fake.last_name(),
                altcontactaddress1=fake.street_address(),
                altcontactaddress3=fake.city(),
                altcontactstate=self.state,
                altcontactzipcode=fake.zipcode_in_state(self.state),
                altcontactcountry="USA",
                altcontactphone=self.phone(rng),
                contactnote="Emergency contact" if rng.random() < 0.5 else None,
            )
        if rng.random() < 0.06:
            row["borrowernotes"] = rng.choice(_STAFF_NOTES).format(phone=row["phone"] or "")
        if rng.random() < 0.02:
            row["opacnote"] = "Please update your address at the front desk."
        if patron.category == STAFF:
            row.update(
                flags=1 if not self.staff else rng.choice((86, 6, 1030)),
                protected=rng.choice((0, 1)),
                sort1="STAFF",
            )
            if rng.random() < 0.3:
                row.update(
                    auth_method="two-factor",
                    secret="".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)),
                )
        if patron.kind == "active" and rng.random() < 0.005:
            row.update(
                debarred=self.as_of + dt.timedelta(days=rng.randint(7, 60)),
                debarredcomment=f"Restricted: spoke with {first} about damaged items",
            )
        return row

    # -- circulation ---------------------------------------------------------------------------

    def _window(self, p: _Patron) -> tuple[dt.date, dt.date] | None:
        lo, hi = max(self.start, p.enrolled), min(p.expiry, self.last_day)
        return (lo, hi) if lo <= hi else None

    def _seasonal_day(self, rng, lo: dt.date, hi: dt.date, category: str) -> dt.date | None:
        season = _SEASON[CHILD if category == CHILD else ADULT]
        span = (hi - lo).days + 1
        for _ in range(40):
            day = lo + dt.timedelta(days=rng.randrange(span))
            if _closed(day):
                continue
            if rng.random() * 1.8 * 1.25 < season[day.month - 1] * _WEEKDAY_WEIGHT[day.weekday()]:
                return day
        return None

    def circulate(self) -> None:
        rng = self.rng["circ"]
        visits: list[tuple[dt.datetime, int, int, str]] = []
        for p in self.patrons:
            window = self._window(p) if p.category != ANON else None
            if window is None or p.visit_rate <= 0:
                continue
            lo, hi = window
            for _ in range(_poisson(rng, p.visit_rate * ((hi - lo).days + 1) / 365.25)):
                day = self._seasonal_day(rng, lo, hi, p.category)
                if day is None:
                    continue
                when = _desk_time(rng, day)
                branch = p.branch if rng.random() < 0.8 else self.branch_picker(rng)
                extra = rng.choices((0, 1, 2, 3, 4, 5), (0.42, 0.25, 0.15, 0.09, 0.05, 0.04))[0]
                visits.append((when, p.idx, 1 + extra + (1 if p.category == CHILD else 0), branch))
        visits.sort()

        juvenile = [it for it in self.items if it.juvenile]
        general = [it for it in self.items if not it.juvenile]
        pools = {
            True: _Picker(juvenile, [it.weight for it in juvenile]),
            False: _Picker(
                general, [it.weight * (0.3 if it.itype == EBK else 1) for it in general]
            ),
        }
        staff_by_branch = {
            b: [s for s in self.staff if s.branch == b] or self.staff for b in BRANCH_CODES
        }
        for when, pidx, n_items, branch in visits:
            p = self.patrons[pidx]
            for k in range(n_items):
                issued = when + dt.timedelta(seconds=k * rng.randint(8, 45))
                kids = rng.random() < (0.75 if p.category == CHILD else 0.08)
                item = self._available(rng, pools[kids and bool(juvenile)], issued)
                if item is None:
                    continue
                self._lend(rng, p, item, issued, branch, staff_by_branch[branch])
        for loan in self.loans:  # loans still out at as_of
            if loan.returned is None:
                loan.item.onloan = loan.due.date()
                loan.patron.open_loans += 1

    def _available(self, rng, pick: _Picker, when: dt.datetime) -> _Item | None:
        for _ in range(8):
            item = pick(rng)
            if item.free_at <= when:
                return item
        return None

    def _lend(
        self,
        rng,
        p: _Patron,
        item: _Item,
        issued: dt.datetime,
        branch: str,
        desk_staff: list[_Patron],
    ) -> None:
        cutoff = self.cutoff
        interface = "sip" if rng.random() < 0.25 else "intranet"
        due_day = issued.date() + dt.timedelta(days=LOAN_DAYS)
        renewals: list[tuple[dt.datetime, str]] = []
        last = issued
        for _ in range(rng.choices((0, 1, 2), (0.74, 0.19, 0.07))[0]):
            span = dt.datetime.combine(due_day, dt.time(23, 59)) - last
            when = (last + span * rng.uniform(0.35, 0.97)).replace(microsecond=0)
            if when.hour < 6:
                when += dt.timedelta(hours=6)
            if when >= cutoff:
                break
            how = rng.choices(("opac", "intranet", "cron"), (0.6, 0.3, 0.1))[0]
            renewals.append((when, how))
            last = when
            due_day = when.date() + dt.timedelta(days=LOAN_DAYS)
        due = dt.datetime.combine(due_day, dt.time(23, 59))

        if item.itype != EBK and rng.random() < p.late_prob:
            days_late = 1 + min(int(rng.expovariate(1 / 10)), 150)
            returned = _desk_time(rng, due_day + dt.timedelta(days=days_late))
        else:
            avail = (due_day - last.date()).days
            offset = round(avail * rng.betavariate(2.2, 1.3))
            if offset == 0:
                returned = _dodge_dst(last + dt.timedelta(minutes=rng.randint(20, 240)))
            else:
                returned = _desk_time(rng, last.date() + dt.timedelta(days=offset))
        if returned >= cutoff:
            returned = None

        loan = _Loan(
            issue_id=len(self.loans) + 1,
            patron=p,
            item=item,
            issuer_id=rng.choice(desk_staff).borrowernumber,
            branch=branch,
            issued=issued,
            interface=interface,
            due=due,
            renewals=renewals,
            returned=returned,
            checkin_branch=None,
        )
        if returned is not None:
            loan.checkin_branch = branch if rng.random() < 0.85 else self.branch_picker(rng)
        if rng.random() < 0.008:
            end = returned or cutoff
            loan.notedate = _dodge_dst(
                (issued + (end - issued) * rng.uniform(0.05, 0.9)).replace(microsecond=0)
            )
            loan.note = rng.choice(_CHECKOUT_NOTES).format(
                n=rng.randint(10, 90),
                m=rng.randint(91, 200),
                first=p.first,
                phone=p.row["phone"] or p.row["mobile"] or "",
            )
        self._fine(rng, loan, desk_staff)
        self.loans.append(loan)

        item.free_at = returned or dt.datetime.max
        item.issues += 1
        item.renewals += len(renewals)
        item.last_borrowed = issued.date()
        item.last_seen = returned or issued
        item.holding = loan.checkin_branch or branch
        p.seen(issued)
        for when, how in renewals:
            if how == "opac":
                p.seen(when)

    def _fine(self, rng, loan: _Loan, desk_staff: list[_Patron]) -> None:
        p, item = loan.patron, loan.item
        if item.itype == EBK or p.category == STAFF:
            return
        due_day = loan.due.date()
        end_day = loan.returned.date() if loan.returned else self.last_day
        days_late = (end_day - due_day).days
        if days_late < 1:
            return
        rate = _FINE_PER_DAY[item.itype] / (2 if p.category == CHILD else 1)
        loan.fine = _money(min(rate * days_late, _FINE_CAP[item.itype]))
        loan.fine_date = dt.datetime.combine(due_day + dt.timedelta(days=1), dt.time(1, 5))
        if loan.returned is None or rng.random() >= 0.7:
            p.unpaid = True
            return
        wait = int(rng.expovariate(1 / 12))
        if wait == 0:
            paid = _dodge_dst(loan.returned + dt.timedelta(minutes=rng.randint(1, 10)))
        else:
            paid = _desk_time(rng, loan.returned.date() + dt.timedelta(days=wait))
        if paid >= self.cutoff:
            p.unpaid = True
            return
        loan.paid_at = paid
        loan.pay_type = rng.choices(("CASH", "CC", "SIP00"), (0.6, 0.3, 0.1))[0]
        loan.pay_branch = loan.checkin_branch or loan.branch
        loan.pay_manager = (
            None if loan.pay_type == "SIP00" else rng.choice(desk_staff).borrowernumber
        )

    # -- holds ---------------------------------------------------------------------------------

    def make_holds(self) -> None:
        rng = self.rng["holds"]
        by_biblio: dict[int, list[_Item]] = {}
        for it in self.items:
            by_biblio.setdefault(it.biblionumber, []).append(it)

        for loan in self.loans:  # holds that this checkout filled
            if loan.item.itype == EBK or rng.random() >= 0.11:
                continue
            issued_day = loan.issued.date()
            placed = issued_day - dt.timedelta(days=rng.randint(1, 21))
            if placed < loan.patron.enrolled:
                continue
            waiting = issued_day - dt.timedelta(
                days=rng.randint(0, min(6, (issued_day - placed).days))
            )
            loan.item.holds += 1
            self.holds.append(
                _Hold(
                    patron=loan.patron,
                    biblio=self.biblios[loan.item.biblionumber - 1],
                    item=loan.item,
                    branch=loan.branch,
                    reservedate=placed,
                    found="F",
                    waitingdate=waiting,
                    cancellationdate=None,
                    expirationdate=waiting + dt.timedelta(days=7),
                    patron_expiration_date=None,
                    notes=self._hold_note(rng, loan.patron),
                    timestamp=loan.issued,
                    priority=0,
                    is_open=False,
                )
            )

        # Holds that were never filled: cancelled, expired, or still waiting in the queue.
        candidates = [p for p in self.patrons if p.visit_rate > 0 and self._window(p)]
        if not candidates:
            return
        pick_patron = _Picker(candidates, [p.visit_rate for p in candidates])
        pools = {
            kids: _Picker(items, [it.weight for it in items])
            for kids, items in (
                (True, [it for it in self.items if it.juvenile and it.itype != EBK]),
                (False, [it for it in self.items if not it.juvenile and it.itype != EBK]),
            )
            if items
        }
        for _ in range(round(len(self.loans) * 0.035)):
            p = pick_patron(rng)
            lo, hi = self._window(p)
            placed = lo + dt.timedelta(days=rng.randrange((hi - lo).days + 1))
            wants_kids = p.category == CHILD and rng.random() < 0.75
            pool = pools.get(wants_kids) or pools.get(not wants_kids)
            biblio = self.biblios[pool(rng).biblionumber - 1]
            expired = rng.random() < 0.2
            if expired:
                pexp = placed + dt.timedelta(days=rng.randint(14, 90))
                ends = pexp + dt.timedelta(days=1)
            else:
                pexp = None
                ends = placed + dt.timedelta(days=rng.randint(1, 60))
            hold = _Hold(
                patron=p,
                biblio=biblio,
                item=None,
                branch=p.branch,
                reservedate=placed,
                found=None,
                waitingdate=None,
                cancellationdate=None,
                expirationdate=None,
                patron_expiration_date=pexp,
                notes=self._hold_note(rng, p),
                timestamp=dt.datetime.combine(placed, dt.time(12)),
                priority=0,
                is_open=False,
            )
            if ends > self.last_day:
                if placed >= self.as_of - dt.timedelta(days=60) and p.expiry > self.as_of:
                    self._open_hold(rng, hold, by_biblio)
                    self.holds.append(hold)
                    continue
                # Nobody came for it before the snapshot: cancelled by staff or cron.
                ends = self.last_day - dt.timedelta(
                    days=rng.randint(0, min(30, (self.last_day - placed).days))
                )
                if pexp and pexp > ends:
                    hold.patron_expiration_date = None
            hold.cancellationdate = ends
            hold.timestamp = _desk_time(rng, ends)
            if hold.timestamp >= self.cutoff:
                hold.timestamp = self.cutoff - dt.timedelta(minutes=rng.randint(5, 600))
            self.holds.append(hold)

        self.holds.sort(
            key=lambda h: (
                h.reservedate,
                h.patron.borrowernumber,
                h.biblio.biblionumber,
                h.timestamp,
            )
        )
        for rid, hold in enumerate(self.holds, start=1):
            hold.reserve_id = rid

    def _open_hold(self, rng, hold: _Hold, by_biblio: dict[int, list[_Item]]) -> None:
        hold.is_open = True
        hold.priority = rng.randint(1, 4)
        hold.timestamp = _desk_time(rng, hold.reservedate)
        hold.patron.open_holds += 1
        free = [it for it in by_biblio[hold.biblio.biblionumber] if it.free_at <= self.cutoff]
        if free and rng.random() < 0.3:
            item = rng.choice(free)
            waiting = max(hold.reservedate, self.last_day - dt.timedelta(days=rng.randint(0, 5)))
            item.free_at = dt.datetime.max  # on the hold shelf, not for a second hold
            hold.item, hold.found, hold.priority = item, "W", 0
            hold.waitingdate = waiting
            hold.expirationdate = waiting + dt.timedelta(days=7)
            hold.timestamp = _desk_time(rng, waiting)

    def _hold_note(self, rng, p: _Patron) -> str | None:
        if rng.random() >= 0.08:
            return None
        return rng.choice(_HOLD_NOTES).format(
            first=p.first,
            phone=p.row["phone"] or p.row["mobile"] or "",
            other=self.fake.first_name_male(),
        )

    # -- OPAC searches -------------------------------------------------------------------------

    def make_searches(self) -> None:
        rng = self.rng["search"]
        titles = [b for b in self.biblios if b.kind != "MAG"]
        for p in self.patrons:
            window = self._window(p)
            if window is None or p.search_rate <= 0:
                continue
            lo, hi = window
            for _ in range(_poisson(rng, p.search_rate * ((hi - lo).days + 1) / 365.25)):
                day = lo + dt.timedelta(days=rng.randrange((hi - lo).days + 1))
                when = _online_time(rng, day)
                session = f"{rng.getrandbits(128):032x}"
                for _ in range(rng.choices((1, 2, 3, 4), (0.5, 0.25, 0.15, 0.1))[0]):
                    if when >= self.cutoff:
                        break
                    self.searches.append(
                        (when, p.borrowernumber, session, *self._query(rng, titles))
                    )
                    p.seen(when)
                    when += dt.timedelta(seconds=rng.randint(20, 400))

    def _query(self, rng, titles: list[_Biblio]) -> tuple[str, str, int]:
        r = rng.random()
        if r < 0.3:
            idx, term, total = "kw", rng.choice(_SEARCH_EXTRA), rng.randint(0, 400)
        elif r < 0.55:
            idx, term, total = "ti", rng.choice(titles).title, rng.randint(1, 12)
        elif r < 0.7:
            author = rng.choice(titles).author
            idx, term, total = (
                ("au", author, rng.randint(1, 8))
                if author
                else ("kw", rng.choice(_SEARCH_EXTRA), rng.randint(0, 400))
            )
        else:
            idx, term, total = "su", rng.choice(_TOPICS)[1], rng.randint(1, 60)
        return f"{idx},wrdl: {term}", f"idx={idx}&q={quote(term)}&weight_search=1", total

    # -- patrons deleted long ago --------------------------------------------------------------

    def delete_some(self) -> None:
        rng = self.rng["delete"]
        long_ago = self.as_of - dt.timedelta(days=400)
        for p in self.patrons:
            share = {"lapsed_old": 0.2, "lapsed_recent": 0.1 if p.expiry < long_ago else 0.0}
            if (
                p.guarantor
                or p.has_guarantees
                or p.open_loans
                or p.unpaid
                or p.open_holds
                or rng.random() >= share.get(p.kind, 0.0)
            ):
                continue
            day = p.expiry + dt.timedelta(days=rng.randint(30, 720))
            if p.last_active and day <= p.last_active.date():
                day = p.last_active.date() + dt.timedelta(days=1)
            when = _desk_time(rng, day)
            if when < self.cutoff - dt.timedelta(days=1):
                p.deleted_at = when
        # Payments and fines made after a deletion would be impossible; keep it simple by
        # undoing deletions that would precede any of the patron's money or holds.
        for loan in self.loans:
            p = loan.patron
            if (
                p.deleted_at
                and max(loan.paid_at or dt.datetime.min, loan.returned or dt.datetime.max)
                >= p.deleted_at
            ):
                p.deleted_at = None
        for hold in self.holds:
            p = hold.patron
            if p.deleted_at and hold.timestamp >= p.deleted_at:
                p.deleted_at = None

    # -- the rest of a patron's traces (issue 3) -----------------------------------------------

    def make_extras(self) -> None:
        """Rows for the inventory's other patron tables: registration extras of living
        patrons (some of them long expired, so retention has work), and transactional
        traces with their own clocks. Its own random stream, drawn after every other phase,
        so the rest of the library is the same with or without it."""
        rng = self.rng["extras"]
        rows: dict[str, list[dict]] = {}
        self.extra_rows = rows
        living = [p for p in self.patrons if p.category not in (ANON, STAFF) and not p.deleted_at]
        recent = self.cutoff - dt.timedelta(days=400)

        def add(table: str, **row: Any) -> None:
            rows.setdefault(table, []).append(row)

        def moment(lo: dt.date, hi: dt.date | None = None) -> dt.datetime:
            hi = min(hi or self.last_day, self.last_day)
            lo = min(max(lo, self.start), hi)
            return _desk_time(rng, lo + dt.timedelta(days=rng.randint(0, (hi - lo).days)))

        books = [b.biblionumber for b in self.biblios]
        for p in living:
            bn = p.borrowernumber
            since = max(p.enrolled, self.start)
            for attr in rng.sample(range(1, 7), rng.choice((0, 1, 2, 2))):
                add(
                    "borrower_message_preferences",
                    borrowernumber=bn,
                    message_attribute_id=attr,
                    days_in_advance=2 if attr == 2 else None,
                    wants_digest=int(rng.random() < 0.2),
                )
            if rng.random() < 0.3:
                code = "SCHOOL" if p.category == CHILD else "STUDENTID"
                value = rng.choice(_SCHOOLS) if code == "SCHOOL" else f"S{rng.randrange(10**7):07d}"
                add("borrower_attributes", borrowernumber=bn, code=code, attribute=value)
            if rng.random() < 0.5:
                add(
                    "patron_consent",
                    borrowernumber=bn,
                    type="GDPR_PROCESSING",
                    given_on=moment(since),
                )
            if rng.random() < 0.05:
                add("alert", borrowernumber=bn, type="issue", externalid=str(rng.randint(1, 12)))
            if rng.random() < 0.15:
                add(
                    "borrower_password_history",
                    borrowernumber=bn,
                    password="$2a$08$" + "".join(rng.choices(_HASH_CHARS, k=53)),
                    created_on=moment(since),
                )
            if rng.random() < 0.08:
                self._make_list(rng, rows, p, books, living, moment(since))
            for biblio in rng.sample(books, rng.choice((0,) * 9 + (1, 2, 3))):
                add(
                    "ratings",
                    borrowernumber=bn,
                    biblionumber=biblio,
                    rating_value=rng.randint(1, 5),
                    timestamp=moment(since),
                )
            if rng.random() < 0.02:
                add(
                    "reviews",
                    borrowernumber=bn,
                    biblionumber=rng.choice(books),
                    review=rng.choice(_REVIEWS),
                    approved=1,
                    datereviewed=moment(since),
                )
            if p.expiry < self.as_of and rng.random() < 0.05:
                needed = moment(p.expiry - dt.timedelta(days=20), p.expiry)
                add(
                    "discharges",
                    borrower=bn,
                    needed=needed,
                    validated=needed + dt.timedelta(hours=2),
                )
            if rng.random() < 0.02:
                add("patron_list_patrons", patron_list_id=rng.randint(1, 3), borrowernumber=bn)
            if p.expiry >= self.as_of:
                self._make_recent_traces(rng, add, p, moment, recent)
        for routing, s in enumerate(rng.sample(self.staff, min(4, len(self.staff))), start=1):
            add(
                "subscriptionroutinglist",
                borrowernumber=s.borrowernumber,
                ranking=routing,
                subscriptionid=1,
            )
        self._make_jobs_and_groups(rng, add, moment, living)

    def _make_list(self, rng, rows, p: _Patron, books, living, created: dt.datetime) -> None:
        number = len(rows.get("virtualshelves", ())) + 1
        rows.setdefault("virtualshelves", []).append(
            {
                "shelfnumber": number,
                "shelfname": rng.choice(("To read", "Favourites", "Book club", "For the kids")),
                "owner": p.borrowernumber,
                "public": int(rng.random() < 0.2),
                "created_on": created,
                "lastmodified": created,
            }
        )
        for biblio in rng.sample(books, rng.randint(1, 5)):
            rows.setdefault("virtualshelfcontents", []).append(
                {
                    "shelfnumber": number,
                    "biblionumber": biblio,
                    "borrowernumber": p.borrowernumber,
                    "dateadded": created,
                }
            )
        if rng.random() < 0.2:
            other = rng.choice(living)
            if other is not p:
                rows.setdefault("virtualshelfshares", []).append(
                    {
                        "shelfnumber": number,
                        "borrowernumber": other.borrowernumber,
                        "invitekey": f"{rng.randrange(16**10):010x}",
                        "sharedate": created,
                    }
                )

    def _make_recent_traces(self, rng, add, p: _Patron, moment, recent) -> None:
        """Traces a current patron leaves with their own clocks (some past their window)."""
        bn = p.borrowernumber
        if rng.random() < 0.02:
            when = moment(recent.date())
            add(
                "curbside_pickups",
                borrowernumber=bn,
                branchcode=p.branch,
                scheduled_pickup_datetime=when,
                delivered_datetime=when + dt.timedelta(minutes=7),
            )
        if rng.random() < 0.01:
            add(
                "borrower_password_recovery",
                borrowernumber=bn,
                uuid=f"{rng.randrange(16**32):032x}",
                valid_until=moment(recent.date()) + dt.timedelta(days=2),
            )
        if rng.random() < 0.01:
            start = self.as_of - dt.timedelta(days=rng.choice((900, 400, 100)))
            add(
                "patron_quota",
                description="Interlibrary loans",
                patron_id=bn,
                allocation=10,
                used=rng.randint(0, 10),
                start_date=start,
                end_date=start + dt.timedelta(days=364),
            )

    def _make_jobs_and_groups(self, rng, add, moment, living) -> None:
        start = (self.cutoff - dt.timedelta(days=365)).date()
        current = [p for p in living if p.expiry >= self.as_of]
        adults = [p for p in current if p.category == ADULT]
        for p in rng.sample(adults, min(len(adults), max(1, self.n_patrons // 300))):
            add("housebound_role", borrowernumber_id=p.borrowernumber, housebound_deliverer=1)
        # Home delivery for some adults, current or long gone (retention then has work).
        grown = [p for p in living if p.category == ADULT]
        for p in rng.sample(grown, min(len(grown), max(2, self.n_patrons // 100))):
            add(
                "housebound_profile",
                borrowernumber=p.borrowernumber,
                day=rng.choice(("monday", "wednesday", "friday")),
                frequency=rng.choice(("every_week", "every_other_week", "monthly")),
                fav_subjects=rng.choice(_TOPICS)[1],
                referral="Social services",
                notes=rng.choice(("Ring twice", "Leave with neighbour", None)),
            )
        for p in rng.sample(current, min(len(current), max(2, self.n_patrons // 100))):
            add(
                "creator_batches",
                batch_id=rng.randint(1, 4),
                borrower_number=p.borrowernumber,
                timestamp=moment(start),
                branch_code=p.branch,
                creator="Patroncards",
            )
        # Interlibrary loans requested in batches: one completed long ago, one recently.
        for number, days_ago in enumerate((200, 20), start=1):
            p = rng.choice(current)
            done = self.as_of - dt.timedelta(days=days_ago)
            add(
                "illbatches",
                ill_batch_id=number,
                name=f"Batch {number}",
                backend="Standard",
                patron_id=p.borrowernumber,
                library_id=p.branch,
                status_code="COMPLETED",
            )
            for _ in range(2):
                add(
                    "illrequests",
                    borrowernumber=p.borrowernumber,
                    branchcode=p.branch,
                    status="COMP",
                    placed=done - dt.timedelta(days=30),
                    updated=_desk_time(rng, done),
                    completed=done,
                    notesopac=rng.choice(("For my thesis", None)),
                    backend="Standard",
                    batch_id=number,
                )
        for _ in range(max(2, self.n_patrons // 200)):
            enqueued = moment(start)
            add(
                "background_jobs",
                status="finished",
                progress=1,
                size=1,
                borrowernumber=rng.choice(self.staff).borrowernumber,
                type=rng.choice(
                    (
                        "batch_hold_cancel",
                        "update_elastic_index",
                        "batch_biblio_record_modification",
                    )
                ),
                queue="default",
                data="{}",
                context="{}",
                enqueued_on=enqueued,
                started_on=enqueued,
                ended_on=enqueued + dt.timedelta(seconds=rng.randint(2, 90)),
            )
        for _ in range(rng.randint(1, 3)):
            add(
                "pending_offline_operations",
                userid=rng.choice(self.staff).row["userid"] or "staff",
                branchcode=rng.choice(BRANCH_CODES),
                timestamp=moment(start),
                action="issue",
                barcode=rng.choice(self.items).barcode,
                cardnumber=rng.choice(living).row["cardnumber"],
            )
        # Some closed holds were placed together with others (Koha's hold groups).
        closed = [h for h in self.holds if not h.is_open and not h.patron.deleted_at]
        for number, h in enumerate(rng.sample(closed, min(len(closed), len(closed) // 50)), 1):
            add("hold_groups", hold_group_id=number, borrowernumber=h.patron.borrowernumber)
            self.hold_group_of[h.reserve_id] = number
        # A club hold placed for members, one of whom could not get a hold.
        for club_hold in (1, 2):
            add(
                "club_holds",
                id=club_hold,
                club_id=1,
                biblio_id=rng.choice(self.biblios).biblionumber,
                date_created=moment(start),
            )
            for member in rng.sample(living, min(3, len(living))):
                add(
                    "club_holds_to_patron_holds",
                    club_hold_id=club_hold,
                    patron_id=member.borrowernumber,
                    error_code="tooManyHoldsForThisRecord",
                    error_message="too many holds",
                )

    def _write_extras(self, sink: _Sink) -> None:
        for table, table_rows in self.extra_rows.items():
            for row in table_rows:
                sink.add(table, row)

    # -- output --------------------------------------------------------------------------------

    def write(self, conn: Connection, batch_size: int) -> dict[str, int]:
        sink = _Sink(conn, batch_size)
        self._write_reference(sink)
        self._write_patrons(sink)
        self._write_catalog(sink)
        self._write_circulation(sink)
        self._write_holds(sink)
        self._write_money(sink)
        self._write_searches(sink)
        self._write_notices(sink)
        self._write_logs(sink)
        self._write_extras(sink)
        sink.flush()
        return dict(sink.counts)

    def _write_reference(self, sink: _Sink) -> None:
        for code, name, street, _ in _BRANCHES:
            city = self.branch_city[code]
            sink.add(
                "branches",
                {
                    "branchcode": code,
                    "branchname": name,
                    "branchaddress1": street,
                    "branchcity": city,
                    "branchstate": self.state,
                    "branchzip": self.zips[city][0],
                    "branchcountry": "USA",
                    "branchphone": f"({self.area_codes[0]}) 555-0100",
                    "branchemail": f"{code.lower()}@library.example.org",
                    "branchurl": f"https://library.example.org/{code.lower()}",
                },
            )
        for code, desc, ctype, months, upper, minimum, guarantee in (
            (ADULT, "Adult", "A", 36, None, 18, 0),
            (CHILD, "Child", "C", 24, 17, 4, 1),
            (STAFF, "Staff", "S", 60, None, 18, 0),
            (ANON, "Anonymous (statistical)", "X", None, None, None, 0),
        ):
            sink.add(
                "categories",
                {
                    "categorycode": code,
                    "description": desc,
                    "category_type": ctype,
                    "enrolmentperiod": months,
                    "upperagelimit": upper,
                    "dateofbirthrequired": minimum,
                    "overduenoticerequired": 1 if ctype != "X" else 0,
                    "default_privacy": "default",
                    "can_be_guarantee": guarantee,
                },
            )
        for code in ITEMTYPE_CODES:
            sink.add(
                "itemtypes",
                {
                    "itemtype": code,
                    "description": _ITEMTYPE_NAMES[code],
                    "defaultreplacecost": Decimal("25.00") if code != EBK else None,
                },
            )
        prefs = (
            (
                "AnonymousPatron",
                str(self.anon.borrowernumber),
                "",
                "Set the identity of the anonymous patron (for anonymized circulation history)",
                "Integer",
            ),
            ("OPACPrivacy", "1", "", "Allow patrons to choose their own privacy settings", "YesNo"),
            ("EnableOpacSearchHistory", "1", "", "Keep patron search history in the OPAC", "YesNo"),
            (
                "BorrowersLog",
                "1",
                "",
                "If ON, log edit/create/delete actions on patron data",
                "YesNo",
            ),
            ("IssueLog", "1", "", "If ON, log checkout activity", "YesNo"),
            ("ReturnLog", "1", "", "If ON, log checkin activity", "YesNo"),
            ("FinesLog", "1", "", "If ON, log fines", "YesNo"),
            (
                "TrackLastPatronActivityTriggers",
                "login,check_out,renewal",
                "",
                "Triggers that update borrowers.lastseen",
                "multiple",
            ),
        )
        for variable, value, options, explanation, kind in prefs:
            sink.add(
                "systempreferences",
                {
                    "variable": variable,
                    "value": value,
                    "options": options,
                    "explanation": explanation,
                    "type": kind,
                },
            )

    def _write_patrons(self, sink: _Sink) -> None:
        for p in sorted(self.patrons, key=lambda x: x.borrowernumber):
            row = dict(p.row)
            row["borrowernumber"] = p.borrowernumber
            row["lastseen"] = p.last_active
            touched = [dt.datetime.combine(p.renewed or p.enrolled, dt.time(10))]
            if p.last_active:
                touched.append(p.last_active)
            row["updated_on"] = max(touched)
            if p.deleted_at:
                row["updated_on"] = p.deleted_at
                sink.add("deletedborrowers", row)
            else:
                sink.add("borrowers", row)
        relation = 0
        for p in sorted(self.patrons, key=lambda x: x.borrowernumber):
            if p.guarantor and not p.deleted_at:
                relation += 1
                sink.add(
                    "borrower_relationships",
                    {
                        "id": relation,
                        "guarantor_id": p.guarantor.borrowernumber,
                        "guarantee_id": p.borrowernumber,
                        "relationship": p.row["relationship"],
                    },
                )

    def _write_catalog(self, sink: _Sink) -> None:
        for b in self.biblios:
            sink.add(
                "biblio",
                {
                    "biblionumber": b.biblionumber,
                    "frameworkcode": "",
                    "author": b.author,
                    "title": b.title,
                    "subtitle": b.subtitle,
                    "medium": b.medium,
                    "serial": 1 if b.kind == "MAG" else 0,
                    "copyrightdate": b.copyright,
                    "timestamp": dt.datetime.combine(b.created, dt.time(10)),
                    "datecreated": b.created,
                    "abstract": None,
                    "notes": f"Subject: {b.subject}" if b.subject else None,
                },
            )
        for it in self.items:
            stamp = it.last_seen or dt.datetime.combine(it.accessioned, dt.time(10))
            sink.add(
                "items",
                {
                    "itemnumber": it.itemnumber,
                    "biblionumber": it.biblionumber,
                    "biblioitemnumber": it.biblionumber,
                    "barcode": it.barcode,
                    "dateaccessioned": it.accessioned,
                    "homebranch": it.homebranch,
                    "holdingbranch": it.holding,
                    "price": it.price,
                    "replacementprice": it.price,
                    "replacementpricedate": it.accessioned,
                    "datelastborrowed": it.last_borrowed,
                    "datelastseen": it.last_seen,
                    "itemcallnumber": it.callnumber,
                    "issues": it.issues,
                    "renewals": it.renewals or None,
                    "reserves": it.holds or None,
                    "timestamp": stamp,
                    "location": it.location,
                    "permanent_location": it.location,
                    "onloan": it.onloan,
                    "cn_source": "ddc",
                    "ccode": it.ccode,
                    "itype": it.itype,
                    "enumchron": it.enumchron,
                    "copynumber": None,
                },
            )

    def _write_circulation(self, sink: _Sink) -> None:
        for loan in self.loans:
            p, item = loan.patron, loan.item
            bn = None if p.deleted_at else p.borrowernumber
            last_renewal = loan.renewals[-1][0] if loan.renewals else None
            row = {
                "issue_id": loan.issue_id,
                "borrowernumber": bn,
                "issuer_id": loan.issuer_id,
                "itemnumber": item.itemnumber,
                "date_due": loan.due,
                "branchcode": loan.branch,
                "returndate": loan.returned,
                "checkin_library": loan.checkin_branch,
                "lastreneweddate": last_renewal,
                "renewals_count": len(loan.renewals),
                "unseen_renewals": 0,
                "auto_renew": 0,
                "timestamp": loan.returned or last_renewal or loan.issued,
                "issuedate": loan.issued,
                "onsite_checkout": 0,
                "note": loan.note,
                "notedate": loan.notedate,
                "noteseen": None if loan.note is None else int(loan.returned is not None),
            }
            if loan.returned is None:
                row["borrowernumber"] = p.borrowernumber
                sink.add("issues", row)
            else:
                sink.add("old_issues", row)
            stat = {
                "branch": loan.branch,
                "value": 0.0,
                "other": "",
                "itemnumber": item.itemnumber,
                "itemtype": item.itype,
                "location": item.location,
                "borrowernumber": p.borrowernumber,
                "ccode": item.ccode,
                "categorycode": p.category,
                "illrequest_id": None,
            }
            sink.add(
                "statistics",
                {**stat, "datetime": loan.issued, "type": "issue", "interface": loan.interface},
            )
            for when, how in loan.renewals:
                sink.add(
                    "statistics", {**stat, "datetime": when, "type": "renew", "interface": how}
                )
            if loan.returned is not None:
                sink.add(
                    "statistics",
                    {
                        **stat,
                        "datetime": loan.returned,
                        "type": "return",
                        "branch": loan.checkin_branch,
                        "interface": loan.interface,
                    },
                )

    def _write_holds(self, sink: _Sink) -> None:
        for h in self.holds:
            row = {
                "reserve_id": h.reserve_id,
                "borrowernumber": None if h.patron.deleted_at else h.patron.borrowernumber,
                "reservedate": h.reservedate,
                "biblionumber": h.biblio.biblionumber,
                "branchcode": h.branch,
                "notificationdate": None,
                "reminderdate": None,
                "cancellationdate": h.cancellationdate,
                "cancellation_reason": None,
                "reservenotes": h.notes,
                "priority": h.priority,
                "found": h.found,
                "timestamp": h.timestamp,
                "itemnumber": h.item.itemnumber if h.item else None,
                "waitingdate": h.waitingdate,
                "expirationdate": h.expirationdate,
                "patron_expiration_date": h.patron_expiration_date,
                "lowestPriority": 0,
                "suspend": 0,
                "item_level_hold": 0,
                "non_priority": 0,
                "hold_group_id": self.hold_group_of.get(h.reserve_id),
            }
            sink.add("reserves" if h.is_open else "old_reserves", row)

    def _write_money(self, sink: _Sink) -> None:
        lines: list[tuple] = []
        for loan in self.loans:
            if loan.fine is None:
                continue
            lines.append((loan.fine_date, 0, loan))
            if loan.paid_at:
                lines.append((loan.paid_at, 1, loan))
        lines.sort(key=lambda x: (x[0], x[1], x[2].issue_id))
        for number, (when, is_payment, loan) in enumerate(lines, start=1):
            p = loan.patron
            bn = None if p.deleted_at else p.borrowernumber
            title = self.biblios[loan.item.biblionumber - 1].title
            base = {
                "accountlines_id": number,
                "borrowernumber": bn,
                "itemnumber": loan.item.itemnumber,
                "date": when,
                "credit_number": None,
                "register_id": None,
            }
            if not is_payment:
                returned = loan.returned is not None
                sink.add(
                    "accountlines",
                    {
                        **base,
                        "issue_id": None if returned else loan.issue_id,
                        "old_issue_id": loan.issue_id if returned else None,
                        "amount": loan.fine,
                        "description": title,
                        "credit_type_code": None,
                        "debit_type_code": "OVERDUE",
                        "status": "RETURNED" if returned else "UNRETURNED",
                        "payment_type": None,
                        "amountoutstanding": Decimal("0.00") if loan.paid_at else loan.fine,
                        "timestamp": loan.paid_at
                        or loan.returned
                        or dt.datetime.combine(self.last_day, dt.time(1, 5)),
                        "note": None,
                        "manager_id": None,
                        "interface": "cron",
                        "branchcode": loan.branch,
                    },
                )
            else:
                sink.add(
                    "accountlines",
                    {
                        **base,
                        "issue_id": None,
                        "old_issue_id": None,
                        "amount": -loan.fine,
                        "description": "",
                        "credit_type_code": "PAYMENT",
                        "debit_type_code": None,
                        "status": None,
                        "payment_type": loan.pay_type,
                        "amountoutstanding": Decimal("0.00"),
                        "timestamp": when,
                        "note": None,
                        "manager_id": loan.pay_manager,
                        "interface": "sip" if loan.pay_type == "SIP00" else "intranet",
                        "branchcode": loan.pay_branch,
                    },
                )
                sink.add(
                    "statistics",
                    {
                        "datetime": when,
                        "branch": loan.pay_branch,
                        "value": float(loan.fine),
                        "type": "payment",
                        "other": "",
                        "illrequest_id": None,
                        "itemnumber": None,
                        "itemtype": None,
                        "location": None,
                        "borrowernumber": p.borrowernumber,
                        "ccode": None,
                        "categorycode": p.category,
                        "interface": "sip" if loan.pay_type == "SIP00" else "intranet",
                    },
                )

    def _write_searches(self, sink: _Sink) -> None:
        self.searches.sort(key=lambda s: (s[0], s[1], s[2]))
        for number, (when, bn, session, desc, cgi, total) in enumerate(self.searches, start=1):
            sink.add(
                "search_history",
                {
                    "id": number,
                    "userid": bn,
                    "sessionid": session,
                    "query_desc": desc[:255],
                    "query_cgi": cgi,
                    "type": "biblio",
                    "total": total,
                    "time": when,
                },
            )

    # notices and logs are gathered as tuples, then sorted so ids follow time as in Koha.

    def _write_notices(self, sink: _Sink) -> None:
        rng = self.rng["notices"]
        notes: list[tuple] = []
        branch_name = {b[0]: b[1] for b in _BRANCHES}

        def add(
            when: dt.datetime, p: _Patron, code: str, subject: str, body: str, sms: bool = False
        ) -> None:
            if when >= self.cutoff or p.deleted_at:
                return
            email = p.row["email"]
            if code == "WELCOME" and not email:
                return
            notes.append(
                (
                    when,
                    p.borrowernumber,
                    code,
                    "email" if email else "print",
                    subject,
                    f"Dear {p.full_name},\n\n{body}\n\n{branch_name[p.branch]}",
                    email,
                    p.branch,
                )
            )
            if sms and p.row["smsalertnumber"]:
                notes.append(
                    (
                        when,
                        p.borrowernumber,
                        code,
                        "sms",
                        None,
                        f"{p.first}: {body.splitlines()[0][:120]}",
                        None,
                        p.branch,
                    )
                )

        for p in self.patrons:
            if p.category in (ANON, STAFF):
                continue
            if p.enrolled >= self.start:
                add(
                    dt.datetime.combine(p.enrolled, dt.time(11, 30)),
                    p,
                    "WELCOME",
                    f"Welcome to {branch_name[p.branch]}",
                    f"Your library card {p.row['cardnumber']} is ready. Log in as "
                    f"{p.row['userid']}.",
                )
            warn = p.expiry - dt.timedelta(days=14)
            if self.start <= warn and p.enrolled <= warn:
                add(
                    dt.datetime.combine(warn, dt.time(6, 10)),
                    p,
                    "MEMBERSHIP_EXPIRY",
                    "Your library card is about to expire",
                    f"Your card expires on {p.expiry:%m/%d/%Y}. We have you at "
                    f"{p.row['address'] or ''}, {p.row['city'] or ''}.",
                )
        for loan in self.loans:
            p = loan.patron
            title = self.biblios[loan.item.biblionumber - 1].title
            due_day = loan.due.date()
            end = loan.returned or self.cutoff
            if p.wants_predue:
                when = dt.datetime.combine(due_day - dt.timedelta(days=3), dt.time(6, 20))
                if loan.issued < when < end:
                    add(
                        when,
                        p,
                        "PREDUE",
                        "Courtesy notice",
                        f"{title} (barcode {loan.item.barcode}) is due on {due_day:%m/%d/%Y}.",
                    )
            when = dt.datetime.combine(due_day + dt.timedelta(days=7), dt.time(6, 30))
            if when < end:
                add(
                    when,
                    p,
                    "ODUE",
                    "Overdue notice",
                    f"According to our records, {title} (barcode {loan.item.barcode}) "
                    f"was due on {due_day:%m/%d/%Y}. Please return it as soon as possible.",
                    sms=True,
                )
        for h in self.holds:
            if h.found in ("F", "W") and h.waitingdate:
                when = _desk_time(rng, h.waitingdate)
                if h.found == "F" and when >= h.timestamp:
                    when = h.timestamp - dt.timedelta(minutes=rng.randint(10, 120))
                add(
                    when,
                    h.patron,
                    "HOLD",
                    "Hold available for pickup",
                    f"{h.biblio.title} is waiting for you at {branch_name[h.branch]}.",
                    sms=True,
                )

        notes.sort(key=lambda n: (n[0], n[1], n[2], n[3]))
        for number, (when, bn, code, transport, subject, content, to, branch) in enumerate(
            notes, start=1
        ):
            status, failure, updated = (
                "sent",
                None,
                when + dt.timedelta(seconds=rng.randint(60, 1800)),
            )
            if when >= self.cutoff - dt.timedelta(days=1) and rng.random() < 0.7:
                status, updated = "pending", when
            elif updated >= self.cutoff:
                status, updated = "pending", when
            elif transport == "email" and rng.random() < 0.015:
                status, failure = "failed", "SENDMAIL"
            sink.add(
                "message_queue",
                {
                    "message_id": number,
                    "letter_id": None,
                    "borrowernumber": bn,
                    "subject": subject,
                    "content": content,
                    "metadata": None,
                    "letter_code": code,
                    "message_transport_type": transport,
                    "status": status,
                    "time_queued": when,
                    "updated_on": updated,
                    "to_address": to if transport == "email" else None,
                    "cc_address": None,
                    "from_address": f"{branch.lower()}@library.example.org",
                    "reply_address": None,
                    "content_type": 'text/plain; charset="UTF-8"',
                    "failure_code": failure,
                },
            )

    def _write_logs(self, sink: _Sink) -> None:
        rng = self.rng["logs"]
        fake = self.fake
        logs: list[tuple] = []

        def staff_at(branch: str) -> int:
            local = [s for s in self.staff if s.branch == branch] or self.staff
            return rng.choice(local).borrowernumber

        for p in sorted(self.patrons, key=lambda x: x.borrowernumber):
            if p.category == ANON:
                continue
            bn, row = p.borrowernumber, p.row
            if p.enrolled >= self.start:
                info = {
                    k: row[k]
                    for k in (
                        "cardnumber",
                        "surname",
                        "firstname",
                        "email",
                        "categorycode",
                        "branchcode",
                    )
                }
                when = dt.datetime.combine(p.enrolled, dt.time(11, 29))
                logs.append(
                    (
                        when,
                        staff_at(p.branch),
                        "MEMBERS",
                        "CREATE",
                        bn,
                        json.dumps(info, default=str),
                        "intranet",
                        None,
                        None,
                    )
                )
            if p.renewed and p.renewed >= self.start:
                logs.append(
                    (
                        _desk_time(rng, p.renewed),
                        staff_at(p.branch),
                        "MEMBERS",
                        "RENEW",
                        bn,
                        "Membership renewed",
                        "intranet",
                        None,
                        None,
                    )
                )
            window = self._window(p)
            if window and rng.random() < 0.3:
                lo, hi = window
                for _ in range(rng.randint(1, 2)):
                    day = lo + dt.timedelta(days=rng.randrange((hi - lo).days + 1))
                    field = rng.choice(("email", "phone", "address"))
                    before = {
                        "email": f"{_ascii(p.first)}{rng.randint(1, 999)}@example.com",
                        "phone": self.phone(rng),
                        "address": fake.street_address(),
                    }[field]
                    after = row[field] or ""
                    info = {field: {"before": before, "after": after}}
                    diff = {"D": {field: {"N": after, "O": before}}}
                    by_opac = rng.random() < 0.3
                    logs.append(
                        (
                            _desk_time(rng, day),
                            bn if by_opac else staff_at(p.branch),
                            "MEMBERS",
                            "MODIFY",
                            bn,
                            json.dumps(info),
                            "opac" if by_opac else "intranet",
                            None,
                            json.dumps(diff),
                        )
                    )
            if p.deleted_at:
                info = {k: row[k] for k in ("cardnumber", "surname", "firstname")}
                logs.append(
                    (
                        p.deleted_at,
                        staff_at(p.branch),
                        "MEMBERS",
                        "DELETE",
                        bn,
                        json.dumps(info),
                        "intranet",
                        None,
                        None,
                    )
                )

        for loan in self.loans:
            bn, item = loan.patron.borrowernumber, str(loan.item.itemnumber)
            if loan.issued >= self.log_from:
                logs.append(
                    (
                        loan.issued,
                        loan.issuer_id or 0,
                        "CIRCULATION",
                        "ISSUE",
                        bn,
                        item,
                        loan.interface,
                        None,
                        None,
                    )
                )
            for when, how in loan.renewals:
                if when >= self.log_from:
                    user = bn if how == "opac" else 0 if how == "cron" else loan.issuer_id or 0
                    logs.append(
                        (
                            when,
                            user,
                            "CIRCULATION",
                            "RENEWAL",
                            bn,
                            item,
                            how,
                            "automatic_renewals.pl" if how == "cron" else None,
                            None,
                        )
                    )
            if loan.returned and loan.returned >= self.log_from:
                logs.append(
                    (
                        loan.returned,
                        staff_at(loan.checkin_branch),
                        "CIRCULATION",
                        "RETURN",
                        bn,
                        item,
                        "intranet",
                        None,
                        None,
                    )
                )
            if loan.fine is not None:
                title = self.biblios[loan.item.biblionumber - 1].title
                info = {
                    "action": "create_fee",
                    "borrowernumber": bn,
                    "amount": str(loan.fine),
                    "description": title,
                    "itemnumber": loan.item.itemnumber,
                    "issue_id": loan.issue_id,
                }
                logs.append(
                    (
                        loan.fine_date,
                        0,
                        "FINES",
                        "CREATE",
                        bn,
                        json.dumps(info),
                        "cron",
                        "fines.pl",
                        None,
                    )
                )
                if loan.paid_at:
                    info = {
                        "action": "create_payment",
                        "borrowernumber": bn,
                        "amount": str(-loan.fine),
                        "payment_type": loan.pay_type,
                        "manager_id": loan.pay_manager,
                    }
                    logs.append(
                        (
                            loan.paid_at,
                            loan.pay_manager or 0,
                            "FINES",
                            "PAYMENT",
                            bn,
                            json.dumps(info),
                            "sip" if loan.pay_type == "SIP00" else "intranet",
                            None,
                            None,
                        )
                    )

        logs.sort(key=lambda x: (x[0], x[4], x[2], x[3]))
        for number, (when, user, module, action, obj, info, interface, script, diff) in enumerate(
            logs, start=1
        ):
            sink.add(
                "action_logs",
                {
                    "action_id": number,
                    "timestamp": when,
                    "user": user,
                    "module": module,
                    "action": action,
                    "object": obj,
                    "info": info,
                    "interface": interface,
                    "script": script,
                    "trace": None,
                    "diff": diff,
                },
            )


# --- public API -------------------------------------------------------------------------------


def _check_empty(conn: Connection) -> None:
    present = set(inspect(conn).get_table_names())
    for table in schema.metadata.sorted_tables:
        if (
            table.name in present
            and conn.execute(select(func.count()).select_from(table)).scalar_one()
        ):
            raise ValueError(f"refusing to build into a non-empty database ({table.name} has rows)")


def build_koha(
    engine: Engine,
    *,
    patrons: int,
    years: int,
    seed: int,
    as_of: dt.date,
    batch_size: int = 5000,
) -> dict[str, int]:
    """Create Koha's schema in an empty database and fill it with one invented library.

    Returns the number of rows written per table. Refuses (``ValueError``) to write into a
    database whose Koha tables already hold rows, so it can never mix with real data.
    """
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    if patrons < 10:
        raise ValueError("patrons must be at least 10")
    if years < 1:
        raise ValueError("years must be at least 1")
    if batch_size < 1:
        raise ValueError("batch_size must be positive")

    schema.create_schema(engine)
    with engine.begin() as conn:
        _check_empty(conn)
        lib = _Library(patrons=patrons, years=years, seed=seed, as_of=as_of)
        lib.make_place()
        lib.make_catalog()
        lib.make_patrons()
        lib.circulate()
        lib.make_holds()
        lib.make_searches()
        lib.delete_some()
        lib.make_extras()
        counts = lib.write(conn, batch_size)
    log.info(
        "synthetic Koha library built: %s",
        ", ".join(f"{name}={n}" for name, n in sorted(counts.items())),
    )
    return counts


def build_koha_from_url(url: str, **kw: Any) -> dict[str, int]:
    """``build_koha`` for callers that hold a SQLAlchemy URL rather than an engine."""
    engine = create_engine(url)
    try:
        return build_koha(engine, **kw)
    finally:
        engine.dispose()
