"""What a release publishes: its tables, the SQL that counts them, and how they are tied.

Counting happens in the warehouse (one ``GROUP BY`` per question); what comes
back is bounded by the number of branches, item types, categories, bands and
days — never by the number of facts — so memory is flat in the fact count.
The rest (margins, the cross products with explicit zeros, the relations the
audit needs) is built here from those grouped rows.

Each table is a list of rows; each row has its labels and, per value column,
the cell it shows. Cells are shared between tables (the loans of one branch
and item type are one cell whether the patron-category table or the age-band
table shows them), which is how a margin in one table is tied to the parts
in another.

Tables whose facts come from sources not recorded yet (public computers,
Internet use, programs) are declared as :class:`PlannedTable`: when their
fact table appears in the warehouse with the listed columns, they are counted
and protected like the others; until then the manifest lists them as not
available.
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import (
    Connection,
    Select,
    and_,
    case,
    column,
    func,
    inspect,
    literal,
    select,
    table,
)

from patron_privacy.release.sdc import TOTAL, CellKey, Relation
from patron_privacy.warehouse import circulation_facts as cf

UNKNOWN = "unknown"
FACT_TABLE = "circulation_facts"
FACT_COLUMNS = (
    "loan_date",
    "branch",
    "item_type",
    "collection",
    "patron_category",
    "category_type",
    "age_band",
    "patron_pseudonym",
    "renewals",
    "reporting_period",
)


class ReleaseInputError(ValueError):
    """The release cannot be made from this input: nothing is published."""


# -- periods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    kind: str  # "month" or "year"
    label: str  # "2026-10" or "2026"
    start: date
    end: date  # exclusive

    @property
    def year(self) -> int:
        return self.start.year

    def months(self) -> list[str]:
        out, d = [], self.start
        while d < self.end:
            out.append(f"{d.year:04d}-{d.month:02d}")
            d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        return out

    def title(self) -> str:
        if self.kind == "month":
            return f"{calendar.month_name[self.start.month]} {self.start.year}"
        return f"Year {self.start.year}"


def month_period(text: str) -> Period:
    m = re.fullmatch(r"(\d{4})-(\d{2})", str(text).strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1900:
        raise ReleaseInputError(f"unknown period {text!r}: expected a month as YYYY-MM")
    y, mo = int(m.group(1)), int(m.group(2))
    return Period(
        "month", f"{y:04d}-{mo:02d}", date(y, mo, 1), date(y + (mo == 12), mo % 12 + 1, 1)
    )


def year_period(text: str | int) -> Period:
    m = re.fullmatch(r"\d{4}", str(text).strip())
    if not m or int(m.group(0)) < 1900:
        raise ReleaseInputError(f"unknown year {text!r}: expected YYYY")
    y = int(m.group(0))
    return Period("year", f"{y:04d}", date(y, 1, 1), date(y + 1, 1, 1))


def previous_month(day: date) -> Period:
    """The month before ``day``'s month: what a run on the 2nd of November publishes."""
    first = date(day.year, day.month, 1)
    prev = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    return month_period(f"{prev.year:04d}-{prev.month:02d}")


# -- tables ------------------------------------------------------------------------------------


@dataclass
class Table:
    name: str
    title: str
    definition: str
    label_columns: tuple[str, ...]
    value_columns: tuple[str, ...]
    rows: list[tuple[tuple[str, ...], dict[str, CellKey]]] = field(default_factory=list)
    source: str = FACT_TABLE
    chart: str | None = None  # how the report draws it

    def cells(self) -> set[CellKey]:
        return {k for _, cells in self.rows for k in cells.values()}


@dataclass(frozen=True)
class PlannedTable:
    """A table whose facts another source records; counted once its fact table exists."""

    name: str
    title: str
    definition: str
    fact_table: str
    date_column: str
    dims: tuple[str, ...]
    measures: tuple[tuple[str, str], ...]  # (value column, "count" or "sum:<column>")
    source: str
    levels: tuple[tuple[str, ...], ...] = ()  # published margins; default: every subset

    @property
    def required_columns(self) -> tuple[str, ...]:
        cols = [self.date_column, *self.dims]
        cols += [m.split(":", 1)[1] for _, m in self.measures if m.startswith("sum:")]
        return tuple(dict.fromkeys(cols))


