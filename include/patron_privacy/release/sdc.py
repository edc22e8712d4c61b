"""Statistical disclosure control: cell suppression and the audit that proves it.

A release is a set of cells (a count, named by its measure and coordinates)
tied together by linear relations: a total equals the sum of its parts
(``eq``), a distinct count is at most the sum of its parts and at least each
part, a count of borrowers is at most the count of their loans (``le``).
The same cell published in two tables is one cell, so a margin shown in one
table and its parts shown in another are tied as well.

* Primary suppression hides every count from 1 to ``threshold - 1``; zero is
  shown (a zero is hidden only as a complement, when nothing else can be).
* Complementary suppression hides more cells until no suppressed cell can be
  recovered or narrowly bounded from what is shown.
* The audit knows only what a reader knows — the published values, the
  relations, and that every count is at least 0 — and solves, for every
  suppressed cell, the smallest and largest value it can take (linear
  programming, SciPy's HiGHS). The release passes only if each interval
  covers the whole suppressed range ``[1, threshold - 1]`` — the reader cannot
  tell which small value, if any, the cell holds — or lies wholly at or above
  ``threshold`` (then the cell cannot be one of the small counts: it is a
  complement, and what the reader learns about it is already inside every
  other cell's interval, which is computed from the same constraints).
  Intervals are those of the linear relaxation (counts as real numbers).

The audit never sees the true values of suppressed cells nor which of them
are primary: it is the reader's view, and the property tests run it on
everything the suppressor produces.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

TOTAL = "Total"
EPS = 1e-6
UNBOUNDED_CAP = 1e9


@dataclass(frozen=True, order=True)
class CellKey:
    """A count: its measure and the coordinates it is restricted to (absent = all)."""

    measure: str
    coords: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, measure: str, **coords) -> CellKey:
        return cls(
            measure,
            tuple(sorted((k, str(v)) for k, v in coords.items() if v is not None and v != TOTAL)),
        )

    @property
    def level(self) -> int:
        return len(self.coords)

    def get(self, dim: str, default: str = TOTAL) -> str:
        return dict(self.coords).get(dim, default)

    def with_(self, dim: str, value: str) -> CellKey:
        d = dict(self.coords)
        d[dim] = str(value)
        return CellKey(self.measure, tuple(sorted(d.items())))

    def label(self) -> dict:
        return {"measure": self.measure, **dict(self.coords)}

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.coords) or "all"
        return f"{self.measure}[{inner}]"


@dataclass(frozen=True)
class Relation:
    """``sum(coef * cell) == 0`` (sense ``eq``) or ``<= 0`` (sense ``le``)."""

    terms: tuple[tuple[CellKey, int], ...]
    sense: str = "eq"

    @classmethod
    def total(cls, parent: CellKey, parts: Iterable[CellKey]) -> Relation:
        return cls(((parent, -1), *((p, 1) for p in parts)), "eq")

    @classmethod
    def at_most(cls, small: CellKey, big: CellKey) -> Relation:
        return cls(((small, 1), (big, -1)), "le")

    @classmethod
    def at_most_sum(cls, whole: CellKey, parts: Iterable[CellKey]) -> Relation:
        return cls(((whole, 1), *((p, -1) for p in parts)), "le")

    @property
    def cells(self) -> list[CellKey]:
        return [k for k, _ in self.terms]

    def holds(self, values: Mapping[CellKey, int]) -> bool:
        s = sum(c * values[k] for k, c in self.terms)
        return s == 0 if self.sense == "eq" else s <= 0


@dataclass(frozen=True)
class CellAudit:
    cell: CellKey
    low: float
    high: float  # math.inf when nothing published bounds it from above
    covers: bool

    def as_dict(self) -> dict:
        return {
            "cell": self.cell.label(),
            "min": _num(self.low),
            "max": None if math.isinf(self.high) else _num(self.high),
            "passes": self.covers,
            "why": (
                "too narrow: the published figures pin it down"
                if not self.covers
                else "covers the whole suppressed range"
                if self.low <= 1 + EPS
                else "its minimum is at the threshold or above: it cannot be a small count"
            ),
        }


def _num(x: float):
    r = round(x)
    return int(r) if abs(x - r) < 1e-6 else round(x, 6)


@dataclass
class AuditResult:
    passed: bool
    required: tuple[int, int]
    cells: list[CellAudit] = field(default_factory=list)
    relations_checked: int = 0
    linear_programs: int = 0
    components: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failing(self) -> list[CellAudit]:
        return [c for c in self.cells if not c.covers]

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "method": "linear programming: min and max of every suppressed cell subject to "
            "every published value and relation of the release (scipy.optimize.linprog, HiGHS)",
            "reader_knows": "published values; totals, margins and the same cell across tables; "
            "every count is >= 0; distinct borrowers <= loans, <= the sum over branches and "
            ">= each branch",
            "required_interval": list(self.required),
            "pass_rule": "every suppressed cell's interval covers the required interval, or "
            "its minimum is at least the threshold (it cannot be a small count)",
            "suppressed_cells": len(self.cells),
            "failing_cells": len(self.failing),
            "relations_checked": self.relations_checked,
            "linear_programs": self.linear_programs,
            "independent_groups": self.components,
            "problems": self.problems,
            "cells": [c.as_dict() for c in self.cells],
        }


class _Index:
    def __init__(self, relations: list[Relation]):
        self.relations = relations
        self.by_cell: dict[CellKey, list[int]] = defaultdict(list)
        for i, r in enumerate(relations):
            for k in r.cells:
                self.by_cell[k].append(i)


def _components(suppressed: set[CellKey], index: _Index) -> list[tuple[list[CellKey], list[int]]]:
    """Groups of suppressed cells linked through relations, with the relations they share."""
    parent: dict[CellKey, CellKey] = {k: k for k in suppressed}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    touching: set[int] = set()
    for k in suppressed:
        touching.update(index.by_cell.get(k, ()))
    for ri in touching:
        members = [k for k in index.relations[ri].cells if k in suppressed]
        for other in members[1:]:
            a, b = find(members[0]), find(other)
            if a != b:
                parent[a] = b
    groups: dict[CellKey, list[CellKey]] = defaultdict(list)
    for k in suppressed:
        groups[find(k)].append(k)
    rels: dict[CellKey, list[int]] = defaultdict(list)
    for ri in touching:
        first = next(k for k in index.relations[ri].cells if k in suppressed)
        rels[find(first)].append(ri)
    return [(sorted(cells), sorted(rels[root])) for root, cells in groups.items()]


def _bound_component(
    cells: list[CellKey],
    rel_ids: list[int],
    index: _Index,
    shown: Mapping[CellKey, int | None],
    quick_threshold: int | None = None,
) -> tuple[list[tuple[float, float]], int, str | None]:
    """Min and max of each cell. With ``quick_threshold``, only as exact as pass/fail needs:
    every LP solution is a feasible table, so a cell already seen at <= 1 and at
    >= threshold - 1 covers the range without solving its own programs."""
    # SciPy only here: the cell and relation types above are the vocabulary of every
    # release module, including the checks and the PII gate that never solve anything.
    from scipy.optimize import linprog  # noqa: PLC0415
    from scipy.sparse import csr_matrix  # noqa: PLC0415

    col = {k: j for j, k in enumerate(cells)}
    eq_rows, eq_rhs, ub_rows, ub_rhs = [], [], [], []
    for ri in rel_ids:
        r = index.relations[ri]
        row: dict[int, float] = defaultdict(float)
        const = 0.0
        for k, c in r.terms:
            if k in col:
                row[col[k]] += c
            else:
                const += c * shown[k]
        (eq_rows if r.sense == "eq" else ub_rows).append(row)
        (eq_rhs if r.sense == "eq" else ub_rhs).append(-const)

    def matrix(rows):
        if not rows:
            return None
        data, ri_, ci_ = [], [], []
        for i, row in enumerate(rows):
            for j, v in row.items():
                if v:
                    data.append(v)
                    ri_.append(i)
                    ci_.append(j)
        return csr_matrix((data, (ri_, ci_)), shape=(len(rows), len(cells)))

    a_eq, a_ub = matrix(eq_rows), matrix(ub_rows)
    b_eq = np.array(eq_rhs) if eq_rows else None
    b_ub = np.array(ub_rhs) if ub_rows else None
    # A finite cap stands for "no upper bound": HiGHS's presolve can report an unbounded
    # maximum as infeasible, so the maximum is taken under the cap and read back as infinite.
    bounds = [(0, UNBOUNDED_CAP)] * len(cells)
    out: list[tuple[float, float]] = []
    solved = 0
    n = len(cells)
    seen_lo = np.full(n, np.inf)
    seen_hi = np.full(n, -np.inf)

    def solve(j: int, sign: float):
        nonlocal solved
        c = np.zeros(n)
        c[j] = sign
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        solved += 1
        if res.status != 0:
            raise _Inconsistent(res.message)
        np.minimum(seen_lo, res.x, out=seen_lo)
        np.maximum(seen_hi, res.x, out=seen_hi)
        value = sign * res.fun
        return math.inf if value >= UNBOUNDED_CAP - 1 else value

    try:
        if n > 2:
            # Two programs that touch every cell at once: the smallest and the largest
            # total. Their solutions put many cells at 0 (so their minimum is exactly 0)
            # or at the cap (so their maximum is unbounded) without programs of their own.
            for sign in (1.0, -1.0):
                res = linprog(
                    np.full(n, sign),
                    A_ub=a_ub,
                    b_ub=b_ub,
                    A_eq=a_eq,
                    b_eq=b_eq,
                    bounds=bounds,
                    method="highs",
                )
                solved += 1
                if res.status != 0:
                    raise _Inconsistent(res.message)
                np.minimum(seen_lo, res.x, out=seen_lo)
                np.maximum(seen_hi, res.x, out=seen_hi)
        for j in range(n):
            if quick_threshold is None:
                lo = 0.0 if seen_lo[j] <= EPS else solve(j, 1.0)
                hi = math.inf if seen_hi[j] >= UNBOUNDED_CAP - 1 else solve(j, -1.0)
                out.append((lo, hi))
                continue
            top = quick_threshold - 1
            if seen_lo[j] <= 1 + EPS and seen_hi[j] >= top - EPS:
                out.append((float(seen_lo[j]), _inf(seen_hi[j])))
                continue
            lo = solve(j, 1.0)
            if lo >= quick_threshold - EPS or lo > 1 + EPS or seen_hi[j] >= top - EPS:
                out.append((lo, _inf(seen_hi[j])))
                continue
            out.append((lo, solve(j, -1.0)))
    except _Inconsistent as exc:
        return out, solved, f"the published values are inconsistent ({exc})"
    return out, solved, None


class _Inconsistent(Exception):
    pass


def _inf(x: float) -> float:
    return math.inf if x >= UNBOUNDED_CAP - 1 else float(x)


def audit(
    shown: Mapping[CellKey, int | None],
    relations: list[Relation],
    threshold: int,
    *,
    exact: bool = True,
    _cache: dict | None = None,
) -> AuditResult:
    """The reader's view: ``shown`` maps each published cell to its value (None: suppressed)."""
    t0 = time.perf_counter()
    required = (1, threshold - 1)
    index = _Index(relations)
    result = AuditResult(passed=True, required=required, relations_checked=len(relations))
    missing = {k for r in relations for k in r.cells if k not in shown}
    if missing:
        result.passed = False
        result.problems.append(f"{len(missing)} cells named by relations are not in the release")
        return result
    suppressed = {k for k, v in shown.items() if v is None}
    for r in relations:
        if not any(k in suppressed for k in r.cells) and not r.holds(shown):
            result.passed = False
            result.problems.append("a relation between published values does not hold")
    for k, v in shown.items():
        if v is not None and 1 <= v < threshold:
            result.passed = False
            result.problems.append(f"a count below the threshold is shown: {k}")
    comps = _components(suppressed, index)
    result.components = len(comps)
    for cells, rel_ids in comps:
        sig = (frozenset(cells), exact)
        if _cache is not None and sig in _cache:
            bounds, err = _cache[sig]
        else:
            bounds, solved, err = _bound_component(
                cells, rel_ids, index, shown, None if exact else threshold
            )
            result.linear_programs += solved
            if _cache is not None:
                _cache[sig] = (bounds, err)
        if err:
            result.passed = False
            result.problems.append(err)
            continue
        for k, (lo, hi) in zip(cells, bounds, strict=True):
            covers = (lo <= required[0] + EPS and hi >= required[1] - EPS) or lo >= threshold - EPS
            result.cells.append(CellAudit(k, lo, hi, covers))
            if not covers:
                result.passed = False
    result.cells.sort(key=lambda c: c.cell)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


