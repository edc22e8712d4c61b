"""What each kind of export holds, and how a folder is configured.

A folder entry in the policy (``sources.<name>.folders[i]``)::

    path: sources/signup_exports      # relative to PATRON_PRIVACY_HOME, or absolute
    pattern: "*.csv"                  # which files of the folder are exports
    encoding: utf-8                   # a byte-oriented encoding (utf-8, cp1252, latin-1)
    delimiter: ","
    columns:                          # field -> the export's column header
      card_number: Card Number
      ...
    other_columns:                    # every other column, said to be one or the other
      Notes: identifying              #   stripped with the identifying fields
      Reservation Id: keep            #   not personal, kept as it is
    defaults: {branch: MAIN}          # for fields the export does not have
    datetime_formats: ["%m/%d/%Y %H:%M"]   # besides ISO 8601
    branches: [MAIN, EAST]            # known branch codes (optional; others are errors)
    max_field_chars: 1000

A column that is neither mapped nor listed under ``other_columns`` fails the
file: an export that grew a column nobody looked at may hold anything.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path

from patron_privacy import connections


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # datetime | text | bool
    required: bool = False
    identifying: bool = False
    max_chars: int | None = None  # the warehouse column's width, for facts


@dataclass(frozen=True)
class Kind:
    name: str
    fields: tuple[Field, ...]
    clock: tuple[str, ...]  # the first present of these is the record's retention clock
    patron_field: str | None
    description: str

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def identifying(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.identifying)


PC_SIGNUPS = Kind(
    name="pc_signups",
    fields=(
        Field("card_number", "text", identifying=True),
        Field("name", "text", identifying=True),
        Field("email", "text", identifying=True),
        Field("pc", "text", required=True, max_chars=64),
        Field("branch", "text", required=True, max_chars=32),
        Field("start", "datetime", required=True),
        Field("end", "datetime"),
    ),
    clock=("end", "start"),
    patron_field="card_number",
    description="Public-computer sign-up",
)

PROGRAM_REGISTRATIONS = Kind(
    name="program_registrations",
    fields=(
        Field("event", "text", required=True),
        Field("date", "datetime", required=True),
        Field("audience", "text", max_chars=32),
        Field("category", "text", max_chars=80),
        Field("delivery", "text", max_chars=16),
        Field("branch", "text", required=True, max_chars=32),
        Field("attended", "bool"),
        Field("name", "text", identifying=True),
        Field("email", "text", identifying=True),
        Field("phone", "text", identifying=True),
        Field("card_number", "text", identifying=True),
    ),
    clock=("date",),
    patron_field="card_number",
    description="Program registration",
)

# Program audiences (the Public Libraries Survey's) and delivery, from what exports say.
_AUDIENCES = {
    "children": ("children", "child", "kids", "kid", "0-11", "juvenile", "youth (0-11)"),
    "young_adult": ("young_adult", "young adult", "young adults", "teen", "teens", "ya", "12-18"),
    "adult": ("adult", "adults", "19+", "seniors", "senior"),
    "general": ("general", "all ages", "all", "family", "families", "everyone"),
}
AUDIENCE = {syn: code for code, syns in _AUDIENCES.items() for syn in syns}
_DELIVERY = {
    "onsite": ("onsite", "on-site", "on site", "in person", "in-person", "library", "hybrid"),
    "offsite": ("offsite", "off-site", "off site", "outreach"),
    "virtual": ("virtual", "online", "live virtual", "zoom", "webinar"),
}
DELIVERY = {syn: code for code, syns in _DELIVERY.items() for syn in syns}


def audience(text: str | None) -> str:
    return AUDIENCE.get((text or "").strip().lower(), "unknown")


def delivery(text: str | None) -> str | None:
    """onsite, offsite or virtual (hybrid counts once, as in-person); None if unknown."""
    if not text:
        return "onsite"
    return DELIVERY.get(text.strip().lower())


KINDS = {k.name: k for k in (PC_SIGNUPS, PROGRAM_REGISTRATIONS)}

FOLDER_KEYS = (
    "path",
    "pattern",
    "encoding",
    "delimiter",
    "columns",
    "other_columns",
    "defaults",
    "datetime_formats",
    "branches",
    "max_field_chars",
    "max_line_bytes",
)
SOURCE_KEYS = ("folders", "validation")
OTHER = ("identifying", "keep")


@dataclass(frozen=True)
class FolderSpec:
    """One folder of exports, its column mapping checked and resolved."""

    index: int
    path: Path
    pattern: str
    encoding: str
    delimiter: str
    columns: dict[str, str]  # field -> header
    other_columns: dict[str, str]  # header -> identifying | keep
    defaults: dict[str, str]
    datetime_formats: tuple[str, ...]
    branches: frozenset[str] | None
    max_field_chars: int
    max_line_bytes: int
    label: str = field(default="")  # how messages name the folder (its last path parts)

    def display(self, file: Path) -> str:
        return f"{self.label}/{file.name}"


def _is_byte_oriented(encoding: str) -> bool:
    try:
        codecs.lookup(encoding)
        return "\n".encode(encoding) == b"\n" and ",".encode(encoding) == b","
    except (LookupError, UnicodeError):
        return False


def check_folder(kind: Kind, i: int, raw) -> list[str]:
    where = f"folders[{i}]"
    if not isinstance(raw, dict):
        return [f"{where}: expected a mapping with path and columns"]
    problems = [
        f"{where}.{k}: unknown option (expected one of {', '.join(FOLDER_KEYS)})"
        for k in sorted(set(raw) - set(FOLDER_KEYS))
    ]
    if not isinstance(raw.get("path"), str) or not raw["path"].strip():
        problems.append(f"{where}.path: required, the folder the exports arrive in")
    enc = raw.get("encoding", "utf-8")
    if not isinstance(enc, str) or not _is_byte_oriented(enc):
        problems.append(
            f"{where}.encoding: {enc!r} is not a byte-oriented encoding (utf-8, cp1252, latin-1)"
        )
    delim = raw.get("delimiter", ",")
    if not isinstance(delim, str) or len(delim) != 1 or delim in '"\r\n':
        problems.append(f"{where}.delimiter: expected one character, got {delim!r}")
    cols = raw.get("columns")
    known = {f.name for f in kind.fields}
    if not isinstance(cols, dict) or not cols:
        problems.append(f"{where}.columns: required, a mapping of field to column header")
        cols = {}
    for name, header in cols.items():
        if name not in known:
            problems.append(
                f"{where}.columns.{name}: unknown field for {kind.name} "
                f"(expected one of {', '.join(f.name for f in kind.fields)})"
            )
        if not isinstance(header, str) or not header.strip():
            problems.append(f"{where}.columns.{name}: expected the column's header text")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(f"{where}.defaults: expected a mapping of field to value")
        defaults = {}
    for name, value in defaults.items():
        if name not in known or kind.field(name).identifying or kind.field(name).kind != "text":
            problems.append(f"{where}.defaults.{name}: only non-identifying text fields take one")
        elif not isinstance(value, str):
            problems.append(f"{where}.defaults.{name}: expected text")
    for f in kind.fields:
        if f.required and f.name not in cols and f.name not in defaults:
            problems.append(f"{where}.columns.{f.name}: required for {kind.name}")
    other = raw.get("other_columns") or {}
    if not isinstance(other, dict):
        problems.append(f"{where}.other_columns: expected a mapping of header to identifying|keep")
        other = {}
    for header, what in other.items():
        if what not in OTHER:
            problems.append(f"{where}.other_columns.{header}: expected identifying or keep")
        if header in cols.values():
            problems.append(f"{where}.other_columns.{header}: already mapped under columns")
    if len(set(cols.values())) != len(cols):
        problems.append(f"{where}.columns: two fields map to the same column")
    fmts = raw.get("datetime_formats") or []
    if not isinstance(fmts, list) or not all(isinstance(x, str) and "%" in x for x in fmts):
        problems.append(f"{where}.datetime_formats: expected a list of strptime formats")
    branches = raw.get("branches")
    if branches is not None and (
        not isinstance(branches, list) or not all(isinstance(b, str) for b in branches)
    ):
        problems.append(f"{where}.branches: expected a list of branch codes")
    for key, lo, hi in (("max_field_chars", 16, 1_000_000), ("max_line_bytes", 256, 16_000_000)):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
            problems.append(f"{where}.{key}: expected a whole number from {lo} to {hi}")
    return problems


def check_options(kind: Kind, opts: dict) -> list[str]:
    problems = [
        f"{k}: unknown option (expected one of {', '.join(SOURCE_KEYS)})"
        for k in sorted(set(opts) - set(SOURCE_KEYS))
    ]
    folders = opts.get("folders")
    if not isinstance(folders, list) or not folders:
        return [*problems, "folders: expected a list of folders (path, columns, ...)"]
    for i, raw in enumerate(folders):
        problems += check_folder(kind, i, raw)
    return problems


def resolve_path(text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else connections.local_home() / p


def folder_specs(opts: dict) -> list[FolderSpec]:
    out = []
    for i, raw in enumerate(opts.get("folders") or []):
        path = resolve_path(raw["path"])
        max_field = int(raw.get("max_field_chars") or 1000)
        out.append(
            FolderSpec(
                index=i,
                path=path,
                pattern=raw.get("pattern") or "*.csv",
                encoding=raw.get("encoding") or "utf-8",
                delimiter=raw.get("delimiter") or ",",
                columns=dict(raw["columns"]),
                other_columns=dict(raw.get("other_columns") or {}),
                defaults=dict(raw.get("defaults") or {}),
                datetime_formats=tuple(raw.get("datetime_formats") or ()),
                branches=frozenset(raw["branches"]) if raw.get("branches") else None,
                max_field_chars=max_field,
                max_line_bytes=int(raw.get("max_line_bytes") or max(65536, 8 * max_field)),
                label=path.name,
            )
        )
    return out
