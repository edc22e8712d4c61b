"""
### Koha nightly retention

**What it does.** Every night, for the library's Koha ILS (connection
`koha_db`): validates the data it is about to act on (Great Expectations:
columns, keys, references, possible dates, known codes, freshness, volume),
records de-identified circulation facts in the warehouse
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

**How it fails.** *validate* fails when the data looks wrong (the task log
and the alert name each failed check, with counts): then nothing is
enforced on Koha in that run. *enforce* stops before any change if the policy is
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

# An Airflow DAG file: the DAG is built by the shared nightly factory.
from patron_privacy.dag_defaults import Tag
from patron_privacy.nightly_dag import nightly_retention_dag

koha_nightly_retention = nightly_retention_dag("koha", doc_md=__doc__, tag=Tag.KOHA)
