"""Shared pieces for the legal-hold, request-register and board-report tests: a Koha
source and pseudonym keys in a private PATRON_PRIVACY_HOME, a canary patron whose
values must never reach the register, reports or logs, and the CLI run in-process."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from koha_builders import AS_OF, add_old_issue, add_patron, make_koha
from patron_privacy import connections, requests_register
from patron_privacy.cli import main
from patron_privacy.facts import new_key_file

TODAY = date(2026, 11, 30)

# A patron whose every value is distinctive enough to search for in any artifact.
CANARY_BN = 48213977
CANARY = {
    "cardnumber": "29990048213977",
    "userid": "oquillfeather",
    "surname": "Quillfeather",
    "firstname": "Ottoline",
    "email": "ottoline.quillfeather@example.org",
    "phone": "860-555-0199",
    "address": "4417 Wethersfield Avenue",
}


def canary_needles() -> list[str]:
    """Every canary value (the digits-only phone too), and the borrowernumber."""
    return [*CANARY.values(), "8605550199", str(CANARY_BN)]


def koha_home(home: Path):
    """The embedded Koha file and pseudonym keys under ``home``; returns the Koha engine."""
    eng = connections.engine_for(connections.KOHA_DB)
    make_koha(eng)
    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2018, 2028)])
    return eng


def add_canary(conn, **kw) -> None:
    add_patron(conn, CANARY_BN, **{**CANARY, **kw})


FRESH_PATRON = 90


def add_fresh_loan(conn, issue_id: int = 900) -> None:
    """A loan returned the day before the as-of, by its own patron: validation's freshness
    check wants one (and it is inside its window, so no run touches it)."""
    add_patron(conn, FRESH_PATRON)
    add_old_issue(conn, issue_id, FRESH_PATRON, AS_OF - timedelta(days=1), item=150)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m patron_privacy ARGS`` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse refusals
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def new_request(**overrides) -> str:
    """A subpoena reviewed by counsel, pending: ready for a hold and a disclosure."""
    record = {
        "received_on": date(2026, 11, 3),
        "agency": "Hartford Police Department",
        "kind": "subpoena",
        "asks_for": "loan history of one patron named in the subpoena, Sept-Oct 2026",
        "referred_to": "CEO",
        "counsel_reviewed_on": date(2026, 11, 5),
    } | overrides
    return requests_register.add_request(
        requests_register.warehouse_engine(),
        record,
        today=TODAY,
        recorded_at=datetime(2026, 11, 5, 9, 0),
    )
