"""``python -m patron_privacy publish``: the statistics releases from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import date

EXIT_BLOCKED = 1
EXIT_ERROR = 2


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # validated (and refused with its field name) by the config rules


def add_parser(sub) -> None:
    p = sub.add_parser(
        "publish",
        help="publish the monthly or annual statistics release",
        description=(
            "Publish anonymized statistics: count in the warehouse, suppress small counts "
            "(with complements) or add differentially private noise, audit by linear "
            "programming, scan every output for personal data, then replace "
            "<exports>/<period>/ atomically. Exit 0 when published, 1 when the audit or the "
            "PII gate blocked it, 2 when it could not run (nothing is published)."
        ),
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--period", metavar="YYYY-MM", help="the monthly release for this month")
    which.add_argument("--year", metavar="YYYY", help="the annual release (state report)")
    which.add_argument(
        "--latest",
        action="store_true",
        help="the monthly release for the most recent complete month as of --as-of",
    )
    p.add_argument(
        "--as-of",
        type=_date,
        default=None,
        help="the day the release is made as of (default: today); the period must "
        "have ended by then",
    )
    p.add_argument(
        "--config",
        default=None,
        help="disclosure settings (default: include/config/disclosure.yaml)",
    )
    p.add_argument(
        "--preset",
        choices=None,
        default=None,
        help="default (1-4 suppressed) or strict (1-10 suppressed)",
    )
    p.add_argument(
        "--threshold",
        type=_number,
        default=None,
        help="the smallest count that may be shown (overrides the preset)",
    )
    p.add_argument(
        "--epsilon",
        type=_number,
        default=None,
        help="publish with differential privacy, spending this epsilon",
    )
    p.add_argument(
        "--dp",
        action="store_true",
        default=None,
        help="publish with differential privacy at the configured epsilon",
    )
    p.add_argument(
        "--out-dir",
        default=None,
        help="base folder for releases (default: "
        "exports.base_dir, or <PATRON_PRIVACY_HOME>/exports)",
    )
    p.add_argument("--policy", default=None, help="retention policy (library name, version)")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args) -> int:
    from patron_privacy.release import pii_gate  # noqa: PLC0415
    from patron_privacy.release.build import AuditFailed  # noqa: PLC0415
    from patron_privacy.release.config import DisclosureConfigError  # noqa: PLC0415
    from patron_privacy.release.publish import publish  # noqa: PLC0415
    from patron_privacy.release.tables import ReleaseInputError  # noqa: PLC0415

    if args.latest:
        from patron_privacy.release.tables import previous_month  # noqa: PLC0415

        kind, when = "month", previous_month(args.as_of or date.today()).label
    else:
        kind, when = ("month", args.period) if args.period else ("year", args.year)
    try:
        result = publish(
            kind,
            when,
            as_of=args.as_of,
            config_path=args.config,
            preset=args.preset,
            threshold=args.threshold,
            epsilon=args.epsilon,
            dp=args.dp,
            base_dir=args.out_dir,
            policy_path=args.policy,
        )
    except (ReleaseInputError, DisclosureConfigError, pii_gate.PiiGateUnavailable) as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        print("error: nothing was published", file=sys.stderr)
        return EXIT_ERROR
    except (AuditFailed, pii_gate.PiiFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BLOCKED
    print(result.summary())
    return 0
