"""
### Law-enforcement disclosure (release only with the CEO's approval)

**What it does.** For one request in the register (param `request`, e.g.
`LE-2026-001`): checks that the request may lead to a release (a subpoena,
court order or warrant; counsel has reviewed it; not refused or withdrawn; at
least one active legal hold cites it), then **waits for the Chief Executive
Officer (or a designee) to approve or reject the release** in Airflow
(*Required Actions*, or the page of the task *ask_the_ceo_to_approve*). The
approval step shows the request and how many records each category would
contribute — counts only, no patron.

Only on **Approve** does it build the disclosure package: exactly the records
the request's active holds cover (the held patrons' records in the holds'
categories and date ranges, selected with the retention engine's own
definitions), written to `.local/exports/disclosures/<request>/package.json`
with a `manifest.json` (directory 0700, files 0600), and records in the
register who approved and when (`disclosure_reviews`). On **Reject** nothing is
built and the rejection (who, when) is recorded.

**Who may answer.** When the environment variable
`PATRON_PRIVACY_DISCLOSURE_APPROVERS` (comma-separated Airflow user ids) is set
where the DAG is parsed, only those users may answer; otherwise anyone allowed
to answer this DAG's required actions may. Set it in production to the CEO and
the designees named in writing.

**What it touches.** Reads the warehouse (`warehouse_db`: register, holds) and
the held patrons' records in the source (`koha_db`, read only). Writes the
package files and one `disclosure_reviews` row. It never changes a source.

**How it fails.** *check_request* fails with one line when the request is not
ready (what is missing and the command that fixes it). The approval waits at
most 14 days, then fails. *build_disclosure_package* re-checks the request (a
hold released while waiting means nothing is built) and fails before recording
anything if the package cannot be written.

**Dry run.** With `dry_run` ticked (the default) the run stops after
*check_request*: its log and XCom show what a release would contain; no approval
is asked and nothing is built. Untick it to ask for the approval.

**How to rerun safely.** Trigger again for the same request: a new approval is
asked for. Clearing a failed *build_disclosure_package* rebuilds from the same
approval and replaces that run's package and register row. Logs and XCom carry
counts, never a patron id or a record.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, get_current_context, task
from patron_privacy.dag_defaults import LIBRARY_TZ, Tag, default_args

APPROVERS = [
    {"id": a.strip(), "name": a.strip()}
    for a in os.environ.get("PATRON_PRIVACY_DISCLOSURE_APPROVERS", "").split(",")
    if a.strip()
]


class RecordedApprovalOperator(ApprovalOperator):
    """ApprovalOperator that also keeps the answer (which, who, when) in XCom ``answer``.

    On Reject the operator skips its downstream task by raising before it returns, so
    its return value is never stored; the rejection's who and when must be kept first.
    """

    def execute_complete(self, context, event: dict):
        if "error" not in event:
            context["ti"].xcom_push(
                key="answer",
                value={
                    "chosen_options": event["chosen_options"],
                    "responded_by_user": event["responded_by_user"],
                    "responded_at": event["responded_at"],
                },
            )
        return super().execute_complete(context=context, event=event)


def _answer_time(answer: dict):
    """The HITL answer's instant as naive library-local time, as the warehouse stores times."""
    from patron_privacy.policy import load_policy  # noqa: PLC0415
    from patron_privacy.timebase import as_of_from_instant  # noqa: PLC0415

    at = answer["responded_at"]
    if isinstance(at, str):
        at = pendulum.parse(at)
    return as_of_from_instant(at, load_policy().timezone)


def _who(answer: dict) -> str:
    user = answer.get("responded_by_user") or {}
    return str(user.get("name") or user.get("id") or "unknown")


@dag(
    dag_id="law_enforcement_disclosure",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz=LIBRARY_TZ),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(owner="ceo-office"),
    tags=[Tag.LEGAL],
    doc_md=__doc__,
    params={
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Check the request and show what a release would contain (counts); "
            "ask for no approval and build nothing. Untick to ask the CEO for approval.",
        ),
        "request": Param(
            type="string",
            pattern=r"^LE-[0-9]{4}-[0-9]{3,}$",
            title="Request",
            description="The register reference (python -m patron_privacy requests list).",
        ),
    },
)
def law_enforcement_disclosure():
    @task(task_id="check_request")
    def check_request() -> dict:
        from patron_privacy import disclosure  # noqa: PLC0415 - not at parse time

        ref = get_current_context()["params"]["request"]
        preview = disclosure.preview(ref)
        print(f"request {ref}: a release would contain {preview['total_records']} records")
        return {"body": disclosure.approval_body(preview), "records": preview["records"]}

    @task.short_circuit(task_id="release_requested", ignore_downstream_trigger_rules=True)
    def release_requested() -> bool:
        if get_current_context()["params"].get("dry_run", True):
            print("dry run: no approval asked, nothing built (untick dry_run to ask)")
            return False
        return True

    ceo_approval = RecordedApprovalOperator(
        task_id="ask_the_ceo_to_approve",
        subject="Release patron records for request {{ params.request }}?",
        body="{{ ti.xcom_pull(task_ids='check_request')['body'] }}",
        assigned_users=APPROVERS or None,
        response_timeout=timedelta(days=14),
        retries=0,  # a timed-out approval ends the run; trigger again to ask again
    )

    @task(task_id="build_disclosure_package")
    def build_package(answer: dict) -> dict:
        from patron_privacy import disclosure  # noqa: PLC0415

        context = get_current_context()
        built = disclosure.build_package(
            context["params"]["request"],
            approved_by=_who(answer),
            approved_at=_answer_time(answer),
            dag_run_id=context["run_id"],
        )
        print(f"disclosure package built: {built['total_records']} records")
        return {"total_records": built["total_records"], "sha256": built["sha256"]}

    @task(task_id="record_rejection", trigger_rule="none_failed")
    def record_rejection() -> str:
        from patron_privacy import disclosure  # noqa: PLC0415

        context = get_current_context()
        answer = context["ti"].xcom_pull(task_ids="ask_the_ceo_to_approve", key="answer") or {}
        if ApprovalOperator.REJECT not in (answer.get("chosen_options") or []):
            return "approved: recorded with the package"
        disclosure.record_rejection(
            context["params"]["request"],
            rejected_by=_who(answer),
            rejected_at=_answer_time(answer),
            dag_run_id=context["run_id"],
        )
        return "rejected: nothing built"

    check_request() >> release_requested() >> ceo_approval
    build_package(ceo_approval.output) >> record_rejection()


law_enforcement_disclosure()
