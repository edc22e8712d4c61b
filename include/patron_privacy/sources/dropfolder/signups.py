"""PC sign-up exports (a reservation system's CSV files) in a drop folder.

Facts: one ``pc_session_facts`` row per session that ended before the run's
as-of instant — date, ISO weekday, starting hour, branch, PC, a duration
band and a keyed pseudonym of the card number; never the card number or the
name. Keyed on branch, PC and start, so the same session in two exports, or
in a file read again after a rewrite, is one fact.
"""

from __future__ import annotations

from datetime import datetime

from patron_privacy.facts import Pseudonymizer, period_of
from patron_privacy.files.categories import FileCategory, file_connector
from patron_privacy.sources.dropfolder.csvfiles import OTHER_FIELD
from patron_privacy.sources.dropfolder.kinds import PC_SIGNUPS, check_options
from patron_privacy.warehouse import pc_session_facts

SOURCE = "signups"
KIND = PC_SIGNUPS
FACT_TABLE = pc_session_facts
STRIPPABLE = (*KIND.identifying, OTHER_FIELD)

# Session length bands (minutes), as published: short help, a typical hour, long use.
DURATION_BANDS = ((0, 14, "0-14"), (15, 29, "15-29"), (30, 59, "30-59"), (60, 119, "60-119"))


def duration_band(start: datetime, end: datetime | None) -> str:
    if end is None or end < start:
        return "unknown"
    minutes = int((end - start).total_seconds() // 60)
    for lo, hi, label in DURATION_BANDS:
        if lo <= minutes <= hi:
            return label
    return "120+"


class Facts:
    """Builds fact rows as records arrive; holds no card number past the call."""

    table = FACT_TABLE

    def __init__(self, source: str, pseudonymizer: Pseudonymizer, as_of: datetime):
        self.source, self.p, self.as_of = source, pseudonymizer, as_of
        self.sessions: dict[tuple, str | None] = {}

    def add(self, values: dict) -> None:
        start, end = values["start"], values.get("end")
        if (end or start) >= self.as_of:
            return  # not over yet: recorded by a later run
        card = (values.get("card_number") or "").strip().lower() or None
        # In memory for this run only; keyed into a pseudonym in finish().
        self.sessions[(values["branch"], values["pc"], start, end)] = card

    def finish(self) -> list[dict]:
        rows = []
        for (branch, pc, start, end), card in self.sessions.items():
            day = start.date()
            period = period_of(day)
            rows.append(
                {
                    "fact_key": self.p.fact_key(period, self.source, f"{branch}|{pc}|{start}"),
                    "source": self.source,
                    "session_date": day,
                    "weekday": start.isoweekday(),
                    "hour": start.hour,
                    "branch": branch,
                    "client_name": pc,
                    "duration_minutes_band": duration_band(start, end),
                    "patron_type": "patron" if card else "unknown",
                    "patron_pseudonym": self.p.pseudonym(period, card) if card else None,
                    "reporting_period": period,
                }
            )
        self.sessions.clear()
        return rows


CATEGORIES = {
    "signup_identities": FileCategory(
        name="signup_identities",
        source=SOURCE,
        description="Who signed up for a public computer (sign-up exports)",
        strippable=STRIPPABLE,
        deletable=False,
        patron_field="card_number",
    ),
    "signup_records": FileCategory(
        name="signup_records",
        source=SOURCE,
        description="Public-computer sign-up export rows",
        patron_field="card_number",
    ),
}

CONNECTOR = file_connector(SOURCE, "dropfolder", CATEGORIES, lambda o: check_options(KIND, o))