PLANNED_MONTHLY: tuple[PlannedTable, ...] = (
    PlannedTable(
        "pc_sessions_by_branch_weekday_hour",
        "Public-computer sessions by branch, weekday and hour",
        "Sign-ins on the library's public computers (Libki) that started in the period, "
        "by branch, weekday (Monday = 0) and starting hour. Every session counts, whatever "
        "its length.",
        "pc_session_facts",
        "session_date",
        ("branch", "weekday", "hour"),
        (("sessions", "count"),),
        "Libki (issue 4)",
        (("branch", "weekday", "hour"), ("branch", "weekday"), ("branch",), ()),
    ),
    PlannedTable(
        "pc_sessions_by_duration_band",
        "Public-computer sessions by branch and duration",
        "Public-computer sessions that started in the period, by branch and length band.",
        "pc_session_facts",
        "session_date",
        ("branch", "duration_minutes_band"),
        (("sessions", "count"),),
        "Libki (issue 4)",
    ),
    PlannedTable(
        "internet_use_by_branch",
        "Internet use on public computers by branch",
        "Browsing sessions and web requests through the library's filter (Squid), by branch.",
        "internet_use_facts",
        "use_date",
        ("branch",),
        (("sessions", "sum:sessions"), ("requests", "sum:requests")),
        "Squid logs (issue 4)",
    ),
    PlannedTable(
        "programs_by_audience_and_delivery",
        "Programs and attendance by audience and delivery",
        "Programs held in the period and their attendance, by audience (children 0-11, "
        "young adult 12-18, adult 19+, all ages) and by onsite, offsite or live virtual.",
        "program_facts",
        "event_date",
        ("audience", "delivery_mode"),
        (("programs", "count"), ("attendance", "sum:attended")),
        "LibCal (issue 4)",
    ),
    PlannedTable(
        "registrations_against_attendance",
        "Program registrations against attendance",
        "Registrations taken and attendance recorded for the period's programs, by branch "
        "and audience.",
        "program_facts",
        "event_date",
        ("branch", "audience"),
        (("registrations", "sum:registered"), ("attendance", "sum:attended")),
        "LibCal (issue 4)",
    ),
)


@dataclass
class Counted:
    """Everything a release's protection needs: values, tables, relations, and what is missing."""

    values: dict[CellKey, int] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    unavailable: list[dict] = field(default_factory=list)
    facts: dict[str, int] = field(default_factory=dict)
    definitions: list[dict] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)  # the SQL run, for the benchmark

    @property
    def empty(self) -> bool:
        return not any(self.facts.values())


def _label(v) -> str:
    if v is None or (isinstance(v, str) and not v.strip()):
        return UNKNOWN
    return str(v)


def _dedupe(relations: Iterable[Relation]) -> list[Relation]:
    seen, out = set(), []
    for r in relations:
        sig = (r.sense, frozenset(r.terms))
        if sig not in seen:
            seen.add(sig)
            out.append(r)
    return out


def additive_table(
    name: str,
    title: str,
    definition: str,
    measure: str,
    value_column: str,
    dims: tuple[str, ...],
    domains: dict[str, list[str]],
    levels: Iterable[tuple[str, ...]] | None = None,
    *,
    extra_measures: tuple[tuple[str, str], ...] = (),
    chart: str | None = None,
    source: str = FACT_TABLE,
) -> tuple[Table, list[Relation]]:
    """Rows for every level (dims kept; the others are totals) over the full cross product,
    zeros included, and the relation 'a total is the sum of its parts' between levels."""
    if levels is None:
        levels = [c for n in range(len(dims), -1, -1) for c in itertools.combinations(dims, n)]
    levels = [tuple(d for d in dims if d in set(lv)) for lv in levels]
    measures = ((value_column, measure), *extra_measures)
    t = Table(
        name, title, definition, dims, tuple(c for c, _ in measures), chart=chart, source=source
    )
    relations: list[Relation] = []
    level_set = {frozenset(lv) for lv in levels}
    for lv in levels:
        for combo in itertools.product(*(domains[d] for d in lv)):
            coords = dict(zip(lv, combo, strict=True))
            labels = tuple(coords.get(d, TOTAL) for d in dims)
            t.rows.append((labels, {col: CellKey.of(m, **coords) for col, m in measures}))
            for d in dims:
                if d in coords or frozenset((*lv, d)) not in level_set:
                    continue
                for _, m in measures:
                    parent = CellKey.of(m, **coords)
                    relations.append(
                        Relation.total(parent, [parent.with_(d, v) for v in domains[d]])
                    )
    return t, relations


