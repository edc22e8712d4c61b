"""Program registrations exported as CSV (for libraries on event systems without an API).

Facts: one ``program_facts`` row per event that has taken place (its date is
before the run's as-of day) — date, branch, category, audience (the Public
Libraries Survey's), delivery (onsite, offsite, virtual), registrations and
attendance — never a registrant. Registrations of one event may come in
several exports; a person registered twice (the same email, card or name in
memory, for this run only) counts once. The event title is used only inside
the fact's keyed hash.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from patron_privacy.facts import Pseudonymizer, period_of
from patron_privacy.files.categories import FileCategory, file_connector
from patron_privacy.sources.dropfolder.csvfiles import OTHER_FIELD
from patron_privacy.sources.dropfolder.kinds import (
    PROGRAM_REGISTRATIONS,
    audience,
    check_options,
    delivery,
)
from patron_privacy.warehouse import program_facts

SOURCE = "programs"
KIND = PROGRAM_REGISTRATIONS
FACT_TABLE = program_facts
STRIPPABLE = (*KIND.identifying, OTHER_FIELD)


class Facts:
    table = FACT_TABLE

    def __init__(self, source: str, pseudonymizer: Pseudonymizer, as_of: datetime):
        self.source, self.p, self.as_of = source, pseudonymizer, as_of
        self.events: dict[tuple, dict] = {}

    def add(self, values: dict) -> None:
        day = values["date"].date()
        if day >= self.as_of.date():
            return  # not held yet: attendance comes later
        key = (values["branch"], day, values["event"])
        ev = self.events.setdefault(
            key,
            {
                "category": values.get("category"),
                "audience": audience(values.get("audience")),
                "delivery_mode": delivery(values.get("delivery")) or "onsite",
                "seen": set(),
                "anonymous": 0,
                "attended": 0,
                "attendance_recorded": False,
            },
        )
        who = next(
            (
                str(values[f]).strip().lower()
                for f in ("email", "card_number", "name")
                if values.get(f)
            ),
            None,
        )
        if who is not None:
            # In memory for this run only, and only as a hash: dedupes re-exported rows.
            digest = hashlib.sha256(who.encode()).digest()
            if digest in ev["seen"]:
                return
            ev["seen"].add(digest)
        else:
            ev["anonymous"] += 1
        if values.get("attended") is not None:
            ev["attendance_recorded"] = True
            ev["attended"] += 1 if values["attended"] else 0

    def finish(self) -> list[dict]:
        rows = []
        for (branch, day, title), ev in self.events.items():
            period = period_of(day)
            rows.append(
                {
                    "fact_key": self.p.fact_key(period, self.source, f"{branch}|{day}|{title}"),
                    "source": self.source,
                    "event_date": day,
                    "branch": branch,
                    "category": ev["category"],
                    "audience": ev["audience"],
                    "delivery_mode": ev["delivery_mode"],
                    "registration_required": True,
                    "registered": len(ev["seen"]) + ev["anonymous"],
                    "attended": ev["attended"] if ev["attendance_recorded"] else None,
                    "reporting_period": period,
                }
            )
        self.events.clear()
        return rows


CATEGORIES = {
    "registrant_identities": FileCategory(
        name="registrant_identities",
        source=SOURCE,
        description="Who registered for a program (registration exports)",
        strippable=STRIPPABLE,
        deletable=False,
        patron_field="card_number",
    ),
    "registration_records": FileCategory(
        name="registration_records",
        source=SOURCE,
        description="Program registration export rows",
        patron_field="card_number",
    ),
}

CONNECTOR = file_connector(SOURCE, "dropfolder", CATEGORIES, lambda o: check_options(KIND, o))
