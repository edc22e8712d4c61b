"""
### Koha nightly retention

**What it does.** Every night, for the library's Koha ILS (connection
`koha_db`): records de-identified circulation facts in the warehouse
(`warehouse_db`), then applies the retention policy
(`include/config/retention_policy.yaml`) — anonymizes returned loans and
closed holds, unlinks settled fines and statistics, deletes OPAC searches,
old notices and patron action logs, anonymizes long-expired patrons — then
verifies that nothing past its window still identifies a patron, and writes
one audit row (counts only) per category.

**What it touches.** Koha's `old_issues`, `old_reserves`, `accountlines`,
`statistics`, `search_history`, `message_queue`, `action_logs`, `borrowers`
(updates and deletes, in bounded batches, one transaction each); the
warehouse's `circulation_facts`, `retention_audit`, `fact_watermarks`.
Records inside their window, under legal hold, or kept by a blocker (a fine
owed, a patron who chose to keep history, ...) are never changed.

**How it fails.** *enforce* stops before any change if the policy is
invalid, a table or column is missing, or the anonymous patron (Koha's
`AnonymousPatron`) is unset or missing. *verify* fails when any category
still has records past their window that identify a patron and are not
blocked; the message names the categories. *audit* always runs and records
what happened.

**How to rerun safely.** Every step is idempotent: clear the failed task (or
trigger the DAG again). Batches already applied stay applied; the rest are
done. Manual runs default to **dry run** (counts per category and blocker,
nothing changed); untick `dry_run` to enforce. Set `as_of` (YYYY-MM-DD) to
rerun as of a given day; otherwise the run's data interval end is used.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from patron_privacy.dag_defaults import LIBRARY_TZ, Tag, default_args

SOURCE = "koha"


@dag(
    dag_id="koha_nightly_retention",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz=LIBRARY_TZ),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=[Tag.RETENTION, Tag.NIGHTLY, Tag.KOHA],
    doc_md=__doc__,
    params={
        "dry_run": Param(
            True,
            type="boolean",
            description="Report what would change and change nothing (manual runs only; "
            "scheduled runs always enforce).",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Run as of this day (YYYY-MM-DD, midnight library time); "
            "empty = the run's data interval end.",
        ),
    },
)
def koha_nightly_retention():
    def _run():
        from patron_privacy import pipeline  # noqa: PLC0415 - not at parse time
        from patron_privacy.dag_defaults import run_as_of  # noqa: PLC0415
        from patron_privacy.policy import load_policy  # noqa: PLC0415

        context = get_current_context()
        policy = load_policy()
        return pipeline.open_run(SOURCE, run_as_of(context, policy.timezone), policy), context

    @task(task_id="record_de_identified_facts")
    def record_facts() -> dict:
        from patron_privacy import pipeline  # noqa: PLC0415
        from patron_privacy.dag_defaults import effective_dry_run  # noqa: PLC0415

        run, context = _run()
        if effective_dry_run(context):
            return {"facts_recorded": 0, "dry_run": True}
        return pipeline.extract_facts(run)

    @task(task_id="enforce_retention_policy")
    def enforce(facts: dict) -> list[dict]:
        from patron_privacy import pipeline  # noqa: PLC0415
        from patron_privacy.dag_defaults import effective_dry_run  # noqa: PLC0415

        run, context = _run()
        return pipeline.enforce(run, dry_run=effective_dry_run(context))

    @task(task_id="verify_nothing_past_its_window_identifies")
    def verify(enforced: list[dict]) -> list[dict]:
        from patron_privacy import pipeline  # noqa: PLC0415
        from patron_privacy.dag_defaults import effective_dry_run  # noqa: PLC0415

        run, context = _run()
        results = pipeline.verify(run)
        # Pushed before failing, so the audit records a failed verification too.
        context["ti"].xcom_push(key="verification", value=results)
        failed = pipeline.failed_categories(results)
        if failed and not effective_dry_run(context):
            raise pipeline.VerificationFailed("still identifying past window: " + ", ".join(failed))
        return results

    @task(task_id="write_audit_rows", trigger_rule="all_done")
    def audit() -> int:
        from patron_privacy import pipeline  # noqa: PLC0415

        run, context = _run()
        ti = context["ti"]
        enforced = ti.xcom_pull(task_ids="enforce_retention_policy") or []
        verified = (
            ti.xcom_pull(task_ids="verify_nothing_past_its_window_identifies", key="verification")
            or []
        )
        return pipeline.record_audit(run, [*enforced, *verified], context["run_id"])

    enforced = enforce(record_facts())
    verify(enforced) >> audit()


koha_nightly_retention()