def _sum_cube(cube: dict[tuple, int], dims: tuple[str, ...], measure: str) -> dict[CellKey, int]:
    """Every level's totals from the finest grouped rows (bounded by the codes, not the facts)."""
    out: dict[CellKey, int] = defaultdict(int)
    for combo, n in cube.items():
        coords = dict(zip(dims, combo, strict=True))
        for k in range(len(dims) + 1):
            for kept in itertools.combinations(dims, k):
                out[CellKey.of(measure, **{d: coords[d] for d in kept})] += n
    return out


def _fill(values: dict[CellKey, int], tables: Iterable[Table]) -> None:
    """Keep exactly the cells the tables publish (zeros included), nothing finer."""
    published = set().union(*(t.cells() for t in tables))
    for k in list(values):
        if k not in published:
            del values[k]
    for k in published:
        values.setdefault(k, 0)


def fact_table_problem(
    conn: Connection, name: str, columns: Iterable[str], *, needs_rows: bool = False
) -> str | None:
    insp = inspect(conn)
    if not insp.has_table(name):
        return f"no fact table {name} in the warehouse"
    have = {c["name"] for c in insp.get_columns(name)}
    missing = [c for c in columns if c not in have]
    if missing:
        return f"fact table {name} lacks column(s) {', '.join(missing)}"
    if (
        needs_rows
        and conn.execute(select(literal(1)).select_from(table(name)).limit(1)).first() is None
    ):
        # An empty table means the source is not recording yet: publishing zeros would fake it.
        return f"no facts recorded yet in {name}"
    return None


def require_circulation_facts(conn: Connection) -> None:
    problem = fact_table_problem(conn, FACT_TABLE, FACT_COLUMNS)
    if problem:
        raise ReleaseInputError(
            f"{problem}: the release reads de-identified facts that the nightly run records "
            f"(run koha_nightly_retention, or check the warehouse_db connection)"
        )


def _in_period(period: Period):
    return and_(cf.c.loan_date >= period.start, cf.c.loan_date < period.end)


def _run(conn: Connection, q: Select, counted: Counted):
    counted.queries.append(str(q.compile(conn, compile_kwargs={"literal_binds": True})))
    return conn.execute(q).all()


# -- the monthly release -----------------------------------------------------------------------

CIRC_DIMS = ("branch", "item_type", "patron_category", "age_band")


def monthly_queries(period: Period) -> dict[str, Select]:
    where = _in_period(period)
    cube = (
        select(
            cf.c.branch,
            cf.c.item_type,
            cf.c.patron_category,
            cf.c.age_band,
            func.count().label("n"),
        )
        .where(where)
        .group_by(cf.c.branch, cf.c.item_type, cf.c.patron_category, cf.c.age_band)
    )
    linked = and_(where, cf.c.patron_pseudonym.isnot(None))
    by_branch = (
        select(cf.c.branch, func.count(cf.c.patron_pseudonym.distinct()).label("n"))
        .where(linked)
        .group_by(cf.c.branch)
    )
    overall = select(func.count(cf.c.patron_pseudonym.distinct()).label("n")).where(linked)
    return {"cube": cube, "borrowers_by_branch": by_branch, "borrowers": overall}


