"""A release's checked input: the period, the settings, the budget, the fact table.

Every way into a release checks its input here first, before anything is
counted or any name is read: the command line's ``publish``, ``build``, and the
monthly DAG's first task, which is therefore cheap (no pandas, no counting) and
fails with the same message a person at the command line would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from patron_privacy import connections
from patron_privacy.release import config as rconfig
from patron_privacy.release import tables
from patron_privacy.release.tables import Period, ReleaseInputError


@dataclass(frozen=True)
class Plan:
    """A release whose input has been checked: what to count, with which settings."""

    kind: str
    period: Period
    cfg: rconfig.DisclosureConfig
    policy: object
    as_of: date
    budget_before: float | None
    generated_at: datetime | None


def plan(
    kind: str,
    when: str,
    *,
    as_of: date | None = None,
    config_path: str | Path | None = None,
    preset: str | None = None,
    threshold=None,
    epsilon=None,
    dp: bool | None = None,
    base_dir: str | Path | None = None,
    policy_path: str | Path | None = None,
    generated_at: datetime | None = None,
) -> Plan:
    """Refuse bad input before anything is counted (:class:`ReleaseInputError`,
    ``DisclosureConfigError``): the period, the settings, the budget, the fact table."""
    from patron_privacy.policy import load_policy  # noqa: PLC0415

    cfg = rconfig.with_overrides(
        rconfig.load_config(config_path),
        preset=preset,
        threshold=threshold,
        epsilon=epsilon,
        dp=dp,
        base_dir=base_dir,
    )
    if kind == "month":
        period = tables.month_period(when)
    elif kind == "year":
        period = tables.year_period(when)
    else:
        raise ReleaseInputError(f"unknown release kind {kind!r} (expected month or year)")
    as_of = as_of or date.today()
    if period.end > as_of:
        raise ReleaseInputError(
            f"period {period.label} is not complete as of {as_of.isoformat()}: a release is "
            f"made once the period has ended (from {period.end.isoformat()})"
        )
    policy = load_policy(policy_path)
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    try:
        with warehouse.connect() as conn:
            tables.require_circulation_facts(conn)
        budget_before = None
        if cfg.dp_enabled:
            from patron_privacy.release import dp as dpmod  # noqa: PLC0415

            budget_before = dpmod.check_budget(
                warehouse, period.year, cfg.epsilon, cfg.annual_budget
            )
    finally:
        warehouse.dispose()
    return Plan(kind, period, cfg, policy, as_of, budget_before, generated_at)
