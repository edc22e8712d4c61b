"""Reading, checking and rewriting CSV exports, one file at a time, in a stream.

A file is read line by line (each physical line at most ``max_line_bytes``)
and checked before anything acts on it. Any of these fails the whole file,
with its name and the line: a NUL byte (binary data, or a UTF-16 export),
bytes that are not the folder's encoding, a line or field over its limit, a
row with more or fewer fields than the header, broken quoting, a cell that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR), a
column the folder's mapping does not know, a required field empty, a date
that does not parse or cannot be real. A failed file is left exactly as it
is: no facts from it, no change to it, and it is counted as a data error.

Messages never quote a value: a cell, or a header line that is really a data
row, could be a patron's name.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from patron_privacy.files.atomic import FileStamp, atomic_delete, atomic_rewrite, is_temp
from patron_privacy.files.rules import BoundRule, HoldIndex, Tally, blocker_for
from patron_privacy.sources.dropfolder.kinds import FolderSpec, Kind, delivery

OTHER_FIELD = "other_columns"  # a strip rule's name for the columns listed as identifying
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_TRUE = {"yes", "y", "true", "t", "1", "attended", "present", "x"}
_FALSE = {"no", "n", "false", "f", "0", "absent", "no-show", "no show", "did not attend", ""}
LATEST_AHEAD = timedelta(days=400)  # a reservation or event may be booked ahead, not this far


class FileProblem(Exception):
    """A file cannot be read as an export of its folder; the message names file and line."""

    def __init__(self, where: str, line: int | None, message: str):
        self.where, self.line, self.message = where, line, message
        super().__init__(f"{where} line {line}: {message}" if line else f"{where}: {message}")


def parse_datetime(text: str, formats: tuple[str, ...], zone: ZoneInfo) -> datetime | None:
    """ISO 8601 (date, or date and time, with or without offset), then the folder's formats."""
    dt = None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        for fmt in formats:
            try:
                dt = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if dt is not None and dt.tzinfo is not None:
        dt = dt.astimezone(zone).replace(tzinfo=None)
    return dt


@dataclass
class Header:
    cells: list[str]
    col_of: dict[str, int]  # field -> column index, for mapped fields present in the file
    identifying_cols: dict[int, str]  # column -> field name (OTHER_FIELD for other_columns)
    bom: bool
    newline: str


@dataclass
class Record:
    line: int
    cells: list[str]
    values: dict[str, object]
    clock: datetime

    def filled(self, header: Header, fld: str) -> bool:
        if fld == OTHER_FIELD:
            return any(
                self.cells[c].strip()
                for c, f in header.identifying_cols.items()
                if f == OTHER_FIELD
            )
        col = header.col_of.get(fld)
        return col is not None and bool(self.cells[col].strip())


def _physical_lines(fh, spec: FolderSpec, where: str, state: dict) -> Iterator[str]:
    n = 0
    while True:
        raw = fh.readline(spec.max_line_bytes + 1)
        if not raw:
            return
        n += 1
        state["line"] = n
        if len(raw) > spec.max_line_bytes and not raw.endswith(b"\n"):
            raise FileProblem(where, n, f"line longer than {spec.max_line_bytes} bytes")
        if b"\x00" in raw:
            raise FileProblem(where, n, "contains NUL bytes (binary data, or a UTF-16 export?)")
        if n == 1:
            state["newline"] = "\r\n" if raw.endswith(b"\r\n") else "\n"
            if raw.startswith(codecs.BOM_UTF8) and spec.encoding.lower().replace("_", "-") in (
                "utf-8",
                "utf8",
                "utf-8-sig",
            ):
                raw = raw[len(codecs.BOM_UTF8) :]
                state["bom"] = True
        try:
            yield raw.decode(spec.encoding)
        except UnicodeDecodeError as exc:
            raise FileProblem(
                where,
                n,
                f"not valid {spec.encoding} (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} "
                "of the line): wrong encoding for this folder?",
            ) from None