def borrower_relations(branches: list[str], loans: str) -> list[Relation]:
    """Distinct borrowers: at most the sum over branches, at least each branch, at most loans."""
    total = CellKey.of("borrowers")
    rels = [Relation.at_most_sum(total, [CellKey.of("borrowers", branch=b) for b in branches])]
    for b in branches:
        rels.append(Relation.at_most(CellKey.of("borrowers", branch=b), total))
        rels.append(
            Relation.at_most(CellKey.of("borrowers", branch=b), CellKey.of(loans, branch=b))
        )
    rels.append(Relation.at_most(total, CellKey.of(loans)))
    return rels


def borrowers_table(branches: list[str], period: Period) -> Table:
    t = Table(
        "active_borrowers_by_branch",
        "Active borrowers by branch",
        f"Distinct borrowers with at least one loan in {period.title()} (counted by their "
        "keyed pseudonym for the reporting year), per branch of the loan. A person who "
        "borrowed at two branches counts once in each, and once in the total.",
        ("branch",),
        ("borrowers",),
        chart="bar_branch",
    )
    for b in branches:
        t.rows.append(((b,), {"borrowers": CellKey.of("borrowers", branch=b)}))
    t.rows.append(((TOTAL,), {"borrowers": CellKey.of("borrowers")}))
    return t


def count_monthly(conn: Connection, period: Period, *, dp=None) -> Counted:
    """Count the monthly release in the warehouse; ``dp`` swaps in capped, noised counts."""
    require_circulation_facts(conn)
    counted = Counted()
    if dp is not None:
        cube, by_branch, overall, domains = dp.monthly_counts(conn, period, counted)
    else:
        qs = monthly_queries(period)
        cube = {tuple(_label(v) for v in r[:4]): int(r[4]) for r in _run(conn, qs["cube"], counted)}
        by_branch = {
            _label(r[0]): int(r[1]) for r in _run(conn, qs["borrowers_by_branch"], counted)
        }
        overall = int(_run(conn, qs["borrowers"], counted)[0][0] or 0)
        domains = {d: sorted({c[i] for c in cube}) for i, d in enumerate(CIRC_DIMS)}
    counted.facts[FACT_TABLE] = int(sum(cube.values())) if dp is None else dp.facts_in_period
    values = dict(_sum_cube(cube, CIRC_DIMS, "loans"))
    loans_def = (
        f"Checkouts (loans) whose loan date falls in {period.title()}, from the "
        "de-identified facts recorded when loans are returned: a loan still out when the "
        "release runs is counted in a later rerun of the period. Renewals are not counted here."
    )
    t1, r1 = additive_table(
        "circulation_by_branch_item_type_patron_category",
        "Circulation by branch, item type and patron category",
        loans_def,
        "loans",
        "loans",
        ("branch", "item_type", "patron_category"),
        domains,
        [
            ("branch", "item_type", "patron_category"),
            ("branch", "item_type"),
            ("branch", "patron_category"),
            ("branch",),
            ("item_type",),
            ("patron_category",),
            (),
        ],
        chart="stack_branch_item_type",
    )
    t2, r2 = additive_table(
        "circulation_by_branch_item_type_age_band",
        "Circulation by branch, item type and age band",
        loans_def + " Age band: the borrower's age on the loan date (children 0-11, young "
        "adults 12-18, adults 19-64 and 65+); unknown when the loan was not linked to a "
        "patron or no birth date was held.",
        "loans",
        "loans",
        ("branch", "item_type", "age_band"),
        domains,
        [
            ("branch", "item_type", "age_band"),
            ("branch", "item_type"),
            ("branch", "age_band"),
            ("branch",),
            ("item_type",),
            ("age_band",),
            (),
        ],
        chart="bar_age_band",
    )
    branches = domains["branch"]
    t3 = borrowers_table(branches, period)
    for b in branches:
        values[CellKey.of("borrowers", branch=b)] = int(by_branch.get(b, 0))
    values[CellKey.of("borrowers")] = overall
    counted.tables = [t1, t2, t3]
    counted.relations = _dedupe([*r1, *r2, *borrower_relations(branches, "loans")])
    _fill(values, counted.tables)
    counted.values = values
    return counted


# -- planned tables (other sources) ------------------------------------------------------------