@dataclass
class Protection:
    suppressed: set[CellKey]
    primary: set[CellKey]
    audit: AuditResult
    rounds: int

    def shown(self, values: Mapping[CellKey, int]) -> dict[CellKey, int | None]:
        return {k: (None if k in self.suppressed else v) for k, v in values.items()}


def _pick(
    cands: Iterable[CellKey],
    values: Mapping[CellKey, int],
    index: _Index | None = None,
    suppressed: set[CellKey] | None = None,
) -> CellKey | None:
    """The complement that hides least: a non-zero count, the most detailed cell (a total
    is worth more to readers than its parts), one that also closes another exposed total
    (so suppressed cells form cycles rather than chains), then the smallest count."""
    best = None
    for k in cands:
        closes = 0
        if index is not None and suppressed is not None:
            for ri in index.by_cell.get(k, ()):
                r = index.relations[ri]
                if r.sense == "eq" and sum(1 for m in r.cells if m in suppressed) == 1:
                    closes += 1
        key = (values[k] == 0, -k.level, -closes, values[k], k)
        if best is None or key < best[0]:
            best = (key, k)
    return None if best is None else best[1]


def _close_equalities(
    values: Mapping[CellKey, int], index: _Index, suppressed: set[CellKey]
) -> None:
    """Until no total has exactly one suppressed member (recoverable by subtraction).

    Greedy over every exposed total at once, choosing as :func:`_pick` does: non-zero,
    most detailed, closing the most exposed totals, smallest.
    """
    rels = index.relations
    hidden = [sum(1 for m in r.cells if m in suppressed) if r.sense == "eq" else 0 for r in rels]
    exposed = {i for i, r in enumerate(rels) if r.sense == "eq" and hidden[i] == 1}
    stuck: set[int] = set()
    while exposed - stuck:
        best = None
        for ri in exposed - stuck:
            found = False
            for m in rels[ri].cells:
                if m in suppressed:
                    continue
                found = True
                closes = sum(1 for rj in index.by_cell[m] if rj in exposed)
                key = (values[m] == 0, -m.level, -closes, values[m], m)
                if best is None or key < best[0]:
                    best = (key, m)
            if not found:
                stuck.add(ri)
        if best is None:
            return
        k = best[1]
        suppressed.add(k)
        for rj in index.by_cell[k]:
            if rels[rj].sense != "eq":
                continue
            hidden[rj] += 1
            if hidden[rj] == 1:
                exposed.add(rj)
            else:
                exposed.discard(rj)


