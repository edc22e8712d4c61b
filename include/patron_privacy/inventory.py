"""The personal-data inventory: every place a source holds data about a patron, and what covers it.

Retention rules only protect the tables someone remembered; every leak the
anchor systems are known for is a copy nobody mapped. This module makes the
map from the live database itself, so a table added by an upgrade shows up
the next night:

* **discovery** reads the schema with SQLAlchemy reflection: every foreign key
  to the patron table, the source's known *keyless* references (columns that
  hold a patron's number, user id or card number without a declared key, kept
  in one place in each connector), and column-name rules for personal fields
  (names, emails, phones, addresses, birth dates, identifiers, and free text
  in records about a patron);
* **coverage** classifies each discovered table: *covered* (a rule of the
  policy acts on it: the table of one of its categories), *kept on purpose*
  (the policy's ``kept_on_purpose`` section names it with a reason), or *not
  covered*; the figure is the share of discovered tables that are classified.

What a source knows (its patron table, keyless references, extra column rules)
is a :class:`SourceInventory` exported as ``INVENTORY`` by its connector
module; the discovery and coverage here are the same for every source.

Everything this module returns or prints is schema metadata and counts: table
and column names, never a value read from a row.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, inspect, true

COVERED = "covered"
KEPT = "kept on purpose"
NOT_COVERED = "not covered"


@dataclass(frozen=True)
class KeylessLink:
    """A column that points at a patron although the schema declares no foreign key.

    ``via`` names the patron-table column the value matches (default: the patron
    key; e.g. ``userid`` or ``cardnumber``). ``scope`` restricts the rows where
    the value means a patron, as ``(column, allowed values)`` (an action log's
    ``object`` is a patron only for patron modules). ``queryable`` is False for
    pseudonyms nobody here can compute (they are inventoried, but a patron's
    report cannot select them).
    """

    table: str
    column: str
    via: str | None = None
    scope: tuple[str, tuple] | None = None
    queryable: bool = True
    note: str = ""


@dataclass(frozen=True)
class ColumnRule:
    """A personal field recognised by its column name (``pattern`` must match the whole
    lower-cased name). ``needs_link``: personal only in a table that links to a patron
    (free text, a book title or a login are personal in a patron's request, not in a
    catalogue record)."""

    kind: str
    pattern: str
    needs_link: bool = False

    def matches(self, column: str) -> bool:
        return re.fullmatch(self.pattern, column.lower()) is not None


COLUMN_RULES: tuple[ColumnRule, ...] = (
    ColumnRule(
        "name",
        r"(sur|first|middle|last|given|family|full|other|preferred_?)names?"
        r"|initials|(alt)?contact(first|sur)?name|altcontactsurname",
    ),
    ColumnRule("name", r"title|contacttitle|pronouns", needs_link=True),
    ColumnRule("email", r"(b_)?e_?mail(pro)?|\w*_email"),
    ColumnRule("phone", r"(b_)?(phone|mobile|fax)(pro)?|altphone|altcontactphone|smsalertnumber"),
    ColumnRule(
        "address",
        r"(b_)?(streetnumber|streettype|address2?|city|state|zipcode|country)"
        r"|altcontact(address[123]|state|zipcode|country)|(to|cc)_address",
    ),
    ColumnRule("birth date", r"dateofbirth|date_of_birth|birthdate|birth_date|dob"),
    ColumnRule("demographic", r"sex|gender"),
    ColumnRule("identifier", r"cardnumber|hashed_borrowernumber"),
    ColumnRule("login", r"userid|username|password|secret", needs_link=True),
    ColumnRule(
        "free text",
        r"\w*(note|notes|comment|comments|message|content|body|review|subject|diff|info"
        r"|reason|query_desc|query_cgi)|notes(opac|staff)|changed_fields|extended_attributes"
        r"|url|urls|term",
        needs_link=True,
    ),
    ColumnRule("file", r"imagefile|file_content|file_name", needs_link=True),
)


@dataclass(frozen=True)
class SourceInventory:
    """What discovery must know about one source; exported as ``INVENTORY`` by its connector."""

    source: str
    patron_table: str
    patron_key: str
    keyless: tuple[KeylessLink, ...] = ()
    column_rules: tuple[ColumnRule, ...] = COLUMN_RULES
    schemas: tuple[str | None, ...] = (None,)


@dataclass(frozen=True)
class Link:
    column: str
    kind: str  # "foreign key", "keyless", or "patron key" (the patron table itself)
    via: str
    scope: tuple[str, tuple] | None = None
    queryable: bool = True


@dataclass
class Place:
    """One discovered table: how it links to a patron and which columns are personal."""

    table: str
    links: list[Link] = field(default_factory=list)
    personal: dict[str, str] = field(default_factory=dict)

    @property
    def linked(self) -> bool:
        return bool(self.links)

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "links": [
                {"column": x.column, "kind": x.kind, "via": x.via, "queryable": x.queryable}
                for x in self.links
            ],
            "personal": dict(sorted(self.personal.items())),
        }


def source_inventory(source: str) -> SourceInventory:
    """The connector's ``INVENTORY`` (imported only when asked, like the connector itself)."""
    from patron_privacy import sources  # noqa: PLC0415

    if source not in sources.SOURCES:
        raise ValueError(
            f"unknown source {source!r} (expected one of {', '.join(sources.SOURCES)})"
        )
    spec = getattr(importlib.import_module(sources.SOURCES[source]), "INVENTORY", None)
    if spec is None:
        raise ValueError(f"source {source} has no personal-data inventory yet")
    return spec


