"""The demo library as an Evergreen database: ``demo-data --ils evergreen``.

Evergreen runs on PostgreSQL only, so there is no embedded default: ``evergreen_db`` must
name a PostgreSQL database, and it must be empty (the generator refuses to write next to
real data). The pseudonym keys are the demo's, as for Koha.
"""

from __future__ import annotations

from datetime import date

from patron_privacy import connections
from patron_privacy.facts import new_key_file
from patron_privacy.policy import load_policy
from patron_privacy.sources.evergreen import synthetic


def build_demo_library(
    *, patrons: int, years: int, seed: int, as_of: date | None, policy: str | None = None
) -> dict[str, int]:
    as_of = as_of or date.today()
    url = connections.sqlalchemy_url(connections.get_conn(connections.EVERGREEN_DB))
    if url.get_backend_name() != "postgresql":
        raise connections.ConnectionConfigError(
            f"connection {connections.EVERGREEN_DB}: Evergreen runs on PostgreSQL, "
            f"not {url.get_backend_name()} (set AIRFLOW_CONN_EVERGREEN_DB='postgres://...')"
        )
    engine = connections.engine_for_url(url)
    try:
        counts = synthetic.build_evergreen(
            engine,
            patrons=patrons,
            years=years,
            seed=seed,
            as_of=as_of,
            timezone=load_policy(policy).timezone,
        )
    finally:
        engine.dispose()
    periods = [str(y) for y in range(as_of.year - years - 12, as_of.year + 2)]
    new_key_file(connections.local_home() / "pseudonym_keys.json", periods)
    return counts
