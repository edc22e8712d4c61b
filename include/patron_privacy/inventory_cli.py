"""``inventory`` and ``patron-report``: the personal-data inventory on the command line.

Registered by :func:`patron_privacy.cli.build_parser`. Output is table and
column names and counts; the patron report's content goes only to its files.
"""

from __future__ import annotations

import json
import sys

EXIT_FINDINGS = 1


def cmd_inventory(args) -> int:
    from patron_privacy import inventory  # noqa: PLC0415

    if args.source in inventory.NO_SCHEMA:
        cov = inventory.connector_coverage(args.source, args.policy)
        print(json.dumps(cov, indent=2) if args.json else inventory.format_connector_coverage(cov))
        if args.fail_on_uncovered and cov["not_covered"]:
            print(f"error: no rule covers source {args.source}", file=sys.stderr)
            return EXIT_FINDINGS
        return 0
    report = inventory.build_report(args.source, args.policy)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(inventory.format_report(report))
    if args.fail_on_uncovered and report.uncovered:
        print(
            f"error: {len(report.uncovered)} place(s) hold patron data and are not covered: "
            f"{', '.join(report.uncovered)}",
            file=sys.stderr,
        )
        return EXIT_FINDINGS
    return 0


def cmd_patron_report(args) -> int:
    from patron_privacy.patron_report import make_patron_report  # noqa: PLC0415

    out = make_patron_report(args.source, args.patron, args.consent_ref, args.out)
    print(f"request {out['request_id']}: {out['total_rows']} rows from {len(out['counts'])} tables")
    for table, n in out["counts"].items():
        print(f"  {table:32} {n:>8}")
    if out["not_searchable"]:
        print("held under a pseudonym, not searchable: " + ", ".join(out["not_searchable"]))
    print("written (mode 0600; contains the patron's data, for the patron only):")
    print(f"  {out['json']}")
    print(f"  {out['html']}")
    return 0


def add_commands(sub, source_type) -> None:
    """Add the two subcommands to the CLI's subparsers (``source_type`` validates --source)."""
    inv = sub.add_parser(
        "inventory",
        help="list every table and column holding patron data, and what covers it",
        description="Discover, in the live source, every table that links to a patron or "
        "holds personal fields, and classify each: covered by a rule, kept on purpose "
        "(policy kept_on_purpose), or not covered. Database sources (koha, evergreen, "
        "libki) are discovered by reflection; file and hosted sources have no schema, and "
        "the command lists the rules that cover what their connector reads.",
    )
    inv.add_argument("--source", type=source_type, required=True)
    inv.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
    inv.add_argument("--json", action="store_true", help="print the inventory as JSON")
    inv.add_argument(
        "--fail-on-uncovered",
        action="store_true",
        help="exit 1 when any place holding patron data is not covered",
    )
    inv.set_defaults(func=cmd_inventory)

    rep = sub.add_parser(
        "patron-report",
        help="gather one patron's records into a package for that patron (JSON + HTML)",
        description="Gather every row the inventory links to one patron into a JSON file and "
        "an HTML page (mode 0600) for the library to hand to that patron, on their written "
        "consent. The warehouse logs the request (counts only, never the patron).",
    )
    rep.add_argument("--source", type=source_type, required=True)
    rep.add_argument("--patron", required=True, help="the patron's number in the source")
    rep.add_argument(
        "--consent-ref", required=True, help="reference of the patron's written consent"
    )
    rep.add_argument(
        "--out",
        default=None,
        help="directory for the files (default: <PATRON_PRIVACY_HOME>/exports/patron-reports)",
    )
    rep.set_defaults(func=cmd_patron_report)
