"""
### LibCal nightly program facts and vendor retention check

**What it does.** Every night, for program registrations held by LibCal
(Springshare, hosted; connection `libcal_api`, OAuth2 client credentials):
*validate* reads the events and registrations and runs LibCal's suite on the
answer (Great Expectations: event ids, possible times, no booking counted
twice, registrations only for events read, volume). Then *record facts*
reads LibCal again and validates that same answer before using it — nothing
is recorded or counted from an answer that fails — records program facts
(`program_facts`: date, branch, category, audience band, onsite / offsite /
virtual, registered and attended counts) and counts the registrations LibCal
still holds past the policy's window (`source: libcal` rule). Registrants'
names, emails, phones and barcodes are held in memory only for that count.
LibCal's API cannot delete, so there is no enforce step: registrations past
their window are **compliance findings** — on the audit rows and the alert —
for the library to purge in LibCal.

**What it touches.** LibCal is only read. The warehouse: `program_facts`,
`validation_runs`, `retention_audit`.

**How it fails.** *validate* (or the facts step's own validation) fails on a
bad answer: nothing is recorded that night. Requests that fail (HTML or
garbage JSON, timeouts, a 500 that does not recover) are named, what they
would have brought is left out, and the rest goes on; *verify* then fails the
run naming them. *verify* fails on compliance findings (registrations past
their window at the vendor; the alert says how many, never who). Refused
credentials fail *validate*. *audit* always records what happened.

**How to rerun safely.** Nothing in LibCal changes and facts are keyed:
clear the failed task or trigger again. Manual runs default to **dry run**
(no fact written; the vendor is still counted); untick `dry_run` to record
facts. Set `as_of` (YYYY-MM-DD) to rerun as of a given day. By hand:
`python -m patron_privacy libcal --as-of DAY [--dry-run]`.
"""

# An Airflow DAG file: the DAG is built by the shared nightly factory.
from patron_privacy.dag_defaults import Tag
from patron_privacy.nightly_dag import nightly_retention_dag

libcal_nightly_retention = nightly_retention_dag(
    "libcal", doc_md=__doc__, tag=Tag.LIBCAL, schedule="15 3 * * *"
)