def _fullname(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


def discover(bind: Engine | Connection, spec: SourceInventory) -> dict[str, Place]:
    """Every table of the live source that links to a patron or holds personal fields."""
    insp = inspect(bind)
    places: dict[str, Place] = {}
    columns: dict[str, list[str]] = {}
    patron_schema, _, patron_name = spec.patron_table.rpartition(".")
    patron_schema = patron_schema or None
    for schema in spec.schemas:
        for (sch, table), cols in insp.get_multi_columns(schema=schema).items():
            columns[_fullname(sch, table)] = [c["name"] for c in cols]
        for (sch, table), fks in insp.get_multi_foreign_keys(schema=schema).items():
            name = _fullname(sch, table)
            for fk in fks:
                referred = (fk.get("referred_schema") or sch, fk["referred_table"])
                if referred[1] != patron_name or (referred[0] or None) != patron_schema:
                    continue
                for col, ref in zip(fk["constrained_columns"], fk["referred_columns"], strict=True):
                    place = places.setdefault(name, Place(name))
                    place.links.append(Link(col, "foreign key", ref))
    if spec.patron_table in columns:
        places.setdefault(spec.patron_table, Place(spec.patron_table)).links.insert(
            0, Link(spec.patron_key, "patron key", spec.patron_key)
        )
    for k in spec.keyless:
        if k.column in columns.get(k.table, ()):
            place = places.setdefault(k.table, Place(k.table))
            if not any(x.column == k.column for x in place.links):
                place.links.append(
                    Link(k.column, "keyless", k.via or spec.patron_key, k.scope, k.queryable)
                )
    for table, cols in columns.items():
        linked = table in places
        for col in cols:
            for rule in spec.column_rules:
                if (linked or not rule.needs_link) and rule.matches(col):
                    places.setdefault(table, Place(table)).personal.setdefault(col, rule.kind)
                    break
    for place in places.values():
        place.links.sort(key=lambda x: (x.kind != "patron key", x.column))
    return dict(sorted(places.items()))


# --- coverage ---------------------------------------------------------------------------------


@dataclass
class Classified:
    place: Place
    status: str
    by: list[str] = field(default_factory=list)  # categories (covered) or the reason (kept)

    def as_dict(self) -> dict:
        return {**self.place.as_dict(), "status": self.status, "by": list(self.by)}


@dataclass
class InventoryReport:
    source: str
    policy_version: str
    places: list[Classified]
    stale_kept: list[str] = field(default_factory=list)  # kept_on_purpose tables not found

    def count(self, status: str) -> int:
        return sum(1 for c in self.places if c.status == status)

    @property
    def uncovered(self) -> list[str]:
        return [c.place.table for c in self.places if c.status == NOT_COVERED]

    @property
    def coverage_pct(self) -> float:
        if not self.places:
            return 100.0
        return round(100.0 * (len(self.places) - len(self.uncovered)) / len(self.places), 1)

    def summary(self) -> dict:
        """Counts and table names only: safe for XCom, logs and alerts."""
        return {
            "source": self.source,
            "policy_version": self.policy_version,
            "places": len(self.places),
            "covered": self.count(COVERED),
            "kept_on_purpose": self.count(KEPT),
            "not_covered": len(self.uncovered),
            "coverage_pct": self.coverage_pct,
            "uncovered_tables": self.uncovered,
            "stale_kept_on_purpose": list(self.stale_kept),
        }

    def as_dict(self) -> dict:
        return {**self.summary(), "inventory": [c.as_dict() for c in self.places]}


def _written_tables(rule) -> list[str]:
    """The tables a rule's action acts on: its category's table, and any other table its
    statements update or delete (Evergreen's patron purge deletes the patron's cards, addresses and
    settings). Built from the engine's own statements, so coverage can never claim a table
    the action does not touch. Statements that cannot be built without a live run (they
    need its options) leave just the category's table."""
    from patron_privacy.engine import Context, _change_statements  # noqa: PLC0415

    tables = [rule.category.table.fullname]
    try:
        statements = _change_statements(rule, Context(as_of=datetime(2000, 1, 1)), true())
    except Exception:  # noqa: BLE001 - only the extra tables are lost, never a rule
        return tables
    for stmt in statements:
        # Rows a statement updates or deletes; an INSERT's target (an archive of what was
        # moved) is written to, not retained by, the rule.
        if not (getattr(stmt, "is_update", False) or getattr(stmt, "is_delete", False)):
            continue
        name = getattr(getattr(stmt, "table", None), "fullname", None)
        if name and name not in tables:
            tables.append(name)
    return tables


def rule_tables(policy, source: str) -> dict[str, list[str]]:
    """Table -> the policy's categories acting on it, from the engine's Category objects."""
    out: dict[str, list[str]] = {}
    for rule in policy.rules_for(source):
        for table in _written_tables(rule):
            names = out.setdefault(table, [])
            if rule.category.name not in names:
                names.append(rule.category.name)
    return out


def classify(places: dict[str, Place], policy, source: str) -> InventoryReport:
    covered = rule_tables(policy, source)
    kept = {k.table: k.reason for k in getattr(policy, "kept_on_purpose", ()) if k.source == source}
    out = []
    for name, place in places.items():
        if name in covered:
            out.append(Classified(place, COVERED, covered[name]))
        elif name in kept:
            out.append(Classified(place, KEPT, [kept[name]]))
        else:
            out.append(Classified(place, NOT_COVERED))
    stale = sorted(t for t in kept if t not in places)
    return InventoryReport(source, policy.version, out, stale)


def build_report(
    source: str, policy=None, bind: Engine | Connection | None = None
) -> InventoryReport:
    """Discover the live source (connection of its connector) and classify against the policy."""
    from patron_privacy import connections, sources  # noqa: PLC0415
    from patron_privacy.policy import Policy, load_policy  # noqa: PLC0415

    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    spec = source_inventory(source)
    if bind is None:
        engine = connections.engine_for(sources.connector(source).conn_id)
        try:
            places = discover(engine, spec)
        finally:
            engine.dispose()
    else:
        places = discover(bind, spec)
    return classify(places, pol, source)


# Sources with no database schema to reflect. What they hold about a person is fixed by
# the format their connector reads, and the policy's rules for the source strip or delete
# exactly those fields; the inventory says so instead of discovering anything.
NO_SCHEMA: dict[str, str] = {
    "signups": "CSV exports in drop folders, no schema: the personal columns are the ones "
    "each folder maps in the policy (card number, name, email, and every other column "
    "marked identifying); an export with a column nobody classified fails the file",
    "programs": "CSV exports in drop folders, no schema: the personal columns are the ones "
    "each folder maps in the policy (registrant name, email, phone, card number, and every "
    "other column marked identifying); an export with a column nobody classified fails",
    "squid": "Squid access logs in a fixed line format, no schema: the personal fields are "
    "the client address, the ident (user name) and the URL's query string",
    "libcal": "hosted by Springshare and read through its API, no database to reflect: "
    "registrations hold the registrant's name, email, phone and card number, and the "
    "connector counts those past their window each night for the library to purge",
}


def connector_coverage(source: str, policy=None) -> dict:
    """For a source without a schema: what covers its personal fields (names and counts)."""
    from patron_privacy.policy import Policy, load_policy  # noqa: PLC0415

    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    rules = [
        {
            "category": r.category,
            "action": r.action,
            "window": r.window.text,
            "fields": list(r.fields),
        }
        for r in pol.rules
        if r.source == source
    ]
    return {
        "source": source,
        "policy_version": pol.version,
        "schema": False,
        "covered_by": "connector",
        "what": NO_SCHEMA[source],
        "rules": rules,
        "not_covered": 0 if rules else 1,
    }


def format_connector_coverage(cov: dict) -> str:
    lines = [f"{cov['source']}: {cov['what']}.", "", "covered by its connector, with these rules:"]
    for r in cov["rules"]:
        fields = f" ({', '.join(r['fields'])})" if r["fields"] else ""
        lines.append(f"  {r['category']}: {r['action']}{fields} after {r['window']}")
    if not cov["rules"]:
        lines.append("  none: the policy has no rule for this source")
    return "\n".join(lines)


class UnclassifiedPersonalData(RuntimeError):
    """A source holds patron data in a table no rule covers and no one kept on purpose."""

    def __init__(self, report: InventoryReport):
        self.report = report
        super().__init__(
            f"source {report.source}: {len(report.uncovered)} table(s) hold patron data that "
            f"no retention rule covers and the policy does not keep on purpose: "
            f"{', '.join(report.uncovered)} (coverage {report.coverage_pct}%)"
        )


def assert_all_classified(source: str, policy=None) -> dict:
    """For the nightly DAG: the inventory's counts, or a compliance finding.

    Discovers the live source and classifies every place against the policy;
    returns ``InventoryReport.summary()`` (counts and table names, XCom-safe)
    when every place is covered or kept on purpose, and raises
    :class:`UnclassifiedPersonalData` naming the tables otherwise (for
    example after a source upgrade adds a table with a key to the patrons).
    """
    report = build_report(source, policy)
    if report.uncovered:
        raise UnclassifiedPersonalData(report)
    return report.summary()


def format_report(report: InventoryReport, *, width: int = 60) -> str:
    """The inventory as a table a person reads, then the coverage figure."""
    head = ("table", "links to patron", "personal fields", "status", "by")
    rows = []
    for c in report.places:
        links = ", ".join(
            f"{x.column}" + ("" if x.kind == "foreign key" else f" ({x.kind})")
            for x in c.place.links
        )
        personal = ", ".join(sorted(c.place.personal))
        by = "; ".join(c.by) if c.status == COVERED else ""
        rows.append(
            (
                c.place.table,
                _clip(links or "-", width),
                _clip(personal or "-", width),
                c.status,
                _clip(by or ("(reason in policy)" if c.status == KEPT else "-"), width),
            )
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()

    lines = [fmt(head), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows), ""]
    s = report.summary()
    lines.append(
        f"coverage: {s['places'] - s['not_covered']} of {s['places']} places classified "
        f"({s['coverage_pct']}%): {s['covered']} covered by rules, {s['kept_on_purpose']} "
        f"kept on purpose, {s['not_covered']} not covered"
    )
    if report.uncovered:
        lines.append("not covered: " + ", ".join(report.uncovered))
    if report.stale_kept:
        lines.append(
            f"kept on purpose, not in this source ({len(report.stale_kept)}): "
            + ", ".join(report.stale_kept)
        )
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def generated_at() -> str:
    """When a report was made (wall clock: this is a label, not a retention clock)."""
    return datetime.now().isoformat(timespec="seconds")
