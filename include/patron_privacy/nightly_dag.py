"""The nightly retention DAG, built the same way for every source.

Each source's DAG file holds its own runbook (its docstring) and calls
:func:`nightly_retention_dag`; the tasks are the same steps as the CLI's,
so a source adds a connector and a validation suite, never a second DAG shape:

    validate → record facts → enforce → verify → audit (always)
    (a database source fans out first: one mapped task per category, side by
    side, each under its category's lock, before the whole-source pass)
    + a check that every personal table is classified, and a task that fails
      the run when any check failed

What each task calls depends on the source's kind (``nightly_steps``): a
database the engine changes in place (Koha, Evergreen, Libki), files (drop
folders of exports, Squid logs: ``files.runner``), or a hosted vendor whose
API cannot delete (LibCal: no enforce task; the facts task reads, validates,
records and counts what the vendor still holds, from one read).

Validation failing stops that source's run before anything changes (fail
closed), and a source without a suite fails the same way; input a file
source cannot read is set aside (left as it is, named by file and line)
while the rest goes on, and the run then ends failed. The audit step always
runs and records what happened, also when the source could not be opened.
Only names and counts cross task boundaries (XCom).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from patron_privacy.dag_defaults import LIBRARY_TZ, Tag, default_args, on_task_failure

VALIDATE = "validate_source_data"
FACTS = "record_de_identified_facts"
ENFORCE = "enforce_retention_policy"
CATEGORIES = "read_categories_to_enforce_side_by_side"
ENFORCE_CATEGORY = "enforce_one_category"
VERIFY = "verify_nothing_past_its_window_identifies"
AUDIT = "write_audit_rows"
INVENTORY = "check_every_personal_table_is_classified"
FAIL_RUN = "fail_the_run_if_a_check_failed"

# The kind of each source that is not a database the engine changes in place (see
# ``nightly_steps``, which this module must not import at parse time: it loads the policy).
KINDS = {"signups": "files", "programs": "files", "squid": "files", "libcal": "vendor"}


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


def _step(source: str):
    """(the source's steps, this run's RunInfo, the task context) — at run time only."""
    from patron_privacy.dag_defaults import effective_dry_run, run_as_of  # noqa: PLC0415
    from patron_privacy.nightly_steps import RunInfo, steps_for  # noqa: PLC0415
    from patron_privacy.policy import load_policy  # noqa: PLC0415

    context = get_current_context()
    policy = load_policy()
    info = RunInfo(
        source=source,
        as_of=run_as_of(context, policy.timezone),
        run_id=context["run_id"],
        dry_run=effective_dry_run(context),
        policy=policy,
    )
    return steps_for(source), info, context


def nightly_retention_dag(source: str, *, doc_md: str, tag: Tag, schedule: str = "30 2 * * *"):
    """Build ``<source>_nightly_retention``; call it at module level in a DAG file.

    The source's kind (``KINDS``) decides what each task calls and whether there is an
    enforce step; the shape, task ids, params, assets and alerts are the same for all.
    """
    kind = KINDS.get(source, "engine")

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

            from patron_privacy.validation import failure_lines  # noqa: PLC0415

            steps, info, context = _step(source)
            report = steps.validate(info)  # a source without a suite raises: fail closed
            context["ti"].xcom_push(key="validation", value=report)  # the alert reads it
            if not report["passed"]:
                # No retry: bad data does not fix itself in five minutes.
                raise AirflowFailException(
                    f"{source}: data validation failed, nothing enforced: "
                    + "; ".join(failure_lines(report)[:10])
                )
            return {
                "passed": True,
                "rows": report.get("rows", {}),
                "set_aside": len(report.get("set_aside") or []),
            }

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

        # The vendor kind reads, validates and counts in this one step: it alerts.
        @task(
            task_id=FACTS,
            outlets=[facts_asset(source)],
            on_failure_callback=alert if kind == "vendor" else [on_task_failure],
        )
        def record_facts(validated: dict) -> dict:
            from airflow.sdk.exceptions import AirflowFailException  # noqa: PLC0415

            from patron_privacy.validation import ValidationFailed, failure_lines  # noqa: PLC0415

            steps, info, context = _step(source)
            try:
                return steps.facts(info)
            except ValidationFailed as exc:
                report = getattr(exc, "report", None)
                if report is None:
                    raise
                context["ti"].xcom_push(key="validation", value=report)
                raise AirflowFailException(
                    f"{source}: data validation failed, nothing recorded: "
                    + "; ".join(failure_lines(report)[:10])
                ) from None

        @task(task_id=CATEGORIES)
        def categories(facts: dict) -> list[str]:
            steps, info, _ = _step(source)
            return steps.categories(info)

        # One mapped task per category, so more workers finish sooner; each holds its
        # category's lock. The whole-source pass after them finishes what they left.
        @task(task_id=ENFORCE_CATEGORY, map_index_template="{{ category }}")
        def enforce_category(category: str) -> dict:
            steps, info, context = _step(source)
            context["category"] = category  # the mapped instance's name in the UI
            return steps.enforce_category(info, category)

        # none_failed: it runs when there was nothing to fan out (a dry run, SQLite).
        @task(task_id=ENFORCE, trigger_rule="none_failed")
        def enforce(facts: dict) -> list[dict]:
            steps, info, context = _step(source)
            fanned: list[dict] = []
            if kind == "engine":
                ti = context["ti"]
                chosen = ti.xcom_pull(task_ids=CATEGORIES) or []
                if chosen:
                    pulled = ti.xcom_pull(
                        task_ids=ENFORCE_CATEGORY, map_indexes=list(range(len(chosen)))
                    )
                    fanned = [f for f in (pulled or []) if f]
            return steps.enforce(info, fanned)

        @task(task_id=VERIFY, on_failure_callback=alert)
        def verify(upstream) -> list[dict]:
            from airflow.sdk.exceptions import AirflowFailException  # noqa: PLC0415

            from patron_privacy import pipeline  # noqa: PLC0415

            steps, info, context = _step(source)
            results = steps.verify(info, upstream)
            # Pushed before failing, so the audit records a failed verification too.
            context["ti"].xcom_push(key="verification", value=results)
            failed = pipeline.failed_categories(results)
            if failed and not info.dry_run:
                raise pipeline.VerificationFailed(
                    "still identifying past window: " + ", ".join(failed)
                )
            problems = steps.problems(results)
            if problems:
                # Unreadable input was left exactly as it is and the rest was done; the
                # run ends failed so that a person looks at it. A retry would not help.
                raise AirflowFailException(
                    f"{source}: input set aside, left as it is (the rest was done): "
                    + "; ".join(problems[:5])
                )
            return results

        @task(task_id=AUDIT, trigger_rule="all_done", outlets=[audit_asset(source)])
        def audit() -> int:
            from patron_privacy import pipeline  # noqa: PLC0415
            from patron_privacy.nightly_steps import already_audited  # noqa: PLC0415

            steps, info, context = _step(source)
            ti = context["ti"]
            done_task = ENFORCE if steps.has_enforce else FACTS
            enforced = ti.xcom_pull(task_ids=done_task) or []
            failure = None
            if not enforced:
                failure = "enforcement did not complete (validation failed, the source could "
                failure += f"not be opened, or the task failed); see the {done_task} task log"
            if steps.self_audited:
                # Its steps wrote their own rows; here only a run that wrote none is told.
                if failure is None or already_audited(source, info.run_id):
                    return 0
                return pipeline.record_outcome(
                    source, info.as_of, info.run_id, [], failure=failure, policy=info.policy
                )
            verified = ti.xcom_pull(task_ids=VERIFY, key="verification") or []
            return pipeline.record_outcome(
                source,
                info.as_of,
                info.run_id,
                [*enforced, *verified],
                failure=failure,
                policy=info.policy,
            )

        @task(task_id=FAIL_RUN, trigger_rule="one_failed")
        def fail_run() -> None:
            from airflow.sdk.exceptions import AirflowFailException  # noqa: PLC0415

            # The audit runs whatever happened, so without this the run's state
            # would follow the audit and read "success" after a failed check.
            raise AirflowFailException("a check of this run failed; see its task log and alert")

        validated = validate()
        facts = record_facts(validated)
        if kind == "engine":
            chosen = categories(facts)
            enforced = enforce(facts)
            enforce_category.expand(category=chosen) >> enforced
            verified = verify(enforced)
        else:
            verified = verify(enforce(facts) if kind != "vendor" else facts)
        verified >> audit()
        found = inventory()
        validated >> found
        [validated, verified, found] >> fail_run()

    return nightly()
