"""
### Squid Internet-use logs nightly retention

**What it does.** Every night, for the proxy logs of the public computers
(`sources.squid` in the policy: the folder of `access.log` and its rotations,
gzipped or not, and which client address is which branch and PC): validates
every line as the run will read it (Great Expectations on the readable
lines: possible times, numbers where Squid writes numbers, HTTP methods,
known branches, freshness, volume), records Internet-use facts
(`internet_use_facts`: sessions and requests per branch, PC and hour — never
an address, a user name, a URL or a search term), then applies the `source:
squid` rules: after a day the client address, user name and URL query
strings are stripped; after 30 days the lines are deleted (a file with
nothing left is deleted). It then verifies the folder and writes audit rows
(counts only).

**What it touches.** The log files — rewritten atomically (aside, synced,
renamed; gzip kept) or deleted. The file Squid is still writing
(`live_file`) is never rewritten: its lines wait for the rotation (blocker
`live_log`). The warehouse: `internet_use_facts`, `validation_runs`,
`retention_audit`.

**How it fails.** *validate* fails when the readable lines look wrong (no
recent line: logs no longer shipped; an unknown branch; no lines at all):
then no file is changed that night. A line of the wrong format is **set
aside** — named by file and line, copied unchanged, never deleted — and a
file that cannot be read to its end (a truncated gzip) is left whole and
untouched; the rest is enforced and *verify* fails the run naming them.
*verify* also fails when lines past their window still identify. *audit*
always runs.

**How to rerun safely.** Every step is idempotent: clear the failed task or
trigger again. Manual runs default to **dry run**; untick `dry_run` to
enforce. Set `as_of` (YYYY-MM-DD) to rerun as of a given day. By hand:
`python -m patron_privacy enforce --source squid --as-of DAY [--dry-run]`.
"""

# An Airflow DAG file: the DAG is built by the shared nightly factory.
from patron_privacy.dag_defaults import Tag
from patron_privacy.nightly_dag import nightly_retention_dag

squid_nightly_retention = nightly_retention_dag(
    "squid", doc_md=__doc__, tag=Tag.SQUID, schedule="30 3 * * *"
)
