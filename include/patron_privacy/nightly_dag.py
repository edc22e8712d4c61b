"""The nightly retention DAG, built the same way for every database source.

Each source's DAG file holds its own runbook (its docstring) and calls
:func:`nightly_retention_dag`; the tasks are the same steps as the CLI's
(``pipeline``), so a source adds a connector, never a second DAG shape:

    validate → record facts → enforce → verify → audit (always)

Validation failing stops that source's run before anything changes (fail
closed); the audit step always runs and records what happened, also when
the source could not be opened. Only names and counts cross task
boundaries (XCom).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from patron_privacy.dag_defaults import LIBRARY_TZ, Tag, default_args, on_task_failure

VALIDATE = "validate_source_data"
FACTS = "record_de_identified_facts"
ENFORCE = "enforce_retention_policy"
VERIFY = "verify_nothing_past_its_window_identifies"
AUDIT = "write_audit_rows"
INVENTORY = "check_every_personal_table_is_classified"
FAIL_RUN = "fail_the_run_if_a_check_failed"


def facts_asset(source: str) -> Asset:
    """De-identified facts from a source: the statistics release is scheduled on these."""
    return Asset(f"patron_privacy.facts.{source}")


def audit_asset(source: str) -> Asset:
    return Asset(f"patron_privacy.retention_audit.{source}")


def _alert(source: str):
    """The failure callback that mails the alert; the SMTP notifier is built at failure
    time, not when the DAG file is parsed."""

    def callback(context) -> None:
        from patron_privacy.alerts import failure_notifier  # noqa: PLC0415

        failure_notifier(source)(context)

    return callback


def _open(source: str):
    from patron_privacy import pipeline  # noqa: PLC0415 - not at parse time
    from patron_privacy.dag_defaults import run_as_of  # noqa: PLC0415
    from patron_privacy.policy import load_policy  # noqa: PLC0415

    context = get_current_context()
    policy = load_policy()
    as_of = run_as_of(context, policy.timezone)
    return pipeline.open_run(source, as_of, policy), context


def nightly_retention_dag(source: str, *, doc_md: str, tag: Tag, schedule: str = "30 2 * * *"):
    """Build ``<source>_nightly_retention``; call it at module level in a DAG file."""

    @dag(
        dag_id=f"{source}_nightly_retention",
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz=LIBRARY_TZ),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=[Tag.RETENTION, Tag.NIGHTLY, tag],
        doc_md=doc_md,
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
    def nightly():
        alert = [on_task_failure, _alert(source)]

        @task(task_id=VALIDATE, on_failure_callback=alert)
        def validate() -> dict:
            from airflow.sdk.exceptions import AirflowFailException  # noqa: PLC0415

            from patron_privacy import pipeline  # noqa: PLC0415
            from patron_privacy.validation import failure_lines  # noqa: PLC0415

            run, context = _open(source)
            report = pipeline.validate(run, run_id=context["run_id"])
            context["ti"].xcom_push(key="validation", value=report)  # the alert reads it
            if not report["passed"]:
                # No retry: bad data does not fix itself in five minutes.
                raise AirflowFailException(
                    f"{source}: data validation failed, nothing enforced: "
                    + "; ".join(failure_lines(report)[:10])
                )
            return {"passed": True, "rows": report.get("rows", {})}

        @task(task_id=INVENTORY, on_failure_callback=[on_task_failure])
        def inventory() -> dict:
            import importlib  # noqa: PLC0415

            from patron_privacy import sources  # noqa: PLC0415
            from patron_privacy.inventory import assert_all_classified  # noqa: PLC0415

            if not hasattr(importlib.import_module(sources.SOURCES[source]), "INVENTORY"):
                return {"source": source, "inventory": "not mapped for this source yet"}
            # A compliance finding, not a stop: a table nobody classified (say,
            # after an upgrade) fails this task and so the run, while the
            # rules already in the policy still run tonight.
            return assert_all_classified(source)

        @task(task_id=FACTS, outlets=[facts_asset(source)])
        def record_facts(validated: dict) -> dict:
            from patron_privacy import pipeline  # noqa: PLC0415
            from patron_privacy.dag_defaults import effective_dry_run  # noqa: PLC0415

            run, context = _open(source)
            if effective_dry_run(context):
                return {"facts_recorded": 0, "dry_run": True}
            return pipeline.extract_facts(run)

        @task(task_id=ENFORCE)
        def enforce(facts: dict) -> list[dict]:
            from patron_privacy import pipeline  # noqa: PLC0415
            from patron_privacy.dag_defaults import effective_dry_run  # noqa: PLC0415

            run, context = _open(source)
            return pipeline.enforce(run, dry_run=effective_dry_run(context))

        @task(task_id=VERIFY, on_failure_callback=alert)
        def verify(enforced: list[dict]) -> list[dict]:
            from patron_privacy import pipeline  # noqa: PLC0415
            from patron_privacy.dag_defaults import effective_dry_run  # noqa: PLC0415

            run, context = _open(source)
            results = pipeline.verify(run)
            # Pushed before failing, so the audit records a failed verification too.
            context["ti"].xcom_push(key="verification", value=results)
            failed = pipeline.failed_categories(results)
            if failed and not effective_dry_run(context):
                raise pipeline.VerificationFailed(
                    "still identifying past window: " + ", ".join(failed)
                )
            return results

        @task(task_id=AUDIT, trigger_rule="all_done", outlets=[audit_asset(source)])
        def audit() -> int:
            from patron_privacy import pipeline  # noqa: PLC0415
            from patron_privacy.dag_defaults import run_as_of  # noqa: PLC0415
            from patron_privacy.policy import load_policy  # noqa: PLC0415

            context = get_current_context()
            ti = context["ti"]
            policy = load_policy()
            enforced = ti.xcom_pull(task_ids=ENFORCE) or []
            verified = ti.xcom_pull(task_ids=VERIFY, key="verification") or []
            failure = None
            if not enforced:
                failure = "enforcement did not complete (validation failed, the source could "
                failure += f"not be opened, or the task failed); see the {ENFORCE} task log"
            return pipeline.record_outcome(
                source,
                run_as_of(context, policy.timezone),
                context["run_id"],
                [*enforced, *verified],
                failure=failure,
                policy=policy,
            )

        @task(task_id=FAIL_RUN, trigger_rule="one_failed")
        def fail_run() -> None:
            from airflow.sdk.exceptions import AirflowFailException  # noqa: PLC0415

            # The audit runs whatever happened, so without this the run's state
            # would follow the audit and read "success" after a failed check.
            raise AirflowFailException("a check of this run failed; see its task log and alert")

        validated = validate()
        enforced = enforce(record_facts(validated))
        verified = verify(enforced)
        verified >> audit()
        found = inventory()
        validated >> found
        [validated, verified, found] >> fail_run()

    return nightly()
