"""
### Program registration exports nightly retention (drop folder)

**What it does.** Every night, for program registrations exported as CSV
files by an event system other than LibCal (`sources.programs.folders` in
the policy): validates every export as the run will read it (Great
Expectations on the readable records: required fields, possible dates, known
branches, audience, delivery and attendance values, freshness, volume),
records de-identified program facts (`program_facts`: date, branch,
category, audience band, onsite / offsite / virtual, registered and attended
counts — never a registrant), then applies the `source: programs` rules:
registrants' names, emails, phones and card numbers are stripped past their
window and rows deleted past the longer one; a file with nothing left is
deleted. It then verifies the folder and writes audit rows (counts only).

**What it touches.** The export files — rewritten atomically (aside, synced,
renamed) or deleted; the warehouse: `program_facts`, `validation_runs`,
`retention_audit`.

**How it fails.** *validate* fails when the readable records look wrong:
then no file is changed that night. A file the reader refuses is **set
aside** — named by file and line, left exactly as it is, no fact taken from
it — while the other files are enforced, and *verify* fails the run naming
it. *verify* also fails when records past their window still identify a
registrant. *audit* always runs.

**How to rerun safely.** Every step is idempotent: clear the failed task or
trigger again. Manual runs default to **dry run**; untick `dry_run` to
enforce. Set `as_of` (YYYY-MM-DD) to rerun as of a given day. By hand:
`python -m patron_privacy enforce --source programs --as-of DAY [--dry-run]`.
"""

# An Airflow DAG file: the DAG is built by the shared nightly factory.
from patron_privacy.dag_defaults import Tag
from patron_privacy.nightly_dag import nightly_retention_dag

programs_nightly_retention = nightly_retention_dag(
    "programs", doc_md=__doc__, tag=Tag.FILES, schedule="0 2 * * *"
)
