"""``python -m patron_privacy libcal --as-of DAY`` (and ``enforce|verify --source libcal``).

LibCal is hosted and its API cannot delete, so "enforcing" it means: read, record program
facts, count the registrations past their window the vendor still holds, write the audit
rows, and (``--alert``) send the alert. Exit status: 0 when nothing is past its window and
every request worked; 1 on compliance findings or failed requests (each named on
stderr); 2 when the run could not start (no connection, credentials refused).
"""

from __future__ import annotations

import json
import sys
import uuid

EXIT_FINDINGS = 1


def run(args) -> int:
    from patron_privacy import cli  # noqa: PLC0415
    from patron_privacy.policy import load_policy  # noqa: PLC0415
    from patron_privacy.sources.libcal.connector import libcal_alert, run_libcal  # noqa: PLC0415
    from patron_privacy.timebase import as_of_from_date  # noqa: PLC0415

    policy = load_policy(args.policy)
    as_of = as_of_from_date(args.as_of, policy.timezone)
    run_id = args.run_id or f"cli-libcal-{uuid.uuid4().hex[:12]}"
    from patron_privacy.validation import ValidationFailed  # noqa: PLC0415

    try:
        out = run_libcal(
            as_of, run_id, policy=policy, dry_run=bool(getattr(args, "dry_run", False))
        )
    except ValidationFailed as exc:
        # Fail closed: nothing recorded or counted from an answer that failed its suite.
        cli._validation_failed(exc.report, args)  # noqa: SLF001 - the CLI's one report format
        print("error: nothing was recorded: validation failed", file=sys.stderr)
        return EXIT_FINDINGS
    print(
        f"libcal: {out['events']} events read ({out['events_with_registration']} with "
        f"registration), {out['registrations_read']} registrations counted in memory, "
        f"{out['requests']} requests ({out['retries']} retried)"
    )
    verb = "would be recorded (dry run)" if getattr(args, "dry_run", False) else "recorded"
    print(f"libcal: {out['facts_recorded']} program facts {verb}, {out['facts_skipped']} skipped")
    print(cli.format_results(out["results"]))
    if getattr(args, "json", False):
        print(json.dumps({k: v for k, v in out.items() if k != "alert"}, default=str))
    for err in out["errors"]:
        print(f"error: {err}", file=sys.stderr)
    if out["findings"]:
        print(
            f"error: compliance findings: LibCal still holds {out['findings']} registration(s) "
            "past their window (purge them in LibCal)",
            file=sys.stderr,
        )
    if out["passed"]:
        print("verification passed: LibCal holds no registration past its window")
        return 0
    if getattr(args, "alert", False):
        cli._send_alert(libcal_alert(out))  # noqa: SLF001 - the CLI's one delivery helper
    return EXIT_FINDINGS


def validate(args) -> int:
    """``validate --source libcal``: read LibCal, run its suite, store the counts."""
    from patron_privacy import cli  # noqa: PLC0415
    from patron_privacy.policy import load_policy  # noqa: PLC0415
    from patron_privacy.sources.libcal.connector import validate_libcal  # noqa: PLC0415
    from patron_privacy.timebase import as_of_from_date  # noqa: PLC0415

    policy = load_policy(args.policy)
    as_of = as_of_from_date(args.as_of, policy.timezone)
    run_id = args.run_id or f"cli-validate-{uuid.uuid4().hex[:12]}"
    report = validate_libcal(as_of, run_id, policy=policy)
    rows = ", ".join(f"{k}={v}" for k, v in report["rows"].items())
    print(f"{report['source']}: {report['checks']} checks, rows: {rows}")
    if getattr(args, "json", False):
        print(json.dumps(report, default=str))
    for line in report["set_aside"]:
        print(f"error: request failed, left out: {line}", file=sys.stderr)
    if not report["passed"]:
        cli._validation_failed(report, args)  # noqa: SLF001 - the CLI's one report format
        return EXIT_FINDINGS
    print(f"validation passed (run {report['run_id']})")
    return EXIT_FINDINGS if report["set_aside"] else 0


def add_commands(sub) -> None:
    from patron_privacy.cli import _date  # noqa: PLC0415

    p = sub.add_parser(
        "libcal",
        help="LibCal: program facts, and registrations the vendor holds past their window",
        description="Read LibCal (events, registrations), record program facts, count the "
        "registrations past their window that the vendor still holds, write audit rows.",
    )
    p.add_argument(
        "--as-of", type=_date, required=True, help="YYYY-MM-DD: midnight starting that day"
    )
    p.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
    p.add_argument("--run-id", default=None, help="id written on the audit rows")
    p.add_argument("--json", action="store_true", help="also print the counts as JSON")
    p.add_argument("--alert", action="store_true", help="on findings or failed requests, alert")
    p.add_argument("--dry-run", action="store_true", help="read and verify; write no fact")
    p.set_defaults(func=run)
