"""Synthetic drop-folder exports for the demo library, deterministic per seed.

* ``signup_exports/pc-signups-<week>.csv``: a PC reservation system's weekly
  exports (card number, name, phone, computer, branch, start, end) for the
  twenty weeks before the as-of day; older weeks use the US date format.
* ``program_exports/program-registrations-<month>.csv``: an event system's
  monthly registration exports (event, date, audience, category, format,
  location, registrant, email, attended) from fifteen months back to next
  month (future events have no attendance yet).

The column names match the shipped policy's ``sources.signups`` and
``sources.programs`` mappings.
"""

from __future__ import annotations

import csv
import random
from datetime import date, datetime, time, timedelta
from pathlib import Path

BRANCH_PCS = {"MAIN": 6, "NORTH": 2, "EAST": 2, "WEST": 2}
FIRST = ("Avery", "Jordan", "Morgan", "Riley", "Casey", "Quinn", "Harper", "Rowan", "Emerson",
         "Dakota", "Reese", "Skyler", "Finley", "Hayden", "Parker", "Sawyer")  # fmt: skip
LAST = ("Abernathy", "Bellweather", "Castellano", "Delacroix", "Eastwood", "Fairbanks",
        "Galloway", "Hollister", "Ingersoll", "Jablonski", "Kettering", "Lindqvist")  # fmt: skip
SIGNUP_HEADER = ("Reservation Id", "Card Number", "Patron Name", "Phone", "Computer", "Branch",
                 "Start Time", "End Time")  # fmt: skip
PROGRAM_HEADER = ("Event", "Event Date", "Audience", "Category", "Format", "Location",
                  "Registrant", "Email", "Attended")  # fmt: skip
EVENTS = (
    ("Storytime for Toddlers", "Children", "Storytime", "In person"),
    ("Lego Club", "Kids", "STEM", "In person"),
    ("Teen Anime Night", "Teens", "Clubs", "In person"),
    ("College Essay Workshop", "Young Adult", "Education", "Online"),
    ("Resume Help Session", "Adults", "Career", "In person"),
    ("Medicare Basics", "Adults", "Health", "Online"),
    ("Book Club at the Senior Center", "Adults", "Book club", "Outreach"),
    ("Family Movie Afternoon", "All ages", "Film", "In person"),
    ("Genealogy Drop-in", "Adults", "History", "Hybrid"),
)


def _person(rng: random.Random) -> tuple[str, str, str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    card = f"2999{rng.randrange(10**9, 10**10)}"
    email = f"{first.lower()}.{last.lower()}{rng.randrange(10, 99)}@example.org"
    phone = f"860-555-{rng.randrange(1000, 9999)}"
    return card, f"{first} {last}", email, phone


def _people(rng: random.Random, n: int) -> list[tuple[str, str, str, str]]:
    return [_person(rng) for _ in range(n)]


def build_signup_exports(folder: Path, *, seed: int, as_of: date, weeks: int = 20) -> int:
    rng = random.Random(f"signups-{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    people = _people(rng, 120)
    rows_written = 0
    week_start = as_of - timedelta(days=as_of.weekday())  # the current week's Monday
    res_id = 100000
    for w in range(weeks, -1, -1):
        start_day = week_start - timedelta(weeks=w)
        us_format = w >= 12  # the older exports came from the system's old version
        rows = []
        for d in range(7):
            day = start_day + timedelta(days=d)
            if day >= as_of:
                break
            for branch, pcs in BRANCH_PCS.items():
                for pc in range(1, pcs + 1):
                    minute = 9 * 60 + rng.randrange(0, 60)
                    while minute < 19 * 60 and rng.random() < 0.8:
                        length = rng.choice((15, 30, 45, 60, 60, 90, 120))
                        begin = datetime.combine(day, time()) + timedelta(minutes=minute)
                        end = begin + timedelta(minutes=length - rng.randrange(0, 10))
                        card, name, _email, phone = rng.choice(people)
                        fmt = "%m/%d/%Y %H:%M" if us_format else "%Y-%m-%d %H:%M"
                        res_id += 1
                        rows.append(
                            (
                                str(res_id),
                                card,
                                name,
                                phone if rng.random() < 0.3 else "",
                                f"{branch}-PC{pc:02d}",
                                branch,
                                begin.strftime(fmt),
                                end.strftime(fmt),
                            )
                        )
                        minute += length + rng.randrange(0, 90)
        if not rows:
            continue
        path = folder / f"pc-signups-{start_day.isoformat()}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(SIGNUP_HEADER)
            writer.writerows(rows)
        rows_written += len(rows)
    return rows_written


def build_program_exports(folder: Path, *, seed: int, as_of: date, months: int = 15) -> int:
    rng = random.Random(f"programs-{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    people = _people(rng, 200)
    written = 0
    first = date(as_of.year, as_of.month, 1)
    for m in range(months, -2, -1):
        y, mo = divmod(first.year * 12 + first.month - 1 - m, 12)
        month = date(y, mo + 1, 1)
        rows = []
        for _ in range(rng.randrange(6, 11)):
            title, audience, category, fmt = rng.choice(EVENTS)
            day = month + timedelta(days=rng.randrange(0, 28))
            when = datetime.combine(day, time(rng.choice((10, 14, 16, 18)), 0))
            branch = rng.choice(list(BRANCH_PCS))
            for _card, name, email, _phone in rng.sample(people, rng.randrange(3, 25)):
                held = day < as_of
                attended = ("Yes" if rng.random() < 0.75 else "No") if held else ""
                rows.append(
                    (
                        title,
                        when.strftime("%Y-%m-%d %H:%M"),
                        audience,
                        category,
                        fmt,
                        branch,
                        name,
                        email,
                        attended,
                    )  # fmt: skip
                )
        path = folder / f"program-registrations-{month:%Y-%m}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(PROGRAM_HEADER)
            writer.writerows(rows)
        written += len(rows)
    return written
