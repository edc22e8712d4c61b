"""``python -m patron_privacy requests|holds|board-report``: the legal side, by hand.

Registered into the main parser by ``cli.build_parser``. Errors are raised as
exceptions with a one-line message (``cli.main`` prints ``error: ...`` and
exits 2); nothing is written when a command is refused. Output names no
patron: holds are listed with how many patrons they hold.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime

from patron_privacy.requests_register import DECISIONS, KINDS, label


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _table(head: tuple[str, ...], rows: list[tuple]) -> str:
    cells = [tuple("-" if v is None else str(v) for v in r) for r in rows]
    widths = [max(len(x[i]) for x in [head, *cells]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *cells]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fields(args) -> dict:
    """The register fields given on the command line (None = not given)."""
    pairs = {
        "received_on": args.received,
        "agency": args.agency,
        "kind": args.kind,
        "asks_for": args.asks_for,
        "referred_to": args.referred_to,
        "counsel_reviewed_on": args.counsel_reviewed,
        "decision": args.decision,
        "decided_on": args.decided,
        "records_released": args.records_released,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def cmd_requests_add(args) -> int:
    from patron_privacy import requests_register as rr  # noqa: PLC0415

    ref = rr.add_request(
        rr.warehouse_engine(), _fields(args), today=date.today(), recorded_at=datetime.now()
    )
    print(ref)
    return 0


def cmd_requests_update(args) -> int:
    from patron_privacy import requests_register as rr  # noqa: PLC0415

    rr.update_request(
        rr.warehouse_engine(),
        args.ref,
        _fields(args),
        today=date.today(),
        updated_at=datetime.now(),
    )
    print(f"{args.ref} updated")
    return 0


def cmd_requests_list(args) -> int:
    from patron_privacy import requests_register as rr  # noqa: PLC0415

    with rr.warehouse_engine().connect() as conn:
        rows = rr.list_requests(conn, open_only=args.open)
    if not rows:
        print("no requests in the register" + (" are open" if args.open else ""))
        return 0
    print(
        _table(
            ("ref", "received", "kind", "agency", "counsel", "decision", "decided", "released"),
            [
                (
                    r["ref"],
                    r["received_on"],
                    label(r["kind"]),
                    r["agency"],
                    r["counsel_reviewed_on"],
                    label(r["decision"]),
                    r["decided_on"],
                    r["records_released"],
                )
                for r in rows
            ],
        )
    )
    return 0


def cmd_requests_show(args) -> int:
    from patron_privacy import requests_register as rr  # noqa: PLC0415

    with rr.warehouse_engine().connect() as conn:
        req = rr.require_request(conn, args.ref)
        holds = rr.hold_counts(conn, args.ref)
        reviews = rr.reviews(conn, args.ref)
    names = {
        "received_on": "received",
        "agency": "agency",
        "kind": "kind",
        "asks_for": "asks for",
        "referred_to": "referred to",
        "counsel_reviewed_on": "counsel reviewed",
        "decision": "decision",
        "decided_on": "decided",
        "records_released": "records released",
    }
    print(f"request {req['ref']}")
    for key, name in names.items():
        value = req[key]
        if key in ("kind", "decision"):
            value = label(value)
        print(f"  {name + ':':18} {'-' if value is None else value}")
    print(
        f"  {'legal holds:':18} {holds.active} active holding {holds.patrons_held} patron(s), "
        f"{holds.released} released"
    )
    for r in reviews:
        extra = f", package of {r['package_records']} records" if r["outcome"] == "approved" else ""
        print(
            f"  {'release ' + r['outcome'] + ':':18} by {r['reviewed_by']} at "
            f"{r['reviewed_at']:%Y-%m-%d %H:%M}{extra}"
        )
    return 0


def cmd_holds_place(args) -> int:
    from patron_privacy import legal_holds  # noqa: PLC0415
    from patron_privacy.requests_register import warehouse_engine  # noqa: PLC0415

    categories = None
    if args.categories:
        categories = [c for group in args.categories for c in group.split(",")]
    hold = legal_holds.validate_hold(
        source=args.source,
        patron_ids=[p for group in args.patron or [] for p in group.split(",")],
        request_ref=args.request,
        categories=categories,
        date_from=args.date_from,
        date_to=args.date_to,
    )
    print(legal_holds.place(warehouse_engine(), hold, placed_at=datetime.now()))
    return 0


def cmd_holds_list(args) -> int:
    from patron_privacy import legal_holds  # noqa: PLC0415
    from patron_privacy.requests_register import warehouse_engine  # noqa: PLC0415

    with warehouse_engine().connect() as conn:
        rows = legal_holds.list_holds(conn)
    if not args.all:
        rows = [r for r in rows if r["released_at"] is None]
    if not rows:
        print("no active legal holds" if not args.all else "no legal holds")
        return 0
    print(
        _table(
            (
                "hold",
                "source",
                "request",
                "categories",
                "from",
                "to",
                "placed",
                "released",
                "patrons",
            ),
            [
                (
                    r["hold_id"],
                    r["source"],
                    r["request_ref"],
                    ",".join(r["categories"]) if r["categories"] else "all",
                    f"{r['date_from']:%Y-%m-%d}" if r["date_from"] else None,
                    f"{r['date_to']:%Y-%m-%d}" if r["date_to"] else None,
                    f"{r['placed_at']:%Y-%m-%d %H:%M}",
                    f"{r['released_at']:%Y-%m-%d %H:%M}" if r["released_at"] else None,
                    r["patrons"],
                )
                for r in rows
            ],
        )
    )
    return 0


def cmd_holds_release(args) -> int:
    from patron_privacy import legal_holds  # noqa: PLC0415
    from patron_privacy.requests_register import warehouse_engine  # noqa: PLC0415

    legal_holds.release(warehouse_engine(), args.hold_id, released_at=datetime.now())
    print(
        f"hold {args.hold_id} released; its patron list is deleted and retention resumes "
        "at the next run"
    )
    return 0


def cmd_board_report(args) -> int:
    from patron_privacy import board_report  # noqa: PLC0415

    board_report.month_bounds(args.month)
    out = board_report.write_report(args.month, args.out)
    print(out["html"])
    print(out["pdf"])
    print(
        f"{out['listed']} request(s): {out['received']} received, {out['closed']} closed, "
        f"{out['open_at_end']} open at month end"
    )
    return 0


def _request_fields(p: argparse.ArgumentParser, *, adding: bool) -> None:
    p.add_argument("--received", type=_date, required=adding, help="date received, YYYY-MM-DD")
    p.add_argument("--agency", required=adding, help="the requesting agency")
    p.add_argument(
        "--kind",
        required=adding,
        metavar="KIND",
        help=f"kind of demand: {', '.join(label(k) for k in KINDS)}",
    )
    p.add_argument(
        "--asks-for",
        required=adding,
        help="what it asks for, in words; never a patron's name, card number or contact",
    )
    p.add_argument("--referred-to", help="to whom the request was referred (CEO, designee)")
    p.add_argument("--counsel-reviewed", type=_date, help="date counsel reviewed it")
    p.add_argument(
        "--decision",
        metavar="DECISION",
        help=f"{', '.join(label(d) for d in DECISIONS)} (default pending)",
    )
    p.add_argument("--decided", type=_date, help="date of the decision")
    p.add_argument("--records-released", type=int, help="number of records released")


def add_commands(sub) -> None:
    """Add ``requests``, ``holds`` and ``board-report`` to the main parser's subcommands."""
    r = sub.add_parser(
        "requests",
        help="the register of law-enforcement requests",
        description="The register of law-enforcement requests (no patron identifiers).",
    )
    rsub = r.add_subparsers(dest="requests_command", required=True, metavar="ACTION")
    add = rsub.add_parser("add", help="record a new request; prints its reference")
    _request_fields(add, adding=True)
    add.set_defaults(func=cmd_requests_add)
    upd = rsub.add_parser("update", help="change fields of a request")
    upd.add_argument("ref")
    _request_fields(upd, adding=False)
    upd.set_defaults(func=cmd_requests_update)
    lst = rsub.add_parser("list", help="list requests")
    lst.add_argument("--open", action="store_true", help="only requests still pending")
    lst.set_defaults(func=cmd_requests_list)
    show = rsub.add_parser("show", help="one request, its holds (counted) and approvals")
    show.add_argument("ref")
    show.set_defaults(func=cmd_requests_show)

    h = sub.add_parser(
        "holds",
        help="legal holds: keep a patron's records while an order is pending",
        description="Legal holds. Patron ids go in, never come out: listings are counts.",
    )
    hsub = h.add_subparsers(dest="holds_command", required=True, metavar="ACTION")
    place = hsub.add_parser("place", help="place a hold; prints its id")
    place.add_argument("--source", required=True, help="source system, e.g. koha")
    place.add_argument(
        "--patron",
        action="append",
        metavar="ID",
        help="patron id in the source (repeatable, or comma separated)",
    )
    place.add_argument(
        "--categories",
        nargs="+",
        metavar="CATEGORY",
        help="record categories (space or comma separated; default: every category)",
    )
    place.add_argument("--from", dest="date_from", type=_date, help="first day covered")
    place.add_argument("--to", dest="date_to", type=_date, help="last day covered")
    place.add_argument("--request", required=True, help="the register reference it cites")
    place.set_defaults(func=cmd_holds_place)
    hl = hsub.add_parser("list", help="active holds, with how many patrons each holds")
    hl.add_argument("--all", action="store_true", help="released holds too")
    hl.set_defaults(func=cmd_holds_list)
    rel = hsub.add_parser("release", help="release a hold; retention resumes at the next run")
    rel.add_argument("hold_id", type=int)
    rel.set_defaults(func=cmd_holds_release)

    b = sub.add_parser(
        "board-report",
        help="the monthly report to the Board on law-enforcement requests (HTML and PDF)",
        description="Write the Board's monthly report on law-enforcement requests.",
    )
    b.add_argument("--month", required=True, help="YYYY-MM")
    b.add_argument("--out", default=None, help="directory (default: .local/exports/board_reports)")
    b.set_defaults(func=cmd_board_report)