def _header(cells: list[str], spec: FolderSpec, kind: Kind, where: str, line: int) -> Header:
    if not cells or not any(c.strip() for c in cells):
        raise FileProblem(where, line, "no header row")
    names = [c.strip() for c in cells]
    if len(set(names)) != len(names):
        raise FileProblem(where, line, "two columns of the header have the same name")
    pos = {n: i for i, n in enumerate(names)}
    col_of: dict[str, int] = {}
    for fld, header in spec.columns.items():
        if header.strip() in pos:
            col_of[fld] = pos[header.strip()]
        elif kind.field(fld).required and fld not in spec.defaults:
            raise FileProblem(where, line, f"no column {header!r} (mapped as {fld}) in the header")
    mapped = set(col_of.values())
    identifying = {c: f for f, c in col_of.items() if kind.field(f).identifying}
    unknown = 0
    for i, n in enumerate(names):
        if i in mapped:
            continue
        what = spec.other_columns.get(n)
        if what is None:
            unknown += 1
        elif what == "identifying":
            identifying[i] = OTHER_FIELD
    if unknown:
        # Never named: a file without a header has a data row here.
        raise FileProblem(
            where,
            line,
            f"{unknown} column(s) of the header are neither mapped (columns) nor listed "
            "under other_columns: no header row, or the export changed?",
        )
    return Header(cells, col_of, identifying, False, "\n")


def _check_cell(cell: str, col: int, header: Header, spec: FolderSpec, where: str, line: int):
    if len(cell) > spec.max_field_chars:
        raise FileProblem(
            where,
            line,
            f"{_col_name(col, header)} is {len(cell)} characters (limit {spec.max_field_chars})",
        )
    if cell.startswith(FORMULA_START) and not _NUMBER.match(cell.strip()):
        raise FileProblem(
            where,
            line,
            f"{_col_name(col, header)} starts like a spreadsheet formula "
            "(=, +, -, @, tab or CR): refused (CSV injection)",
        )


def _col_name(col: int, header: Header) -> str:
    for f, c in header.col_of.items():
        if c == col:
            return f"field {f}"
    return f"column {col + 1}"


def _values(
    cells: list[str],
    header: Header,
    spec: FolderSpec,
    kind: Kind,
    zone: ZoneInfo,
    as_of: datetime,
    where: str,
    line: int,
) -> tuple[dict, datetime]:
    values: dict[str, object] = {}
    for f in kind.fields:
        col = header.col_of.get(f.name)
        text = cells[col].strip() if col is not None else spec.defaults.get(f.name, "")
        if not text and col is not None and f.name in spec.defaults:
            text = spec.defaults[f.name]
        if not text:
            if f.required:
                raise FileProblem(where, line, f"field {f.name} is empty")
            values[f.name] = None
            continue
        if f.kind == "datetime":
            dt = parse_datetime(text, spec.datetime_formats, zone)
            if dt is None:
                raise FileProblem(
                    where,
                    line,
                    f"field {f.name} is not a date (expected ISO 8601"
                    + (f" or {', '.join(spec.datetime_formats)}" if spec.datetime_formats else "")
                    + ")",
                )
            if dt.year < 1900 or dt > as_of + LATEST_AHEAD:
                raise FileProblem(where, line, f"field {f.name} is a date that cannot be real")
            values[f.name] = dt
        elif f.kind == "bool":
            low = text.lower()
            if low in _TRUE:
                values[f.name] = True
            elif low in _FALSE:
                values[f.name] = False
            else:
                raise FileProblem(where, line, f"field {f.name} is not yes or no")
        else:
            if f.max_chars and len(text) > f.max_chars:
                raise FileProblem(
                    where, line, f"field {f.name} is longer than {f.max_chars} characters"
                )
            values[f.name] = text
    if kind.name == "program_registrations" and delivery(values.get("delivery")) is None:
        raise FileProblem(where, line, "field delivery is not onsite, offsite or virtual")
    if spec.branches is not None and values.get("branch") not in spec.branches:
        raise FileProblem(where, line, "field branch is not one of the folder's branches")
    start, end = values.get("start"), values.get("end")
    if isinstance(start, datetime) and isinstance(end, datetime) and end < start:
        raise FileProblem(where, line, "field end is before start")
    clock = next((values[c] for c in kind.clock if isinstance(values.get(c), datetime)), None)
    if clock is None:
        raise FileProblem(where, line, f"no {' or '.join(kind.clock)} to date the record by")
    return values, clock


