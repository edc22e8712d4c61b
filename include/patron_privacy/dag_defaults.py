"""What every DAG of the project shares: tags, default arguments, the as-of instant.

Kept free of heavy imports: DAG files import this at parse time, which must
stay fast and touch no database or network.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from enum import StrEnum

LIBRARY_TZ = os.environ.get("PATRON_PRIVACY_TZ", "America/New_York")


class Tag(StrEnum):
    """The tag vocabulary; a test fails any DAG that uses a tag outside it."""

    RETENTION = "retention"
    STATISTICS = "statistics"
    VALIDATION = "validation"
    LEGAL = "legal"
    NIGHTLY = "nightly"
    MONTHLY = "monthly"
    KOHA = "source:koha"
    LIBKI = "source:libki"
    LIBCAL = "source:libcal"
    EVERGREEN = "source:evergreen"
    FILES = "source:files"
    SQUID = "source:squid"


def on_task_failure(context) -> None:
    """One line per failed task: ids and the error's first line, never a record's values."""
    ti = context.get("task_instance")
    exc = context.get("exception")
    first = str(exc).splitlines()[0] if exc else "unknown error"
    logging.getLogger("patron_privacy.alerts").error(
        "task failed: dag=%s task=%s run=%s: %s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "run_id", "?"),
        first,
    )


def retry_delay() -> timedelta:
    """Five minutes between tries: long enough for a restarted database or a lost worker's
    replacement to come back. ``PATRON_PRIVACY_RETRY_DELAY_S`` (read where DAGs are
    parsed) changes it for a deployment, e.g. a test cluster that kills workers."""
    raw = os.environ.get("PATRON_PRIVACY_RETRY_DELAY_S", "").strip()
    if not raw:
        return timedelta(minutes=5)
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"PATRON_PRIVACY_RETRY_DELAY_S must be seconds, got {raw!r}") from None
    if seconds < 0:
        raise ValueError(f"PATRON_PRIVACY_RETRY_DELAY_S must be >= 0, got {raw!r}")
    return timedelta(seconds=seconds)


def default_args(owner: str = "library-systems") -> dict:
    return {
        "owner": owner,
        "retries": 2,
        "retry_delay": retry_delay(),
        "on_failure_callback": on_task_failure,
    }


def run_as_of(context, policy_tz: str):
    """The run's as-of instant in library local time: the ``as_of`` param, else the data
    interval end. Never the wall clock, so a rerun of the same run does the same work."""
    from patron_privacy.timebase import as_of_from_date, as_of_from_instant  # noqa: PLC0415

    override = (context.get("params") or {}).get("as_of")
    if override:
        return as_of_from_date(override, policy_tz)
    end = context.get("data_interval_end") or context.get("logical_date")
    if end is None:
        raise ValueError("this run has no data interval end and no as_of param")
    return as_of_from_instant(end, policy_tz)


def effective_dry_run(context) -> bool:
    """Manual runs follow the trigger form (dry run by default); scheduled runs enforce."""
    dag_run = context.get("dag_run")
    run_type = str(getattr(dag_run, "run_type", "") or "").lower()
    if "scheduled" in run_type:
        return False
    return bool((context.get("params") or {}).get("dry_run", True))
