"""
### Monthly board report on law-enforcement requests

**What it does.** On the first of every month, writes the Chief Executive
Officer's report to the Board of Directors on law-enforcement requests for the
*previous* month, as HTML and PDF: each request received in the month or open
at any time in it — date received, agency, kind of demand, the library's
response, its status as of the month's last day — with counts (received,
carried over, closed, open at month end, records released; by kind and by
response). The policy requires this report "at least monthly".

The month comes from the run's data interval (a run on 1 December reports on
November), never from the wall clock, so any month's report can be rebuilt
identically. Trigger manually with `month` (YYYY-MM) for an on-demand report;
the same report is `python -m patron_privacy board-report --month YYYY-MM`.
A manual run with `dry_run` ticked (the default) only counts; untick it to write
the files. Scheduled runs always write them.

**No patron named.** The report reads only the request register, never the
legal holds' patron lists, and leaves out the free-text description of what a
request asks for.

**What it touches.** Reads the warehouse (`warehouse_db`); writes
`.local/exports/board_reports/law-enforcement-requests-YYYY-MM.html` and `.pdf`
(replacing that month's earlier files).

**How it fails.** An unreadable warehouse or an invalid `month` fails the task
with one line. **How to rerun safely.** Rerun or clear at will: the output for
a month is rebuilt from the register and replaces the earlier files.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from patron_privacy.dag_defaults import LIBRARY_TZ, Tag, default_args


@dag(
    dag_id="law_enforcement_board_report",
    schedule="0 7 1 * *",
    start_date=pendulum.datetime(2026, 1, 1, tz=LIBRARY_TZ),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(owner="ceo-office"),
    tags=[Tag.LEGAL, Tag.MONTHLY],
    doc_md=__doc__,
    params={
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Manual runs only: count what the report would list and write no "
            "file. Scheduled runs always write the report.",
        ),
        "month": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
            title="Month",
            description="YYYY-MM to report on; empty = the month before the run's data "
            "interval end.",
        ),
    },
)
def law_enforcement_board_report():
    @task(task_id="write_board_report")
    def write_board_report() -> dict:
        from patron_privacy import board_report  # noqa: PLC0415 - not at parse time
        from patron_privacy.dag_defaults import effective_dry_run  # noqa: PLC0415
        from patron_privacy.policy import load_policy  # noqa: PLC0415

        context = get_current_context()
        month = context["params"].get("month")
        if not month:
            instant = (
                context.get("data_interval_end")
                or context.get("logical_date")
                or context["dag_run"].run_after
            )
            month = board_report.previous_month(instant, load_policy().timezone)
        if effective_dry_run(context):
            counts = board_report.gather(month).counts
            print(f"dry run: the report for {month} would list {counts['listed']} request(s)")
            return {"month": month, "dry_run": True, **counts}
        out = board_report.write_report(month)
        print(
            f"board report {month}: {out['listed']} request(s), {out['open_at_end']} open at "
            "month end"
        )
        return out

    write_board_report()


law_enforcement_board_report()
