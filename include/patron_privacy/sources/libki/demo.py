"""The demo library's Libki: ``.local/sources/libki.db`` (the embedded ``libki_db``).

Built into a temporary file and swapped in, so a second ``make demo`` never sees half
of the first; a server database (``AIRFLOW_CONN_LIBKI_DB`` set) is filled only when empty.
"""

from __future__ import annotations

import os
from datetime import date

from patron_privacy import connections
from patron_privacy.sources.libki import synthetic


def build_demo_libki(*, patrons: int, seed: int, as_of: date, days: int = 150) -> dict[str, int]:
    url = connections.sqlalchemy_url(connections.get_conn(connections.LIBKI_DB))
    if url.get_backend_name() != "sqlite":
        engine = connections.engine_for_url(url)
        try:
            return synthetic.build_libki(engine, patrons=patrons, days=days, seed=seed, as_of=as_of)
        finally:
            engine.dispose()
    target = url.database
    tmp = f"{target}.building"
    for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    engine = connections.engine_for_url(url.set(database=tmp))
    try:
        counts = synthetic.build_libki(engine, patrons=patrons, days=days, seed=seed, as_of=as_of)
    finally:
        engine.dispose()
    for stale in (f"{target}-wal", f"{target}-shm"):
        if os.path.exists(stale):
            os.remove(stale)
    os.replace(tmp, target)
    return counts
