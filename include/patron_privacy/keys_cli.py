"""``python -m patron_privacy keys status``: which yearly pseudonym keys are held, which
are missing, and how many facts each year's key made — never a key.

Keys live in the ``pseudonym_keys`` connection (a secrets backend in production), which
this command cannot change: adding next year's key and destroying an old one are done
in the secrets store, by the procedure in docs/operations.md ("The pseudonym key").
This command says when to do the first (a year without a key stops the facts, and so
anonymization, of that year's records) and shows what the second would leave unlinkable.
"""

from __future__ import annotations

from datetime import date, timedelta

# How long before 1 January next year's key must be in place.
NEXT_KEY_NOTICE = timedelta(days=31)


def add_commands(sub) -> None:
    k = sub.add_parser(
        "keys",
        help="the yearly pseudonym keys: held, missing, facts per year (never a key)",
        description="The yearly pseudonym keys (connection pseudonym_keys); see "
        "docs/operations.md for rotating and destroying them.",
    )
    ksub = k.add_subparsers(dest="keys_command", required=True)
    st = ksub.add_parser(
        "status", help="exit 1 when this year's key, or next year's in December, is missing"
    )
    st.add_argument("--as-of", default=None, help="YYYY-MM-DD (default: today)")
    st.set_defaults(func=cmd_status)


def key_periods() -> list[str]:
    from patron_privacy.facts import Pseudonymizer  # noqa: PLC0415

    return sorted(Pseudonymizer.from_connection()._keys)  # noqa: SLF001 - names only


def missing_keys(periods: list[str], on: date) -> list[str]:
    """The periods whose key must exist on ``on`` and does not, with why."""
    out = []
    if str(on.year) not in periods:
        out.append(f"{on.year}: no key, and this year's facts cannot be recorded")
    if date(on.year + 1, 1, 1) - on <= NEXT_KEY_NOTICE and str(on.year + 1) not in periods:
        out.append(f"{on.year + 1}: no key yet, needed from {on.year + 1}-01-01")
    return out


def facts_per_period() -> dict[str, int]:
    from sqlalchemy import func, select  # noqa: PLC0415

    from patron_privacy import connections  # noqa: PLC0415
    from patron_privacy.warehouse import (  # noqa: PLC0415
        circulation_facts,
        create_warehouse,
        pc_session_facts,
    )

    engine = connections.engine_for(connections.WAREHOUSE_DB)
    counts: dict[str, int] = {}
    try:
        create_warehouse(engine)
        with engine.connect() as c:
            for t in (circulation_facts, pc_session_facts):
                q = (
                    select(t.c.reporting_period, func.count())
                    .where(t.c.patron_pseudonym.is_not(None))
                    .group_by(t.c.reporting_period)
                )
                for period, n in c.execute(q):
                    counts[period] = counts.get(period, 0) + int(n)
    finally:
        engine.dispose()
    return counts


def cmd_status(args) -> int:
    on = date.fromisoformat(args.as_of) if args.as_of else date.today()
    periods = key_periods()
    facts = facts_per_period()
    print(f"{'year':<6} {'key':<5} facts with a pseudonym")
    for p in sorted(set(periods) | set(facts)):
        print(f"{p:<6} {'held' if p in periods else 'gone':<5} {facts.get(p, 0)}")
    problems = missing_keys(periods, on)
    for line in problems:
        print(f"missing: {line}")
    return 1 if problems else 0
