"""
### Evergreen nightly retention

**What it does.** Every night, for a library (or consortium) on the Evergreen
ILS (connection `evergreen_db`, PostgreSQL): validates the data it is about
to act on (Great Expectations), records de-identified circulation facts in
the warehouse (`warehouse_db`), then applies the retention policy
(`include/config/retention_policy.yaml`, the `source: evergreen` rules) —
ages finished circulations (whole renewal chains) and closed holds the way
Evergreen does (a copy without the patron, then the row goes), unlinks
settled bills, anonymizes long-expired inactive patrons, deletes old user
activity — verifies that nothing past its window still identifies a patron,
and writes audit rows (counts only).

**What it touches.** `action.circulation`, `action.aged_circulation`,
`action.hold_request`, `action.aged_hold_request`, `money.*`, `actor.usr`,
`actor.usr_activity` in bounded batches, one transaction each. Where the
policy says Evergreen ages a category itself, this DAG only verifies it.

**How it fails.** *validate* fails on bad data (nothing enforced that night);
*enforce* stops before any change on a missing table or column; *verify*
fails when records past their window still identify a patron, naming the
categories; *audit* always records what happened.

**How to rerun safely.** Every step is idempotent: clear the failed task or
trigger again. Manual runs default to **dry run**; untick `dry_run` to
enforce. Set `as_of` (YYYY-MM-DD) to rerun as of a given day.
"""

# An Airflow DAG file: the DAG is built by the shared nightly factory.
from patron_privacy.dag_defaults import Tag
from patron_privacy.nightly_dag import nightly_retention_dag

evergreen_nightly_retention = nightly_retention_dag(
    "evergreen", doc_md=__doc__, tag=Tag.EVERGREEN, schedule="0 3 * * *"
)