def protect(values: Mapping[CellKey, int], relations: list[Relation], threshold: int) -> Protection:
    """Primary suppression, then complements until the audit passes (or nothing is left to hide)."""
    for r in relations:
        for k in r.cells:
            if k not in values:
                raise KeyError(f"relation names a cell that is not in the release: {k}")
    primary = {k for k, v in values.items() if 1 <= v < threshold}
    suppressed = set(primary)
    index = _Index(relations)
    cache: dict = {}
    rounds = 0
    while True:
        rounds += 1
        _close_equalities(values, index, suppressed)
        shown = {k: (None if k in suppressed else v) for k, v in values.items()}
        # Rounds only need pass/fail; the release keeps the exact intervals.
        result = audit(shown, relations, threshold, exact=False, _cache=cache)
        if result.passed or result.problems:
            final = audit(shown, relations, threshold, _cache=cache)
            return Protection(suppressed, primary, final, rounds)
        added = False
        for bad in result.failing:
            near = {m for ri in index.by_cell[bad.cell] for m in index.relations[ri].cells}
            k = _pick(
                (m for m in near if m not in suppressed),
                values,
                index,
                suppressed,
            )
            if k is None:
                # Nothing beside it to hide: widen through the whole linked group.
                group = next(c for c, _ in _components(suppressed, index) if bad.cell in c)
                wide = {
                    m for g in group for ri in index.by_cell[g] for m in index.relations[ri].cells
                }
                k = _pick((m for m in wide if m not in suppressed), values)
            if k is not None and k not in suppressed:
                suppressed.add(k)
                added = True
        if not added:
            final = audit(shown, relations, threshold, _cache=cache)
            return Protection(suppressed, primary, final, rounds)
