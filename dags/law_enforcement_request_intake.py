"""
### Law-enforcement request intake

**What it does.** Records one law-enforcement (or similar) request for patron
records in the library's request register (warehouse table `request_register`),
from this DAG's trigger form, and returns the request's reference
(`LE-<year>-<n>`, shown in the task's XCom and log). Every such request goes to
the Chief Executive Officer or a designee; nothing is released without a
subpoena or court order reviewed by counsel (the library's Privacy,
Confidentiality and Law Enforcement Request Policy). Later changes (counsel
review, decision, records released) are made with
`python -m patron_privacy requests update REF ...`.

**No patron identifiers.** The register describes requests, never people.
Describe what is asked for *in words* ("loan history of one patron named in the
order, March–May 2026"). Text that looks like an email address, a phone, card or
patron number, a street address or an IP address is refused — by the form before
the run is created, and again by the task. To preserve a patron's records, place
a legal hold: `python -m patron_privacy holds place --source koha --patron ID
--request REF`.

**What it touches.** The warehouse (`warehouse_db`): one new row in
`request_register`. Nothing else.

**How it fails.** A missing or invalid field (no kind of demand, a date in the
future or before the request was received, a release on a request that is not a
subpoena, court order or warrant, a release without counsel review, ...) fails
the task with one line listing every problem; nothing is written.

**Dry run.** A run with `dry_run` ticked (the default) checks the entry and
records nothing; untick it to record the request.

**How to rerun safely.** Trigger again with corrected fields. A failed run wrote
nothing; a successful run wrote one request, so do not rerun a successful run
(it would record the request twice) — change it with `requests update` instead.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from patron_privacy.dag_defaults import LIBRARY_TZ, Tag, default_args
from patron_privacy.identifiers import FORM_PATTERN

NO_IDENTIFIERS = {"not": {"pattern": FORM_PATTERN}}


@dag(
    dag_id="law_enforcement_request_intake",
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
            description="Check the entry and record nothing. Untick to record the request.",
        ),
        "received_on": Param(
            type="string",
            format="date",
            title="Received",
            description="The day the request reached the library (YYYY-MM-DD).",
        ),
        "agency": Param(
            type="string",
            minLength=1,
            maxLength=200,
            title="Agency",
            description="The requesting agency (e.g. Hartford Police Department).",
            **NO_IDENTIFIERS,
        ),
        "kind": Param(
            type="string",
            enum=["informal", "subpoena", "court_order", "warrant", "other"],
            title="Kind of demand",
            description="informal (no paper), subpoena, court order, warrant or other.",
        ),
        "asks_for": Param(
            type="string",
            minLength=1,
            maxLength=2000,
            title="What it asks for",
            description="In words; never a patron's name, card number, email, phone or "
            "address. Patrons are named only in a legal hold.",
            **NO_IDENTIFIERS,
        ),
        "referred_to": Param(
            None,
            type=["null", "string"],
            maxLength=200,
            title="Referred to",
            description="The CEO or the designee who handles it.",
            **NO_IDENTIFIERS,
        ),
        "counsel_reviewed_on": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Counsel reviewed",
            description="The day legal counsel reviewed it (YYYY-MM-DD), if it has been.",
        ),
        "decision": Param(
            "pending",
            type="string",
            enum=["pending", "released", "partly_released", "refused", "withdrawn"],
            title="Decision",
        ),
        "decided_on": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Decision date",
            description="Required unless the decision is pending.",
        ),
        "records_released": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Records released",
            description="How many records were released (released / partly released only).",
        ),
    },
)
def law_enforcement_request_intake():
    # No retry: a failure after the commit would record the request twice.
    @task(task_id="record_request", retries=0)
    def record_request() -> str | None:
        from patron_privacy import requests_register as rr  # noqa: PLC0415 - not at parse time
        from patron_privacy.policy import load_policy  # noqa: PLC0415
        from patron_privacy.timebase import as_of_from_instant  # noqa: PLC0415

        context = get_current_context()
        params = context["params"]
        # "Today" for validation is the run's own instant, not the wall clock.
        dag_run = context["dag_run"]
        instant = (
            context.get("data_interval_end") or context.get("logical_date") or dag_run.run_after
        )
        now = as_of_from_instant(instant, load_policy().timezone)
        record = {f: params.get(f) for f in rr.FIELDS if params.get(f) not in (None, "")}
        if params.get("dry_run", True):
            rr.validate(record, today=now.date())
            print("dry run: the entry is valid; nothing recorded (untick dry_run to record it)")
            return None
        ref = rr.add_request(rr.warehouse_engine(), record, today=now.date(), recorded_at=now)
        print(f"recorded request {ref}")
        return ref

    record_request()


law_enforcement_request_intake()
