"""Validation suites for the drop-folder exports: PC sign-ups and program registrations.

The same mechanism as the databases' suites (``patron_privacy.validation``); here the
"extract" is every export file of the source's folders, read by the folder reader
(``csvfiles.read``) exactly as an enforcing run reads them. Only non-personal fields
reach the checks — PC, branch, dates, audience, delivery, attendance; never a card
number, name, email, phone, event title or the header of an unmapped column.

Two layers, as for the databases:

* the reader's checks, per file: the header maps, encodings, NUL bytes, field and line
  sizes, quoting, formula-like cells, required fields, dates that parse and can be real.
  A file that fails them is **set aside**: named with its line in the report (never a
  value), left out of what the suite sees, and left exactly as it is by the run — so
  one broken export does not stop retention on the rest of the folder;
* the Great Expectations suite on everything readable: required fields present, dates
  between the floor and (for a record that cannot lie ahead) the as-of date, branches
  from the folders' ``branches`` lists (when every folder has one), audience, delivery
  and attendance from their known sets, freshness (the newest record is recent: exports
  still arrive) and volume against the last successful runs, never zero rows. A failure
  here stops the whole source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

from patron_privacy.sources.dropfolder import kinds as k
from patron_privacy.validation import Col, Dataset, Extract, Suite

BRANCHES = "branches"
AUDIENCES = (*dict.fromkeys(k.AUDIENCE.values()), "unknown")
DELIVERY = tuple(dict.fromkeys(k.DELIVERY.values()))
YES_NO = ("yes", "no")


@dataclass(frozen=True)
class Folders:
    """What the suite reads: the source's folders, as the run will read them."""

    kind: k.Kind
    specs: tuple[k.FolderSpec, ...]
    zone: ZoneInfo
    as_of: datetime


def _signup_row(v: dict) -> dict:
    return {"pc": v.get("pc"), "branch": v.get("branch"), "start": v["start"], "end": v.get("end")}


def _program_row(v: dict) -> dict:
    attended = v.get("attended")
    return {
        "date": v["date"],
        "branch": v.get("branch"),
        "audience": k.audience(v.get("audience")),
        "delivery": k.delivery(v.get("delivery")),
        "attended": None if attended is None else ("yes" if attended else "no"),
    }


ROWS = {k.PC_SIGNUPS.name: _signup_row, k.PROGRAM_REGISTRATIONS.name: _program_row}


def read(handle: Folders, ds: Dataset, chunk_rows: int, tolerant: bool = False) -> Extract:
    """Every readable record of every export, in chunks of the declared columns."""
    extract = Extract()
    extract.chunks = _chunks(handle, ds, chunk_rows, extract)
    return extract


def _chunks(h: Folders, ds: Dataset, chunk_rows: int, extract: Extract) -> Iterator[pd.DataFrame]:
    from patron_privacy.sources.dropfolder import csvfiles  # noqa: PLC0415

    to_row = ROWS[h.kind.name]
    names = [c.name for c in ds.columns]
    batch: list[dict] = []
    for spec in h.specs:
        for path in csvfiles.list_files(spec):
            extract.set_aside_of += 1
            rows: list[dict] = []
            try:
                for item in csvfiles.read(path, spec, h.kind, h.zone, h.as_of):
                    if isinstance(item, csvfiles.Record):
                        rows.append(to_row(item.values))
            except csvfiles.FileProblem as exc:
                # The whole file is set aside, as the run will leave it: no row of it counts.
                extract.set_aside.append(str(exc))
                extract.set_aside_count += 1
                continue
            except OSError as exc:
                extract.set_aside.append(
                    f"{spec.display(path)}: cannot be read ({exc.strerror or type(exc).__name__})"
                )
                extract.set_aside_count += 1
                continue
            batch.extend(rows)
            while len(batch) >= chunk_rows:
                yield pd.DataFrame.from_records(batch[:chunk_rows], columns=names)
                del batch[:chunk_rows]
    if batch:
        yield pd.DataFrame.from_records(batch, columns=names)


def known_sets(handle: Folders) -> dict:
    """The folders' branch lists; None (not checked here) when a folder has none — the
    reader then takes any branch from that folder, and checks the listed ones itself."""
    if any(spec.branches is None for spec in handle.specs):
        return {BRANCHES: None}
    return {BRANCHES: set().union(*(spec.branches for spec in handle.specs))}


SIGNUP_DATASETS = (
    Dataset(
        k.PC_SIGNUPS.name,
        (
            Col("pc", "code", required=True),
            Col("branch", "code", required=True, allowed=BRANCHES),
            # A reservation may be booked ahead (the reader bounds how far).
            Col("start", "datetime", required=True, future_ok=True),
            Col("end", "datetime", future_ok=True),
        ),
        freshness="start",
        expect_rows=True,
    ),
)

PROGRAM_DATASETS = (
    Dataset(
        k.PROGRAM_REGISTRATIONS.name,
        (
            # A registration is for a program that may lie ahead.
            Col("date", "datetime", required=True, future_ok=True),
            Col("branch", "code", required=True, allowed=BRANCHES),
            Col("audience", "code", required=True, allowed=AUDIENCES),
            Col("delivery", "code", required=True, allowed=DELIVERY),
            Col("attended", "code", allowed=YES_NO),
        ),
        freshness="date",
        expect_rows=True,
    ),
)

SIGNUPS = Suite(source="signups", datasets=SIGNUP_DATASETS, read=read, known_sets=known_sets)
PROGRAMS = Suite(source="programs", datasets=PROGRAM_DATASETS, read=read, known_sets=known_sets)
