"""``enforce`` / ``verify`` / ``validate`` for file sources (``--source signups|programs|squid``).

Called by ``patron_privacy.cli`` when the source is a file source; the same
arguments, output and exit status as for a database source: 0 on success, 1
when validation fails (nothing is changed), verification finds records past
their window that still identify, or a file or line could not be read (it is
named, set aside and left as it is; the rest goes on), 2 when the run could
not start. ``enforce`` validates first, as for a database.
"""

from __future__ import annotations

import json
import sys
import uuid

from patron_privacy import alerts
from patron_privacy.policy import load_policy
from patron_privacy.timebase import as_of_from_date

EXIT_FINDINGS = 1


def run(args, mode: str) -> int:
    from patron_privacy import cli  # noqa: PLC0415
    from patron_privacy.files import runner  # noqa: PLC0415

    policy = load_policy(args.policy)
    as_of = as_of_from_date(args.as_of, policy.timezone)
    dry_run = bool(getattr(args, "dry_run", False))
    prefix = mode if mode in ("verify", "validate") else ("dryrun" if dry_run else "enforce")
    run_id = args.run_id or f"cli-{prefix}-{uuid.uuid4().hex[:12]}"
    invalid = False
    if mode in ("validate", "enforce"):
        # Fail closed, as for a database: files are changed only after the suite passed.
        report = runner.validate_source(args.source, as_of, run_id, policy=policy)
        for line in report["set_aside"]:
            print(f"error: set aside, left as it is: {line}", file=sys.stderr)
        if mode == "validate":
            rows = ", ".join(f"{k}={v}" for k, v in report["rows"].items())
            print(f"{report['source']}: {report['checks']} checks, rows: {rows}")
            if getattr(args, "json", False):
                print(json.dumps(report, default=str))
        if not report["passed"]:
            invalid = True
            cli._validation_failed(report, args)  # noqa: SLF001 - the CLI's one report format
            if mode == "enforce" and not dry_run:
                print("error: nothing was changed: validation failed", file=sys.stderr)
            if mode == "validate" or not dry_run:
                return EXIT_FINDINGS
        elif mode == "validate":
            print(f"validation passed (run {report['run_id']})")
            return EXIT_FINDINGS if report["set_aside"] else 0
    if mode == "verify":
        results = runner.verify_source(args.source, as_of, run_id, policy=policy)
    else:
        results = runner.run_source(args.source, as_of, run_id, dry_run, policy=policy)
    print(cli.format_results(results))
    if getattr(args, "json", False):
        print(json.dumps({"run_id": run_id, "results": results}, default=str))
    problems = alerts.input_problems(results)
    for problem in problems:
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
            alert = alerts.compliance_alert(args.source, results, run_id=run_id, as_of=args.as_of)
            if alert is not None:
                cli._send_alert(alert)  # noqa: SLF001 - the CLI's one way to send an alert
        return EXIT_FINDINGS
    if problems and getattr(args, "alert", False):
        cli._send_alert(  # noqa: SLF001 - the CLI's one way to send an alert
            alerts.set_aside_alert(args.source, results, run_id=run_id, as_of=args.as_of)
        )
    if mode == "verify" and not problems:
        print("verification passed: nothing past its window still identifies a patron")
    return EXIT_FINDINGS if problems or invalid else 0
