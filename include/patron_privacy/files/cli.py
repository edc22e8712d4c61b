"""``enforce`` / ``verify`` / ``validate`` for file sources (``--source signups|programs|squid``).

Called by ``patron_privacy.cli`` when the source is a file source; the same
arguments, output and exit status as for a database source: 0 on success, 1
when verification finds records past their window that still identify (or a
file could not be read), 2 when the run could not start.
"""

from __future__ import annotations

import json
import sys
import uuid

from patron_privacy.policy import load_policy
from patron_privacy.timebase import as_of_from_date

EXIT_FINDINGS = 1


def _problems(results: list[dict]) -> list[str]:
    return [r["error"] for r in results if r.get("error")]


def run(args, mode: str) -> int:
    from patron_privacy import cli  # noqa: PLC0415
    from patron_privacy.files import runner  # noqa: PLC0415

    policy = load_policy(args.policy)
    as_of = as_of_from_date(args.as_of, policy.timezone)
    dry_run = mode == "validate" or bool(getattr(args, "dry_run", False))
    prefix = "verify" if mode == "verify" else ("dryrun" if dry_run else "enforce")
    run_id = args.run_id or f"cli-{prefix}-{uuid.uuid4().hex[:12]}"
    if mode == "verify":
        results = runner.verify_source(args.source, as_of, run_id, policy=policy)
    else:
        results = runner.run_source(args.source, as_of, run_id, dry_run, policy=policy)
    print(cli.format_results(results))
    if getattr(args, "json", False):
        print(json.dumps({"run_id": run_id, "results": results}, default=str))
    for problem in dict.fromkeys(_problems(results)):
        print(f"error: {problem}", file=sys.stderr)
    failed = (
        []
        if dry_run
        else [
            f"{r['source']}.{r['category']} ({r['remaining']})" for r in results if r["remaining"]
        ]
    )
    if failed:
        print(
            f"error: verification failed: still identifying past window: {', '.join(failed)}",
            file=sys.stderr,
        )
        if getattr(args, "alert", False):
            from patron_privacy import alerts  # noqa: PLC0415

            alert = alerts.compliance_alert(args.source, results, run_id=run_id, as_of=args.as_of)
            if alert is not None:
                cli._send_alert(alert)  # noqa: SLF001 - the CLI's one way to send an alert
        return EXIT_FINDINGS
    if mode == "verify" and not _problems(results):
        print("verification passed: nothing past its window still identifies a patron")
    return EXIT_FINDINGS if _problems(results) else 0
