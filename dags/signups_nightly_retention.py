"""
### PC sign-up exports nightly retention (drop folder)

**What it does.** Every night, for the public-computer sign-up exports that
a reservation system drops as CSV files (`sources.signups.folders` in the
policy: folder, file pattern, column mapping): validates every export as the
run will read it (Great Expectations on the readable records: required
fields, possible dates, known branches, freshness, volume), records
de-identified session facts (`pc_session_facts`: date, hour, branch, PC,
duration band, a keyed pseudonym — never the card number or name), then
applies the `source: signups` rules: past the window the identifying columns
are stripped (card number, name, email and columns listed as identifying),
and rows past the longer window are deleted; a file with nothing left is
deleted. Then it reads the folder again to verify nothing past its window
still identifies, and writes audit rows (counts only).

**What it touches.** The export files themselves — rewritten atomically
(written aside, synced, renamed: a crash leaves the old file or the new one,
never half of either) or deleted; the warehouse: `pc_session_facts`,
`validation_runs`, `retention_audit`. A file that changed while the run read
it is left for the next run.

**How it fails.** *validate* fails when the readable records look wrong
(stale exports, a branch not in the folder's `branches`, no rows at all):
then no file is changed that night. A file the reader refuses (a malformed
row, a wrong encoding, NUL bytes, an over-long field, a formula-like cell, an
unmapped column) is **set aside**: named by file and line in the task log,
left exactly as it is, no fact taken from it — the other files are enforced,
and *verify* then fails the run naming it so a person looks. *verify* also
fails when records past their window still identify. *audit* always runs.

**How to rerun safely.** Every step is idempotent (facts are keyed; a file
already rewritten has nothing left to change): clear the failed task or
trigger again. Manual runs default to **dry run**; untick `dry_run` to
enforce. Set `as_of` (YYYY-MM-DD) to rerun as of a given day. By hand:
`python -m patron_privacy enforce --source signups --as-of DAY [--dry-run]`.
"""

# An Airflow DAG file: the DAG is built by the shared nightly factory.
from patron_privacy.dag_defaults import Tag
from patron_privacy.nightly_dag import nightly_retention_dag

signups_nightly_retention = nightly_retention_dag(
    "signups", doc_md=__doc__, tag=Tag.FILES, schedule="45 1 * * *"
)
