"""Validation suite for what LibCal answered: its events and their registrations.

LibCal is hosted, so the "extract" is the run's own read of the API (``Harvest``), held
in memory; the suite runs on that same read, before any fact is written from it and
before the vendor's holdings are counted. Only what identifies nobody reaches the
checks: event ids and times, whether an event takes registrations, its branch, and per
registration its event, booking id and registration time. Never a name, email, phone
or barcode.

An event whose start does not parse is set aside (named by its id; the run records no
fact from it). Checks: event ids present; times that are possible (a program's start
not after the as-of date plus a day — the run asks only for programs that started
before it; a registration not in the future; neither before the floor); every
registration with a booking id, present once per event (the same booking twice means
a paging fault that would count people twice); registrations only for events the run
read; volume against the last successful runs. Requests that failed are not here: the
run names them, leaves out what they would have brought, and goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from patron_privacy.validation import REFERENCE, CheckResult, Col, Dataset, Extract, Suite

SOURCE = "libcal"


@dataclass
class Answered:
    """What the suite reads: one run's harvest and the library's time zone."""

    harvest: object  # connector.Harvest
    zone: object


def _events(h: Answered, extract: Extract) -> Iterator[dict]:
    from patron_privacy.sources.libcal.client import parse_time  # noqa: PLC0415

    for ev in h.harvest.events.values():
        extract.set_aside_of += 1
        if parse_time(ev.get("start"), h.zone) is None:
            # The run records no fact from an event it cannot date, and counts its
            # registrations by end time only: set aside, named by id, not a failure.
            extract.set_aside_count += 1
            if len(extract.set_aside) < 20:
                extract.set_aside.append(
                    f"LibCal event {str(ev.get('id'))[:40]}: no start time that parses; "
                    "no fact recorded from it"
                )
            continue
        campus = ev.get("campus")
        branch = campus.get("name") if isinstance(campus, dict) else campus
        yield {
            "event_id": ev.get("id"),
            "start": _time(ev.get("start"), h.zone, parse_time),
            "end": _time(ev.get("end"), h.zone, parse_time),
            "registration": 1 if ev.get("registration") else 0,
            "branch": str(branch) if branch else None,
        }


def _time(value, zone, parse_time):
    """A parsed time, the raw text when it does not parse (counted as a type error by the
    reader, never shown), or None when absent."""
    if value in (None, ""):
        return None
    parsed = parse_time(value, zone)
    return parsed if parsed is not None else "not a time"


def _registrations(h: Answered, extract: Extract) -> Iterator[dict]:
    from patron_privacy.sources.libcal.client import parse_time  # noqa: PLC0415

    for event_id, regs in h.harvest.registrants.items():
        for r in regs:
            if not isinstance(r, dict):
                yield {"registration": None, "event_id": event_id, "registered": None}
                continue
            booking = r.get("booking_id")
            yield {
                # A booking id is the registration's id within its event.
                "registration": None if booking in (None, "") else f"{event_id}#{booking}",
                "event_id": event_id,
                "registered": _time(r.get("registered_date"), h.zone, parse_time),
            }


READERS = {"events": _events, "registrations": _registrations}


def read(handle: Answered, ds: Dataset, chunk_rows: int, tolerant: bool = False) -> Extract:
    names = [c.name for c in ds.columns]
    extract = Extract()

    def chunks() -> Iterator[pd.DataFrame]:
        batch = []
        for row in READERS[ds.name](handle, extract):
            batch.append(row)
            if len(batch) >= chunk_rows:
                yield pd.DataFrame.from_records(batch, columns=names)
                batch = []
        if batch:
            yield pd.DataFrame.from_records(batch, columns=names)

    extract.chunks = chunks()
    return extract


def extra_checks(handle: Answered, ds: Dataset, cc) -> list[CheckResult]:
    if ds.name != "registrations":
        return []
    ids = {str(ev.get("id")) for ev in handle.harvest.events.values()}
    regs = handle.harvest.registrants
    element = sum(len(v) for v in regs.values())
    orphans = sum(len(v) for k, v in regs.items() if str(k) not in ids)
    return [CheckResult(ds.name, REFERENCE, "event_id", element, orphans, orphans == 0)]


DATASETS = (
    Dataset(
        "events",
        (
            Col("event_id", "int", required=True),
            Col("start", "datetime", required=True),
            Col("end", "datetime", future_ok=True),
            Col("registration", "int", allowed=(0, 1)),
            Col("branch", "code"),
        ),
    ),
    Dataset(
        "registrations",
        (
            Col("registration", "code", key=True),
            Col("event_id", "int", required=True),
            Col("registered", "datetime"),
        ),
    ),
)

SUITE = Suite(source=SOURCE, datasets=DATASETS, read=read, extra_checks=extra_checks)
