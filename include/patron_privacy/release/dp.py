"""Differentially private counts (OpenDP) and the yearly budget ledger.

In this mode nothing is suppressed: every count of the release is published
with noise from OpenDP's discrete Laplace mechanism, calibrated so that the
whole release is ε-differentially private with respect to one patron:

* each patron's contribution is capped at ``max_loans_per_patron`` loans per
  release (the capping runs in SQL: a window function keeps a patron's first
  loans by fact key); a loan with no pseudonym counts as its own person;
* the finest counts (branch × item type × patron category × age band, over
  every code the warehouse has ever seen, so the domain itself reveals
  nothing about the period) get noise with L1 sensitivity = the cap; every
  margin is the sum of noised cells (post-processing, so tables agree);
* distinct borrowers per branch and in total get their own share of ε.

ε is split 70 % for loans and 30 % for borrowers. OpenDP's privacy map gives
the ε actually spent; it is written to ``dp_budget_ledger`` when the release
is published, and a release that would take the year past its budget is
refused before anything is counted.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from sqlalchemy import Connection, Engine, and_, case, func, inspect, literal, or_, select

from patron_privacy.release.tables import CIRC_DIMS, Counted, Period, ReleaseInputError, _label
from patron_privacy.warehouse import circulation_facts as cf
from patron_privacy.warehouse import dp_budget_ledger

LOAN_SHARE = 0.7
MAX_RENEWALS_PER_LOAN = 5
MECHANISM = "OpenDP 0.16 discrete Laplace (then_laplace on integer vectors, L1 distance)"


def spent(engine: Engine, year: int) -> float:
    """The epsilon already spent in ``year``.

    The ledger is part of the warehouse's migrated schema; a warehouse without it is
    refused rather than given a table behind its migrations' back.
    """
    if not inspect(engine).has_table(dp_budget_ledger.name):
        raise ReleaseInputError(
            f"no table {dp_budget_ledger.name} in the warehouse: its schema is older than "
            "this release (run python -m patron_privacy warehouse upgrade)"
        )
    with engine.connect() as c:
        total = c.execute(
            select(func.coalesce(func.sum(dp_budget_ledger.c.epsilon), 0.0)).where(
                dp_budget_ledger.c.reporting_year == str(year)
            )
        ).scalar()
    return float(total or 0.0)


def check_budget(engine: Engine, year: int, epsilon: float, budget: float) -> float:
    before = spent(engine, year)
    if before + epsilon > budget + 1e-9:
        raise ReleaseInputError(
            f"differential privacy budget for {year} would be exceeded: spent {before:g} of "
            f"{budget:g}, this release needs {epsilon:g}"
        )
    return before


def record_spend(engine: Engine, year: int, period: str, epsilon: float, at: datetime) -> None:
    with engine.begin() as c:
        c.execute(
            dp_budget_ledger.insert().values(
                reporting_year=str(year),
                release_period=period,
                epsilon=epsilon,
                mechanism=MECHANISM,
                recorded_at=at,
            )
        )


def _noisy(values: list[int], sensitivity: int, epsilon: float) -> tuple[list[int], float]:
    import opendp.prelude as dp  # noqa: PLC0415 - heavy, only in this mode

    dp.enable_features("contrib")
    if not values:
        return [], 0.0
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    scale = sensitivity / epsilon * (1 + 1e-9)
    meas = space >> dp.m.then_laplace(scale=scale)
    eps = float(meas.map(sensitivity))
    if eps > epsilon + 1e-9:  # pragma: no cover - guarded by the scale above
        raise RuntimeError("OpenDP reports more epsilon than configured")
    return [max(0, int(v)) for v in meas([int(v) for v in values])], round(eps, 6)


class DpCounter:
    """Counts for one release, capped and noised; records the ε each part spends."""

    def __init__(self, epsilon: float, cap: int):
        self.epsilon = epsilon
        self.cap = cap
        self.facts_in_period = 0
        self.parts: list[dict] = []

    @property
    def epsilon_spent(self) -> float:
        return round(sum(p["epsilon"] for p in self.parts), 6)

    def _capped(self, period: Period, *extra):
        rn = (
            func.row_number()
            .over(partition_by=cf.c.patron_pseudonym, order_by=cf.c.fact_key)
            .label("rn")
        )
        inner = (
            select(
                *(cf.c[c] for c in ("branch", "patron_pseudonym", *extra)),
                *(cf.c[d] for d in CIRC_DIMS if d not in ("branch", *extra)),
                rn,
            )
            .where(and_(cf.c.loan_date >= period.start, cf.c.loan_date < period.end))
            .subquery()
        )
        return inner, or_(inner.c.patron_pseudonym.is_(None), inner.c.rn <= self.cap)

    def _domain(self, conn: Connection, col) -> list[str]:
        return sorted({_label(v) for (v,) in conn.execute(select(col).distinct())})

    def _borrowers(self, conn, inner, keep, branches, counted: Counted):
        linked = and_(keep, inner.c.patron_pseudonym.isnot(None))
        per = {
            _label(b): int(n)
            for b, n in conn.execute(
                select(inner.c.branch, func.count(inner.c.patron_pseudonym.distinct()))
                .where(linked)
                .group_by(inner.c.branch)
            )
        }
        overall = int(
            conn.execute(
                select(func.count(inner.c.patron_pseudonym.distinct())).where(linked)
            ).scalar()
            or 0
        )
        vec = [per.get(b, 0) for b in branches] + [overall]
        sens = min(self.cap, len(branches)) + 1
        noisy, eps = _noisy(vec, sens, self.epsilon * (1 - LOAN_SHARE))
        self.parts.append({"counts": "distinct borrowers", "sensitivity": sens, "epsilon": eps})
        return dict(zip(branches, noisy[:-1], strict=True)), noisy[-1]

    def monthly_counts(self, conn: Connection, period: Period, counted: Counted):
        inner, keep = self._capped(period)
        domains = {d: self._domain(conn, cf.c[d]) for d in CIRC_DIMS}
        true: dict[tuple, int] = defaultdict(int)
        q = (
            select(*(inner.c[d] for d in CIRC_DIMS), func.count())
            .where(keep)
            .group_by(*(inner.c[d] for d in CIRC_DIMS))
        )
        for *combo, n in conn.execute(q):
            true[tuple(_label(v) for v in combo)] += int(n)
        self.facts_in_period = int(
            conn.execute(
                select(func.count()).where(
                    and_(cf.c.loan_date >= period.start, cf.c.loan_date < period.end)
                )
            ).scalar()
            or 0
        )
        import itertools  # noqa: PLC0415

        keys = list(itertools.product(*(domains[d] for d in CIRC_DIMS)))
        noisy, eps = _noisy([true.get(k, 0) for k in keys], self.cap, self.epsilon * LOAN_SHARE)
        self.parts.append(
            {"counts": "loans (finest cells)", "sensitivity": self.cap, "epsilon": eps}
        )
        cube = dict(zip(keys, noisy, strict=True))
        by_branch, overall = self._borrowers(conn, inner, keep, domains["branch"], counted)
        return cube, by_branch, overall, domains

    def annual_counts(self, conn: Connection, period: Period, cfg, counted: Counted):
        inner, keep = self._capped(period, "loan_date", "collection", "item_type", "renewals")
        branches = self._domain(conn, cf.c.branch)
        months = period.months()
        conds = []
        if cfg.children_collections:
            conds.append(inner.c.collection.in_(list(cfg.children_collections)))
        if cfg.children_item_types:
            conds.append(inner.c.item_type.in_(list(cfg.children_item_types)))
        kid = case((or_(*conds), 1), else_=0) if conds else literal(0)
        ren = func.least if conn.dialect.name == "postgresql" else func.min
        q = (
            select(
                inner.c.branch,
                inner.c.loan_date,
                kid.label("kid"),
                func.count(),
                func.coalesce(func.sum(ren(inner.c.renewals, MAX_RENEWALS_PER_LOAN)), 0),
            )
            .where(keep)
            .group_by(inner.c.branch, inner.c.loan_date, kid)
        )
        co: dict[tuple, int] = defaultdict(int)
        ren_b: dict[tuple, int] = defaultdict(int)
        for b, day, k, n, r in conn.execute(q):
            day = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
            b = _label(b)
            co[(b, f"{day.year:04d}-{day.month:02d}", int(k))] += int(n)
            ren_b[(b, int(k))] += int(r or 0)
        self.facts_in_period = int(sum(co.values()))
        keys = [(b, m, k) for b in branches for m in months for k in (0, 1)]
        share = self.epsilon * LOAN_SHARE / 2
        n_co, e1 = _noisy([co.get(k, 0) for k in keys], self.cap, share)
        rkeys = [(b, k) for b in branches for k in (0, 1)]
        n_re, e2 = _noisy([ren_b.get(k, 0) for k in rkeys], self.cap * MAX_RENEWALS_PER_LOAN, share)
        self.parts.append(
            {
                "counts": "checkouts (branch, month, children's)",
                "sensitivity": self.cap,
                "epsilon": e1,
            }
        )
        self.parts.append(
            {
                "counts": "renewals (branch, children's)",
                "sensitivity": self.cap * MAX_RENEWALS_PER_LOAN,
                "epsilon": e2,
            }
        )
        checkouts: dict[tuple, int] = defaultdict(int)
        circ: dict[str, int] = defaultdict(int)
        kids: dict[str, int] = defaultdict(int)
        for (b, m, k), v in zip(keys, n_co, strict=True):
            checkouts[(b, m)] += v
            circ[b] += v
            if k:
                kids[b] += v
        for (b, k), v in zip(rkeys, n_re, strict=True):
            circ[b] += v
            if k:
                kids[b] += v
        by_branch, overall = self._borrowers(conn, inner, keep, branches, counted)
        return checkouts, circ, kids, by_branch, overall, branches
