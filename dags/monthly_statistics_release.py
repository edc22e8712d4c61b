"""
### Monthly statistics release

**What it does.** On the 2nd of every month, publishes the previous month's
anonymized statistics from the warehouse's de-identified facts
(`warehouse_db`): circulation by branch × item type × patron category and
by age band, active borrowers by branch, and — as their facts appear — the
public-computer, Internet and program tables (listed as *not available*
until then). Small counts are suppressed with complements (or noised, in
differential-privacy mode), every suppressed cell is audited by linear
programming, every output is scanned for personal data, and the release
replaces `<exports>/<YYYY-MM>/` in one rename: CSV and Parquet per table,
`manifest.json`, `report.html` with charts, `report.pdf`. *build_release*
builds all of that into a hidden staging folder beside the destination
(`<exports>/.<YYYY-MM>.tmp-…`); *publish_release* scans it and swaps it in,
each in a process of its own, so neither carries the other's libraries. It
reads the nightly
DAGs' facts assets and emits `patron_privacy.statistics_release` (the Assets
view shows the flow from each night to the release).

**What it touches.** Reads `circulation_facts` (and any planned fact table)
in the warehouse; reads patron names from Koha (`koha_db`) into memory for
the PII gate, never storing them; writes only the release folder, and in
differential-privacy mode one `dp_budget_ledger` row. Settings:
`include/config/disclosure.yaml`.

**How it fails.** *check_release_inputs* refuses a malformed or unfinished
period, invalid settings, an exhausted privacy budget or a missing
`circulation_facts` table. *build_release* fails — and leaves no folder —
when the audit finds a suppressed cell that can be recovered or narrowly
bounded. *publish_release* fails and publishes nothing when Koha cannot be
read (the PII gate fails closed; a retry scans the same staged release) or
when the gate finds an email, phone, 14-digit card number or patron name in
any output (an alert is raised, the message gives counts and file names only,
and the staged release is deleted).

**How to rerun safely.** Clear *build_release* (its downstream follows) or
trigger the DAG again; clearing *publish_release* alone works only while its
staged release is still there (it is gone once published or blocked):
a rerun for the same month replaces that month's release whole (a reader
sees the old release or the new one, never a mix). The month comes from the
run's data interval end — the month before it — never from the wall clock;
set `period` (YYYY-MM) to publish another month by hand. Note that facts are
recorded when loans are returned, so a rerun weeks later counts loans that
were still out the first time, and both versions are then public: prefer
one release per month.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from patron_privacy.dag_defaults import LIBRARY_TZ, Tag, default_args
from patron_privacy.nightly_dag import facts_asset

# The nightly DAGs whose de-identified facts a release counts. Their facts assets are
# the publishing task's inlets, so the UI's asset graph shows each night's flow into
# the release, and the release is an asset of its own.
FACT_SOURCES = ("koha", "evergreen", "libki", "signups", "programs", "squid", "libcal")
RELEASE_ASSET = Asset("patron_privacy.statistics_release")


def _period_and_as_of(context) -> tuple[str, str]:
    """The month to publish and the day it is published as of, from the run."""
    from patron_privacy.dag_defaults import run_as_of  # noqa: PLC0415
    from patron_privacy.policy import load_policy  # noqa: PLC0415
    from patron_privacy.release.tables import month_period, previous_month  # noqa: PLC0415

    as_of = run_as_of({**context, "params": {}}, load_policy().timezone).date()
    override = (context.get("params") or {}).get("period")
    period = month_period(override) if override else previous_month(as_of)
    return period.label, as_of.isoformat()


@dag(
    dag_id="monthly_statistics_release",
    schedule="0 6 2 * *",
    start_date=pendulum.datetime(2026, 1, 1, tz=LIBRARY_TZ),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=[Tag.STATISTICS, Tag.MONTHLY, Tag.KOHA],
    doc_md=__doc__,
    params={
        "period": Param(
            None,
            type=["null", "string"],
            pattern="^[0-9]{4}-[0-9]{2}$",
            description="Publish this month (YYYY-MM) instead of the month before the run's "
            "data interval end.",
        ),
    },
)
def monthly_statistics_release():
    @task(task_id="check_release_inputs")
    def check() -> dict:
        from datetime import date  # noqa: PLC0415

        from patron_privacy.release.plan import plan  # noqa: PLC0415

        period, as_of = _period_and_as_of(get_current_context())
        checked = plan("month", period, as_of=date.fromisoformat(as_of))
        cfg = checked.cfg
        return {"period": period, "as_of": as_of, "mode": cfg.mode, "threshold": cfg.threshold}

    @task(task_id="build_release", inlets=[facts_asset(s) for s in FACT_SOURCES])
    def build_release(checked: dict) -> dict:
        from datetime import date  # noqa: PLC0415

        from patron_privacy.release.build import build  # noqa: PLC0415

        staged = build("month", checked["period"], as_of=date.fromisoformat(checked["as_of"]))
        return {"period": checked["period"], "staged": str(staged.path)}

    @task(task_id="publish_release", outlets=[RELEASE_ASSET])
    def publish(staged: dict) -> dict:
        from patron_privacy.release.publish import publish_staged  # noqa: PLC0415

        result = publish_staged(staged["staged"])
        m = result.manifest
        return {
            "period": m["period"],
            "path": str(result.path),
            "empty": m["empty"],
            "audit_passed": m["audit"]["passed"],
            "suppressed_cells": m["suppression"]["suppressed_cells"],
            "rows": m["row_counts"],
            "pii_gate_files": m["pii_gate"]["files_scanned"],
        }

    publish(build_release(check()))


monthly_statistics_release()
