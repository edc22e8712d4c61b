"""The demo library: synthetic sources under ``.local/`` and their keys.

A second ``make demo`` must never trip over the first, so an SQLite source
is built into a temporary file and swapped in atomically; a server database
is rebuilt only when it is empty or was built by this command.
"""

from __future__ import annotations

import os
from datetime import date

from sqlalchemy import inspect

from patron_privacy import connections
from patron_privacy.facts import new_key_file
from patron_privacy.sources.koha import synthetic


def build_demo_library(*, patrons: int, years: int, seed: int, as_of: date | None) -> dict:
    as_of = as_of or date.today()
    url = connections.sqlalchemy_url(connections.get_conn(connections.KOHA_DB))
    if url.get_backend_name() == "sqlite":
        target = url.database
        tmp = f"{target}.building"
        for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
            if os.path.exists(leftover):
                os.remove(leftover)
        engine = connections.engine_for_url(url.set(database=tmp))
        counts = synthetic.build_koha(engine, patrons=patrons, years=years, seed=seed, as_of=as_of)
        engine.dispose()
        for stale in (f"{target}-wal", f"{target}-shm"):
            if os.path.exists(stale):
                os.remove(stale)
        os.replace(tmp, target)
    else:
        engine = connections.engine_for_url(url)
        if inspect(engine).get_table_names():
            raise RuntimeError(
                f"koha_db ({url.render_as_string(hide_password=True)}) is not empty; "
                "demo-data only builds into an empty database"
            )
        counts = synthetic.build_koha(engine, patrons=patrons, years=years, seed=seed, as_of=as_of)
    periods = [str(y) for y in range(as_of.year - years - 1, as_of.year + 2)]
    new_key_file(connections.local_home() / "pseudonym_keys.json", periods)
    # Issue 4's file sources: sign-up and registration exports, Squid logs.
    from patron_privacy.files.demo import build_file_sources  # noqa: PLC0415

    counts.update(build_file_sources(seed=seed, as_of=as_of))
    # Issue 4: Libki (public computers, libki_db) and LibCal (a local fixture of the API).
    from patron_privacy.sources.libcal.demo import build_demo_libcal  # noqa: PLC0415
    from patron_privacy.sources.libki.demo import build_demo_libki  # noqa: PLC0415

    counts.update(
        {
            f"libki.{t}": n
            for t, n in build_demo_libki(
                patrons=max(patrons // 5, 40), seed=seed, as_of=as_of
            ).items()
        }
    )
    counts.update({f"libcal {k}": n for k, n in build_demo_libcal(seed=seed, as_of=as_of).items()})
    return counts