def count_planned(conn: Connection, period: Period, counted: Counted) -> None:
    """Count each planned table whose facts exist; list the others as not available."""
    for spec in PLANNED_MONTHLY:
        problem = fact_table_problem(conn, spec.fact_table, spec.required_columns, needs_rows=True)
        if problem:
            counted.unavailable.append(
                {
                    "name": spec.name,
                    "title": spec.title,
                    "available": False,
                    "reason": f"{problem} (facts from {spec.source} are not recorded yet)",
                    "fact_table": spec.fact_table,
                    "expects_columns": list(spec.required_columns),
                }
            )
            continue
        ft = table(spec.fact_table, *(column(c) for c in spec.required_columns))
        aggs = []
        for col, m in spec.measures:
            if m == "count":
                aggs.append(func.count().label(col))
            else:
                aggs.append(func.coalesce(func.sum(ft.c[m.split(":", 1)[1]]), 0).label(col))
        q = (
            select(*(ft.c[d] for d in spec.dims), *aggs)
            .where(ft.c[spec.date_column] >= period.start, ft.c[spec.date_column] < period.end)
            .group_by(*(ft.c[d] for d in spec.dims))
        )
        rows = _run(conn, q, counted)
        cube = {tuple(_label(v) for v in r[: len(spec.dims)]): r[len(spec.dims) :] for r in rows}
        counted.facts[spec.fact_table] = counted.facts.get(spec.fact_table, 0) + len(rows)
        domains = {d: sorted({c[i] for c in cube}) for i, d in enumerate(spec.dims)}
        measure_names = tuple((col, f"{spec.name}:{col}") for col, _ in spec.measures)
        for j, (_, mname) in enumerate(measure_names):
            sums = _sum_cube({c: int(v[j] or 0) for c, v in cube.items()}, spec.dims, mname)
            counted.values.update(sums)
        t, rels = additive_table(
            spec.name,
            spec.title,
            spec.definition,
            measure_names[0][1],
            measure_names[0][0],
            spec.dims,
            domains,
            spec.levels or None,
            extra_measures=measure_names[1:],
            source=spec.fact_table,
        )
        counted.tables.append(t)
        counted.relations.extend(rels)
        _fill(counted.values, counted.tables)


# -- the annual release ------------------------------------------------------------------------

ELEMENTS = {
    "TOTCIR": (
        "Total circulation (IMLS Public Libraries Survey TOTCIR): checkouts of physical and "
        "electronic items in the year, renewals included — here, loans whose loan date is in "
        "the year plus the renewals recorded on those loans, per branch of the loan. Check "
        "against the survey's own instructions whether electronic materials belong in your "
        "state's figure."
    ),
    "KIDCIRCL": (
        "Circulation of children's materials (PLS KIDCIRCL): the same count restricted to "
        "items whose collection code or item type is listed as children's materials in "
        "include/config/disclosure.yaml (definitions), whatever the borrower's age."
    ),
    "REGBOR": (
        "Registered users (PLS REGBOR): not derivable from the recorded facts. The warehouse "
        "holds loans, with a pseudonym only for patrons who borrowed; a patron who registered "
        "but never borrowed leaves no fact. Deriving it needs a registration fact per patron "
        "and year (enrolment and expiry date, category, the year's keyed pseudonym) recorded "
        "by the Koha source; then REGBOR = distinct pseudonyms of non-staff patrons whose "
        "card was valid at some time in the three years before the year's end."
    ),
}


def annual_queries(period: Period, kids_ccodes, kids_itypes) -> dict[str, Select]:
    where = _in_period(period)
    conds = []
    if kids_ccodes:
        conds.append(cf.c.collection.in_(list(kids_ccodes)))
    if kids_itypes:
        conds.append(cf.c.item_type.in_(list(kids_itypes)))
    kid = (
        case((conds[0] if len(conds) == 1 else conds[0] | conds[1], 1), else_=0)
        if conds
        else literal(0)
    )
    kid = kid.label("kid")
    by_day = (
        select(
            cf.c.branch,
            cf.c.loan_date,
            kid,
            func.count().label("n"),
            func.coalesce(func.sum(cf.c.renewals), 0).label("renewals"),
        )
        .where(where)
        .group_by(cf.c.branch, cf.c.loan_date, kid)
    )
    linked = and_(where, cf.c.patron_pseudonym.isnot(None))
    by_branch = (
        select(cf.c.branch, func.count(cf.c.patron_pseudonym.distinct()).label("n"))
        .where(linked)
        .group_by(cf.c.branch)
    )
    overall = select(func.count(cf.c.patron_pseudonym.distinct()).label("n")).where(linked)
    return {"by_day": by_day, "borrowers_by_branch": by_branch, "borrowers": overall}


