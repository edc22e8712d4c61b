"""``python -m patron_privacy``: everything the DAGs do, runnable by hand.

Exit status is 0 on success and non-zero with a one-line reason otherwise:
1 when the run worked but found records it should not be holding (a failed
verification), 2 when it could not run (bad policy, bad connection, bad
input). Output is counts only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from datetime import date

from patron_privacy import connections, sources
from patron_privacy.policy import PolicyError, load_policy, schedule_table
from patron_privacy.timebase import as_of_from_date

EXIT_FINDINGS = 1
EXIT_ERROR = 2


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _source(text: str) -> str:
    if text not in sources.SOURCES:
        raise argparse.ArgumentTypeError(
            f"unknown source {text!r} (expected one of {', '.join(sources.SOURCES)})"
        )
    return text


def format_results(results: list[dict]) -> str:
    head = (
        "category",
        "mode",
        "action",
        "cutoff",
        "matched",
        "changed",
        "kept",
        "remaining",
        "errors",
    )
    rows = [
        (
            f"{r['source']}.{r['category']}",
            r["mode"],
            r["action"],
            r["cutoff"][:19],
            str(r["matched"]),
            str(r["changed"]),
            ", ".join(f"{k}={v}" for k, v in r["kept"].items()) or "-",
            str(r["remaining"]),
            str(r["data_errors"]),
        )
        for r in results
    ]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *rows]]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def cmd_policy_show(args) -> int:
    print(schedule_table(load_policy(args.policy)))
    return 0


def cmd_policy_check(args) -> int:
    pol = load_policy(args.file)
    print(f"{args.file}: ok, {len(pol.rules)} rules, policy version {pol.version}")
    return 0


def _run_id(args, prefix: str) -> str:
    return args.run_id or f"cli-{prefix}-{uuid.uuid4().hex[:12]}"


def _file_source(args) -> bool:
    """signups, programs, squid: files, not a database (``patron_privacy.files``)."""
    from patron_privacy.files.runner import is_file_source  # noqa: PLC0415

    return is_file_source(args.source)


def _file_cli():
    from patron_privacy.files import cli as file_cli  # noqa: PLC0415

    return file_cli


def cmd_enforce(args) -> int:
    if getattr(args, "category", None) and (_file_source(args) or args.source == "libcal"):
        print(
            f"error: --category is for database sources; {args.source} is read once for all",
            file=sys.stderr,
        )
        return 2
    if _file_source(args):
        return _file_cli().run(args, "enforce")
    if args.source == "libcal":  # hosted, no deletion through its API: read, facts, verify
        from patron_privacy.sources.libcal import cli as libcal_cli  # noqa: PLC0415

        return libcal_cli.run(args)
    from patron_privacy import pipeline  # noqa: PLC0415 - keeps --help fast

    policy = load_policy(args.policy)
    as_of = as_of_from_date(args.as_of, policy.timezone)
    run = pipeline.open_run(args.source, as_of, policy)
    run_id = _run_id(args, "dryrun" if args.dry_run else "enforce")
    # Fail closed: bad data must never drive a change (a dry run still previews).
    report = pipeline.validate(run, run_id=run_id)  # no suite: MissingSuiteError, exit 2
    if not report["passed"]:
        _validation_failed(report, args)
        if not args.dry_run:
            print("error: nothing was changed: validation failed", file=sys.stderr)
            return EXIT_FINDINGS
    category = getattr(args, "category", None)
    if category and category not in {r.category.name for r in run.rules}:
        print(f"error: source {args.source} has no rule for category {category}", file=sys.stderr)
        return 2
    if not args.dry_run:
        pipeline.extract_facts(run)
    if category and not args.dry_run:
        # What one mapped task of the nightly DAG does: one pass, under that category's lock.
        results = [pipeline.enforce_category(run, category)]
    else:
        results = pipeline.enforce(run, dry_run=args.dry_run)
        results = [r for r in results if not category or r["category"] == category]
    pipeline.record_audit(run, results, run_id)
    print(format_results(results))
    if args.json:
        print(json.dumps({"run_id": run_id, "results": results}, default=str))
    failed = [] if args.dry_run else pipeline.failed_categories(results)
    if failed:
        print(
            f"error: verification failed: still identifying past window: {', '.join(failed)}",
            file=sys.stderr,
        )
        _compliance_alert(args, results, run_id)
        return EXIT_FINDINGS
    return 0 if report["passed"] else EXIT_FINDINGS


def cmd_verify(args) -> int:
    if _file_source(args):
        return _file_cli().run(args, "verify")
    if args.source == "libcal":
        from patron_privacy.sources.libcal import cli as libcal_cli  # noqa: PLC0415

        return libcal_cli.run(args)
    from patron_privacy import pipeline  # noqa: PLC0415

    policy = load_policy(args.policy)
    as_of = as_of_from_date(args.as_of, policy.timezone)
    run = pipeline.open_run(args.source, as_of, policy)
    results = pipeline.verify(run, mode="verify")
    run_id = _run_id(args, "verify")
    pipeline.record_audit(run, results, run_id)
    print(format_results(results))
    failed = pipeline.failed_categories(results)
    if failed:
        print(
            f"error: compliance findings: past window and still identifying: {', '.join(failed)}",
            file=sys.stderr,
        )
        _compliance_alert(args, results, run_id)
        return EXIT_FINDINGS
    print("verification passed: nothing past its window still identifies a patron")
    return 0


def _validation_failed(report: dict, args) -> None:
    """One line per failed check (names and counts only), then the alert if asked."""
    from patron_privacy.validation import failure_lines  # noqa: PLC0415

    print(
        f"error: {report['source']} validation failed: {len(report['failed'])} of "
        f"{report['checks']} checks (run {report['run_id']})",
        file=sys.stderr,
    )
    for line in failure_lines(report):
        print(f"error:   {line}", file=sys.stderr)
    if getattr(args, "alert", False):
        from patron_privacy import alerts  # noqa: PLC0415

        _send_alert(alerts.validation_alert(report))


def _compliance_alert(args, results: list[dict], run_id: str) -> None:
    if getattr(args, "alert", False):
        from patron_privacy import alerts  # noqa: PLC0415

        alert = alerts.compliance_alert(args.source, results, run_id=run_id, as_of=args.as_of)
        if alert is not None:
            _send_alert(alert)


def _send_alert(alert) -> None:
    from patron_privacy import alerts  # noqa: PLC0415

    outcome = alerts.send(alert)
    for err in outcome["errors"]:
        print(f"error: alert not sent: {err}", file=sys.stderr)
    if outcome["email"]:
        print(f"alert emailed to {outcome['email']} recipient(s)", file=sys.stderr)
    if outcome["webhook"]:
        print("alert posted to the alerts_webhook connection", file=sys.stderr)


def cmd_validate(args) -> int:
    if _file_source(args):
        return _file_cli().run(args, "validate")
    if args.source == "libcal":  # validates what the API answers, in memory
        from patron_privacy.sources.libcal import cli as libcal_cli  # noqa: PLC0415

        return libcal_cli.validate(args)
    from patron_privacy import pipeline  # noqa: PLC0415

    policy = load_policy(args.policy)
    as_of = as_of_from_date(args.as_of, policy.timezone)
    run = pipeline.open_run(args.source, as_of, policy)
    report = pipeline.validate(run, run_id=_run_id(args, "validate"))
    rows = ", ".join(f"{k}={v}" for k, v in report["rows"].items())
    print(f"{report['source']}: {report['checks']} checks, rows: {rows}")
    if args.json:
        print(json.dumps(report, default=str))
    if not report["passed"]:
        _validation_failed(report, args)
        return EXIT_FINDINGS
    print(f"validation passed (run {report['run_id']})")
    return 0


def cmd_demo_data(args) -> int:
    from patron_privacy import demo  # noqa: PLC0415

    if getattr(args, "ils", "koha") == "evergreen":
        from patron_privacy.sources.evergreen import demo as evergreen_demo  # noqa: PLC0415

        counts = evergreen_demo.build_demo_library(
            patrons=args.patrons, years=args.years, seed=args.seed, as_of=args.as_of
        )
        for table, n in counts.items():
            print(f"{table:32} {n:>10}")
        print(f"evergreen_db: {connections.describe(connections.EVERGREEN_DB)}")
        return 0
    counts = demo.build_demo_library(
        patrons=args.patrons, years=args.years, seed=args.seed, as_of=args.as_of
    )
    for table, n in counts.items():
        print(f"{table:24} {n:>10}")
    print(f"koha_db: {connections.describe(connections.KOHA_DB)}")
    return 0


def cmd_summary(args) -> int:
    from patron_privacy import audit_report  # noqa: PLC0415

    text, ok = audit_report.summary(args.run_id)
    print(text)
    return 0 if ok else EXIT_FINDINGS


def cmd_bench(args) -> int:
    from patron_privacy import bench  # noqa: PLC0415

    if getattr(args, "ils", "koha") == "evergreen":
        from patron_privacy.sources.evergreen import bench as evergreen_bench  # noqa: PLC0415

        report = evergreen_bench.run(
            url=args.url or evergreen_bench.DEFAULT_URL,
            rows=args.rows,
            past=args.past,
            patrons=args.patrons,
            out=args.out or "bench-results/bench-evergreen.json",
            trace_memory=args.trace_memory,
        )
        print(json.dumps(report, indent=2))
        return 0
    args.url = args.url or "mysql+pymysql://root@127.0.0.1:3306/pp_bench"
    args.out = args.out or "bench-results/bench.json"
    report = bench.run(
        url=args.url,
        rows=args.rows,
        past=args.past,
        patrons=args.patrons,
        out=args.out,
        trace_memory=args.trace_memory,
    )
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m patron_privacy",
        description="Retention enforcement and anonymized statistics for a public library.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress (counts only)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "demo-data",
        help="build a synthetic library into koha_db",
        description="Build a deterministic synthetic library (Koha schema).",
    )
    d.add_argument(
        "--ils",
        choices=("koha", "evergreen"),
        default="koha",
        help="koha (into koha_db) or evergreen (into evergreen_db, PostgreSQL)",
    )
    d.add_argument("--patrons", type=int, default=2000)
    d.add_argument("--years", type=int, default=3)
    d.add_argument("--seed", type=int, default=11)
    d.add_argument(
        "--as-of",
        type=_date,
        default=None,
        help="last day of the synthetic history (default: today)",
    )
    d.set_defaults(func=cmd_demo_data)

    pol = sub.add_parser(
        "policy",
        help="show or check a retention policy",
        description="Show or check a retention policy file.",
    )
    psub = pol.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    show = psub.add_parser(
        "show",
        help="print the schedule as a table",
        description="Print the retention schedule as a table.",
    )
    show.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
    show.set_defaults(func=cmd_policy_show)
    check = psub.add_parser(
        "check",
        help="validate a policy file, listing every error",
        description="Validate a policy file; exit 2 listing every error.",
    )
    check.add_argument("file")
    check.set_defaults(func=cmd_policy_check)

    for name, func, helptext in (
        ("enforce", cmd_enforce, "apply the retention policy to a source"),
        ("verify", cmd_verify, "count records past their window that still identify a patron"),
    ):
        e = sub.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + "."
        )
        e.add_argument("--source", type=_source, required=True)
        e.add_argument(
            "--as-of",
            type=_date,
            required=True,
            help="YYYY-MM-DD: midnight starting that day, library time",
        )
        e.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
        e.add_argument("--run-id", default=None, help="id written on the audit rows")
        e.add_argument(
            "--alert",
            action="store_true",
            help="on failed validation, compliance findings or input set aside, send the alert "
            "(smtp_default, alerts_webhook)",
        )
        if name == "enforce":
            e.add_argument(
                "--dry-run",
                action="store_true",
                help="report what would change, per category and blocker; change nothing",
            )
            e.add_argument("--json", action="store_true", help="also print the results as JSON")
            e.add_argument(
                "--category",
                default=None,
                help="database sources: one category only, one pass under its own lock (what "
                "the nightly DAG's per-category tasks do; other categories may run meanwhile)",
            )
        e.set_defaults(func=func)

    v = sub.add_parser(
        "validate",
        help="validate a source's data (exit 1 naming each failed check)",
        description="Run the source's validation suite and record the counts in the warehouse; "
        "exit 1 on failure, one line per failed check. enforce runs the same first.",
    )
    v.add_argument("--source", type=_source, required=True)
    v.add_argument(
        "--as-of", type=_date, required=True, help="YYYY-MM-DD: midnight starting that day"
    )
    v.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
    v.add_argument("--run-id", default=None, help="id written on the validation rows")
    v.add_argument("--json", action="store_true", help="also print the report as JSON")
    v.add_argument("--alert", action="store_true", help="on failure, send the alert")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser(
        "summary",
        help="summarize a run from its audit rows",
        description="Summarize a run (default: the latest) from the audit rows.",
    )
    s.add_argument("--run-id", default=None)
    s.set_defaults(func=cmd_summary)

    b = sub.add_parser(
        "bench",
        help="benchmark the engine against raw SQL on MariaDB",
        description="Benchmark the engine against the raw-SQL floor on MariaDB.",
    )
    b.add_argument(
        "--ils",
        choices=("koha", "evergreen"),
        default="koha",
        help="koha (old_issues on MariaDB) or evergreen (action.circulation on PostgreSQL)",
    )
    b.add_argument(
        "--url",
        default=None,
        help="database to build and measure in (default: pp_bench on MariaDB, "
        "pp_bench_evergreen on PostgreSQL)",
    )
    b.add_argument("--rows", type=int, default=5_000_000)
    b.add_argument("--past", type=int, default=1_000_000)
    b.add_argument("--patrons", type=int, default=250_000)
    b.add_argument(
        "--out",
        default=None,
        help="results JSON (default: bench-results/bench.json, bench-evergreen.json)",
    )
    b.add_argument(
        "--trace-memory",
        action="store_true",
        help="also run the engine under tracemalloc, to show Python's memory stays flat "
        "between batches (about three times slower; peak RSS is always reported)",
    )
    b.set_defaults(func=cmd_bench)

    from patron_privacy import legal_cli  # noqa: PLC0415 - requests, holds, board-report

    legal_cli.add_commands(sub)

    from patron_privacy.release import cli as release_cli  # noqa: PLC0415 - statistics releases

    release_cli.add_parser(sub)

    from patron_privacy import inventory_cli  # noqa: PLC0415 - inventory, patron-report

    inventory_cli.add_commands(sub, _source)

    from patron_privacy.sources.libcal import cli as libcal_cli  # noqa: PLC0415 - issue 4

    libcal_cli.add_commands(sub)

    from patron_privacy import warehouse_cli  # noqa: PLC0415 - warehouse upgrade|current

    warehouse_cli.add_commands(sub)

    from patron_privacy import keys_cli  # noqa: PLC0415 - keys status

    keys_cli.add_commands(sub)
    return p


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, so a caller that
    swaps stderr (a test harness, an embedding program) never leaves logging writing
    to a closed stream."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[_CurrentStderrHandler()],
    )
    try:
        return args.func(args)
    except PolicyError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - one line, no traceback, for operators
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        if args.verbose:
            raise
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
