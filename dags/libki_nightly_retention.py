"""
### Libki nightly retention (public computers)

**What it does.** Every night, for the library's Libki server (connection
`libki_db`, MariaDB): validates the tables it is about to act on (Great
Expectations: keys, possible times, known actions and branches, freshness of
the session statistics, volume), records de-identified public-computer
session facts (`pc_session_facts`, a keyed pseudonym instead of the
username), then applies the `source: libki` rules of the retention policy
(`include/config/retention_policy.yaml`): takes the username off the session
statistics of the day and deletes them after 90 days, deletes
ended reservations and sessions, guest accounts, patron accounts unused for
a year (judged by last activity, never keeping the usernames) and print jobs
with their files — then verifies that nothing past its window still
identifies a patron, and writes audit rows (counts only).

**What it touches.** Libki's `statistics`, `sessions`, `reservations`,
`users` (and the tables that hang off them), `print_jobs`, `print_files`, in
bounded batches, one transaction each; the warehouse (`warehouse_db`):
`pc_session_facts`, `validation_runs`, `retention_audit`. Staff accounts,
records inside their window and records under legal hold are never changed.

**How it fails.** *validate* fails on bad data (the task log and the alert
name each failed check with counts): nothing is enforced on Libki that night.
*enforce* stops before any change when a table or column is missing. *verify*
fails when records past their window still identify a patron, naming the
categories. *audit* always records what happened. A failure here never stops
the other sources' DAGs.

**How to rerun safely.** Every step is idempotent: clear the failed task or
trigger again. Manual runs default to **dry run** (counts only, nothing
changed); untick `dry_run` to enforce. Set `as_of` (YYYY-MM-DD) to rerun as
of a given day; otherwise the run's data interval end is used. By hand:
`python -m patron_privacy enforce --source libki --as-of DAY [--dry-run]`.
"""

# An Airflow DAG file: the DAG is built by the shared nightly factory.
from patron_privacy.dag_defaults import Tag
from patron_privacy.nightly_dag import nightly_retention_dag

libki_nightly_retention = nightly_retention_dag(
    "libki", doc_md=__doc__, tag=Tag.LIBKI, schedule="15 1 * * *"
)
