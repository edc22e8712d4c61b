"""A deterministic, invented LibCal for the demo: events and registrations as the API shows them.

The library's programs over ``days`` days before ``as_of`` and a month after: storytimes,
STEM clubs, teen nights, computer classes, author talks (hybrid), online workshops,
outreach visits to a school (offsite), health talks — at the four branches, as LibCal
events of one calendar with campus, location, categories, audiences and seats. Events
that take registrations have registrants (names, emails, phones, card barcodes, from a
seeded Faker) with attendance marked after the program.

The vendor side is modelled too: LibCal keeps registrations until someone deletes them.
Here the library purged registrations of programs that ended more than ``purged_after``
days ago, except for a few events it missed — so a run finds registrations past the
policy's window, as a real library would.

Written as the fixture file the demo's LibCal server serves
(``.local/sources/libcal/libcal_fixture.json``); ``(days, seed, as_of)`` always gives the
same file. Logs counts only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
from pathlib import Path
from zoneinfo import ZoneInfo

from faker import Faker

from patron_privacy.sources.libcal.fixture import FIXTURE_FILE, Fixture

log = logging.getLogger("patron_privacy.libcal.synthetic")

CALENDAR = {"id": 11001, "name": "Programs & Events"}
CAMPUSES = (
    (11, "Central Library", 0.4),
    (12, "North Branch Library", 0.2),
    (13, "Eastside Branch Library", 0.2),
    (14, "West End Branch Library", 0.2),
)
OUTREACH_LOCATION = {"id": 901, "type": 0, "name": "Lincoln Elementary School"}
ONLINE_LOCATION = {"id": 902, "type": 0, "name": ""}
# title, category, audience, kind (onsite|hybrid|virtual|offsite), registration, seats, minutes
PROGRAMS = (
    ("Toddler Storytime", "Storytime", "Toddlers (1-3)", "onsite", False, 25, 30),
    ("Baby Lapsit", "Storytime", "Babies (0-2)", "onsite", True, 12, 30),
    ("Lego Club", "STEM", "Kids (6-11)", "onsite", True, 16, 60),
    ("Teen Gaming Night", "Gaming", "Teens (12-18)", "onsite", True, 20, 120),
    ("Computer Basics", "Technology", "Adults", "onsite", True, 10, 90),
    ("Resume Workshop", "Job Seekers", "Adults", "virtual", True, 30, 60),
    ("Author Talk", "Author Events", "Adults", "hybrid", True, 60, 75),
    ("Family Movie Afternoon", "Movies", "All Ages", "onsite", False, 50, 110),
    ("Storytime at Lincoln Elementary", "Outreach", "Kids (6-11)", "offsite", False, 80, 45),
    ("Medicare Q&A", "Health", "Seniors", "onsite", True, 25, 60),
    ("ESL Conversation Circle", "Language Learning", "Adults", "onsite", True, 12, 90),
)
ATTENDANCE = ("Attended", "Attended", "Attended", "Not Attended")
CATEGORY_IDS = {c: 600 + i for i, c in enumerate(dict.fromkeys(p[1] for p in PROGRAMS))}
AUDIENCE_IDS = {a: 700 + i for i, a in enumerate(dict.fromkeys(p[2] for p in PROGRAMS))}


def _iso(when: dt.datetime, zone: ZoneInfo) -> str:
    return when.replace(tzinfo=zone).isoformat()


def build_libcal_fixture(
    *,
    days: int = 430,
    seed: int = 11,
    as_of: dt.date,
    timezone: str = "America/New_York",
    purged_after: int = 120,
) -> Fixture:
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    zone = ZoneInfo(timezone)
    midnight = dt.datetime.combine(as_of, dt.time.min)
    people = []
    for _ in range(300):
        first, last = fake.first_name(), fake.last_name()
        people.append(
            {
                "first_name": first,
                "last_name": last,
                "email": f"{first}.{last}{rng.randrange(100)}@example.org".lower(),
                "phone": f"(860) 555-{rng.randrange(10000):04d}",
                "barcode": f"2997{rng.randrange(10**9, 10**10)}" if rng.random() < 0.85 else "",
            }
        )
    events, registrations = [], {}
    event_id, booking_id = 9_000_000, 5_000_000
    day = as_of - dt.timedelta(days=days)
    last_day = as_of + dt.timedelta(days=30)
    while day < last_day:
        for _ in range(rng.choice((1, 2, 3, 3, 4)) if day.weekday() != 6 else 0):
            title, cat, aud, kind, reg, seats, minutes = rng.choice(PROGRAMS)
            event_id += 1
            campus_id, campus_name, _ = rng.choices(CAMPUSES, weights=[c[2] for c in CAMPUSES])[0]
            start = dt.datetime.combine(day, dt.time(rng.choice((10, 11, 14, 16, 18)), 0))
            end = start + dt.timedelta(minutes=minutes)
            physical = 0 if kind == "virtual" else seats
            online = seats if kind == "virtual" else (40 if kind == "hybrid" else 0)
            location = (
                OUTREACH_LOCATION
                if kind == "offsite"
                else ONLINE_LOCATION
                if kind == "virtual"
                else {"id": 500 + campus_id, "type": 1, "name": f"{campus_name} Meeting Room"}
            )
            regs = []
            if reg:
                for _ in range(min(seats, max(0, int(rng.gauss(seats * 0.6, seats * 0.2))))):
                    p = rng.choice(people)
                    booking_id += 1
                    registered = start - dt.timedelta(
                        days=rng.randint(1, 20), hours=rng.randint(0, 12)
                    )
                    regs.append(
                        {
                            "booking_id": booking_id,
                            "registration_type": "online" if kind == "virtual" else "in-person",
                            **p,
                            "registered_date": _iso(registered, zone),
                            "attendance": rng.choice(ATTENDANCE) if end < midnight else "",
                        }
                    )
            taken = len(regs)
            ev = {
                "id": event_id,
                "title": title,
                "allday": False,
                "start": _iso(start, zone),
                "end": _iso(end, zone),
                "description": f"<p>{title} at the library.</p>",
                "url": {
                    "public": f"https://demo.libcal.com/event/{event_id}",
                    "admin": f"https://demo.libcal.com/admin/events/{event_id}",
                },
                "location": location,
                "campus": {"id": campus_id, "name": campus_name},
                "category": [{"id": CATEGORY_IDS[cat], "name": cat}],
                "audience": [{"id": AUDIENCE_IDS[aud], "name": aud}],
                "owner": {"id": 42, "name": "Programs Team"},
                "presenter": "Library staff",
                "calendar": {
                    **CALENDAR,
                    "public": "https://demo.libcal.com/calendar/programs",
                    "admin": "https://demo.libcal.com/admin/calendar/11001",
                },
                "seats": seats,
                "registration": reg,
                "physical_seats": physical,
                "physical_seats_taken": taken if physical else 0,
                "online_seats": online,
                "online_seats_taken": 0 if physical else taken,
                "seats_taken": taken,
                "wait_list": False,
                "future_dates": [],
            }
            if kind == "virtual":
                ev["online_join_url"] = f"https://meet.example.org/{event_id}"
            events.append(ev)
            missed = rng.random() < 0.05
            if regs and (end >= midnight - dt.timedelta(days=purged_after) or missed):
                registrations[str(event_id)] = regs
        day += dt.timedelta(days=1)
    secret = hashlib.sha256(f"libcal-demo-{seed}".encode()).hexdigest()[:32]
    fx = Fixture(
        client_id="demo-client",
        client_secret=secret,
        events=events,
        registrations=registrations,
        extra={"calendars": [CALENDAR["id"]], "offsite_location_ids": [OUTREACH_LOCATION["id"]]},
    )
    log.info(
        "libcal synthetic fixture built: %d events, %d with registrations held",
        len(events),
        len(registrations),
    )
    return fx


def write_libcal_fixture(directory: Path, **kw) -> dict[str, int]:
    fx = build_libcal_fixture(**kw)
    fx.dump(Path(directory) / FIXTURE_FILE)
    return {
        "events": len(fx.events),
        "registrations": sum(len(v) for v in fx.registrations.values()),
    }
