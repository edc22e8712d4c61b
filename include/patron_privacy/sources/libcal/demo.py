"""The demo library's LibCal: a fixture under ``.local/sources/libcal/`` that the run
serves on 127.0.0.1 when no ``libcal_api`` connection is set (see ``connector.endpoint``)."""

from __future__ import annotations

from datetime import date

from patron_privacy import connections
from patron_privacy.sources.libcal.synthetic import write_libcal_fixture


def build_demo_libcal(*, seed: int, as_of: date, timezone: str = "America/New_York") -> dict:
    return write_libcal_fixture(
        connections.local_home() / "sources" / "libcal", seed=seed, as_of=as_of, timezone=timezone
    )