def read(
    path: Path, spec: FolderSpec, kind: Kind, zone: ZoneInfo, as_of: datetime
) -> Iterator[Header | Record]:
    """Yield the file's Header, then each Record; raise FileProblem at the first problem."""
    where = spec.display(path)
    state = {"line": 0, "bom": False, "newline": "\n"}
    with open(path, "rb") as fh:
        reader = csv.reader(
            _physical_lines(fh, spec, where, state), delimiter=spec.delimiter, strict=True
        )
        header: Header | None = None
        last = 0
        try:
            for cells in reader:
                start_line, last = last + 1, reader.line_num
                if header is None:
                    header = _header(cells, spec, kind, where, start_line)
                    header.bom, header.newline = state["bom"], state["newline"]
                    for i, c in enumerate(cells):
                        _check_cell(c, i, header, spec, where, start_line)
                    yield header
                    continue
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                if len(cells) != len(header.cells):
                    raise FileProblem(
                        where,
                        start_line,
                        f"{len(cells)} fields where the header has {len(header.cells)} "
                        "(a malformed row)",
                    )
                for i, c in enumerate(cells):
                    _check_cell(c, i, header, spec, where, start_line)
                values, clock = _values(cells, header, spec, kind, zone, as_of, where, start_line)
                yield Record(start_line, cells, values, clock)
        except csv.Error as exc:
            what = str(exc).split("(")[0].strip() or "malformed CSV"
            if "field larger" in str(exc):
                what = f"a field larger than {csv.field_size_limit()} characters"
            raise FileProblem(where, max(state["line"], 1), f"malformed CSV: {what}") from None
        if header is None:
            raise FileProblem(where, None, "empty file (no header row)")


# --- one file's scan and change -----------------------------------------------------------------


@dataclass
class FileScan:
    path: Path
    display: str
    stamp: FileStamp | None = None
    error: str | None = None
    records: int = 0
    tallies: dict[str, Tally] = field(default_factory=dict)
    deletes: int = 0
    strips: int = 0
    kept_records: int = 0
    newest: datetime | None = None
    oldest: datetime | None = None
    # identifying columns that hold something in a row the file keeps, after the change
    still_filled: set[int] = field(default_factory=set)

    @property
    def readable(self) -> bool:
        return self.error is None

    @property
    def needs_change(self) -> bool:
        return self.readable and (self.deletes > 0 or self.strips > 0)

    @property
    def delete_whole(self) -> bool:
        return self.readable and self.records > 0 and self.deletes == self.records


def decide(
    rec: Record,
    header: Header,
    rules: list[BoundRule],
    holds: HoldIndex,
    patron_field: str | None,
    tallies: dict[str, Tally] | None = None,
) -> tuple[bool, set[str]]:
    """(delete?, fields to strip) for one record; counts candidates and kept records."""
    delete, strip = False, set()
    patron = rec.values.get(patron_field) if patron_field else None
    for r in rules:
        if not r.past(rec.clock):
            continue
        if r.action == "strip" and not any(rec.filled(header, f) for f in r.fields):
            continue
        b = blocker_for(r, rec.clock, patron, holds)
        t = tallies.setdefault(r.category, Tally()) if tallies is not None else None
        if b is not None:
            if t is not None:
                t.kept[b] += 1
            continue
        if t is not None:
            t.candidates += 1
        if r.action == "delete":
            delete = True
        else:
            strip.update(r.fields)
    return delete, strip


def _strip_cols(header: Header, fields: set[str]) -> list[int]:
    return [c for c, f in header.identifying_cols.items() if f in fields]