def count_annual(conn: Connection, period: Period, cfg, *, dp=None) -> Counted:
    require_circulation_facts(conn)
    counted = Counted()
    if dp is not None:
        checkouts, circ, kids, by_branch, overall, branches = dp.annual_counts(
            conn, period, cfg, counted
        )
    else:
        qs = annual_queries(period, cfg.children_collections, cfg.children_item_types)
        checkouts: dict[tuple, int] = defaultdict(int)  # (branch, month)
        circ: dict[str, int] = defaultdict(int)  # branch -> checkouts + renewals
        kids: dict[str, int] = defaultdict(int)
        for b, day, kid, n, ren in _run(conn, qs["by_day"], counted):
            b = _label(b)
            day = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
            checkouts[(b, f"{day.year:04d}-{day.month:02d}")] += int(n)
            circ[b] += int(n) + int(ren or 0)
            if kid:
                kids[b] += int(n) + int(ren or 0)
        by_branch = {
            _label(r[0]): int(r[1]) for r in _run(conn, qs["borrowers_by_branch"], counted)
        }
        overall = int(_run(conn, qs["borrowers"], counted)[0][0] or 0)
        branches = sorted({b for b, _ in checkouts})
    counted.facts[FACT_TABLE] = int(sum(checkouts.values())) if dp is None else dp.facts_in_period
    months = period.months()
    values = dict(_sum_cube(dict(checkouts), ("branch", "month"), "checkouts"))
    t1, r1 = additive_table(
        "circulation_by_branch_month",
        "Checkouts by branch and month",
        f"Checkouts (loans) by the month of their loan date in {period.year}, per branch; "
        "renewals are not counted here.",
        "checkouts",
        "checkouts",
        ("branch", "month"),
        {"branch": branches, "month": months},
        chart="trend_month",
    )
    t2 = Table(
        "state_report",
        f"State annual report {period.year}: circulation",
        "Public Libraries Survey elements these facts can answer, per branch and in total; "
        "each element's definition is in the manifest and the report.",
        ("element", "branch"),
        ("value",),
        chart="bar_elements",
    )
    rels = list(r1)
    for element, per_branch in (("TOTCIR", circ), ("KIDCIRCL", kids)):
        parts = []
        for b in branches:
            k = CellKey.of(element, branch=b)
            values[k] = int(per_branch.get(b, 0))
            t2.rows.append(((element, b), {"value": k}))
            parts.append(k)
        total = CellKey.of(element)
        values[total] = int(sum(per_branch.get(b, 0) for b in branches))
        t2.rows.append(((element, TOTAL), {"value": total}))
        rels.append(Relation.total(total, parts))
    for b in [*branches, None]:
        kw = {"branch": b} if b else {}
        rels.append(Relation.at_most(CellKey.of("checkouts", **kw), CellKey.of("TOTCIR", **kw)))
        rels.append(Relation.at_most(CellKey.of("KIDCIRCL", **kw), CellKey.of("TOTCIR", **kw)))
    t3 = borrowers_table(branches, period)
    for b in branches:
        values[CellKey.of("borrowers", branch=b)] = int(by_branch.get(b, 0))
    values[CellKey.of("borrowers")] = overall
    rels += borrower_relations(branches, "checkouts")
    counted.tables = [t2, t1, t3]
    counted.relations = _dedupe(rels)
    _fill(values, counted.tables)
    counted.values = values
    counted.definitions = [
        {"element": e, "definition": d, "available": e != "REGBOR"} for e, d in ELEMENTS.items()
    ]
    return counted