def scan_file(
    path: Path,
    spec: FolderSpec,
    kind: Kind,
    zone: ZoneInfo,
    as_of: datetime,
    rules: list[BoundRule],
    holds: HoldIndex,
    on_record=None,
) -> FileScan:
    """Read and check a whole file; count what the rules would do. ``on_record(rec)`` is
    called for each record, but only once the whole file has been read without a problem
    (so nothing is recorded from a file that fails)."""
    scan = FileScan(path, spec.display(path))
    tallies = {r.category: Tally() for r in rules}
    pending = [] if on_record is not None else None
    try:
        scan.stamp = FileStamp.of(path)
        header = None
        for item in read(path, spec, kind, zone, as_of):
            if isinstance(item, Header):
                header = item
                continue
            rec = item
            scan.records += 1
            scan.newest = rec.clock if scan.newest is None else max(scan.newest, rec.clock)
            scan.oldest = rec.clock if scan.oldest is None else min(scan.oldest, rec.clock)
            if pending is not None:
                pending.append(rec.values)  # facts come from every record, deleted ones too
            delete, strip = decide(rec, header, rules, holds, kind.patron_field, tallies)
            if delete:
                scan.deletes += 1
                continue
            if strip:
                scan.strips += 1
            stripped = _strip_cols(header, strip)
            for c in header.identifying_cols:
                if c not in stripped and rec.cells[c].strip():
                    scan.still_filled.add(c)
        if pending is not None:
            for values in pending:
                on_record(values)
    except FileProblem as exc:
        scan.error = str(exc)
        tallies = {r.category: Tally(data_errors=1) for r in rules}
    except OSError as exc:
        scan.error = f"{scan.display}: cannot be read ({exc.strerror or type(exc).__name__})"
        tallies = {r.category: Tally(data_errors=1) for r in rules}
    scan.tallies = tallies
    return scan


def apply_change(
    scan: FileScan,
    spec: FolderSpec,
    kind: Kind,
    zone: ZoneInfo,
    as_of: datetime,
    rules: list[BoundRule],
    holds: HoldIndex,
) -> dict[str, int]:
    """Delete the file, or rewrite it atomically without what the rules remove.

    Returns the records changed per category. Reads the file again (the scan
    kept no rows) and refuses if it changed since the scan.
    """
    changed = {r.category: 0 for r in rules}
    if scan.delete_whole:
        atomic_delete(scan.path, expect=scan.stamp)
        for r in rules:
            changed[r.category] = scan.tallies[r.category].candidates
        return changed
    counts = {r.category: Tally() for r in rules}
    items = read(scan.path, spec, kind, zone, as_of)
    header = next(items)
    # Identifying columns empty in every row the file keeps go altogether.
    drop = {c for c in header.identifying_cols if c not in scan.still_filled}
    keep_cols = [i for i in range(len(header.cells)) if i not in drop]
    encoding = "utf-8-sig" if header.bom else spec.encoding
    with atomic_rewrite(scan.path, expect=scan.stamp) as out:
        text = io.TextIOWrapper(out, encoding=encoding, newline="")
        writer = csv.writer(text, delimiter=spec.delimiter, lineterminator=header.newline)
        writer.writerow([header.cells[i] for i in keep_cols])
        for rec in items:
            delete, strip = decide(rec, header, rules, holds, kind.patron_field, counts)
            if delete:
                continue
            cells = list(rec.cells)
            for c in _strip_cols(header, strip):
                cells[c] = ""
            writer.writerow([cells[i] for i in keep_cols])
        text.flush()
        text.detach()
    for r in rules:
        changed[r.category] = counts[r.category].candidates
    return changed


def list_files(spec: FolderSpec) -> list[Path]:
    if not spec.path.is_dir():
        raise FileNotFoundError(f"folder {spec.path} does not exist")
    return sorted(
        p
        for p in spec.path.glob(spec.pattern)
        if p.is_file() and not is_temp(p) and not p.name.startswith(".")
    )
