"""The demo's Libki and LibCal: deterministic per seed, under ``.local/sources/`` with names
that say which system they are, and the LibCal step runs on the fixture by itself (no
connection set) the way ``make demo`` runs it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date, datetime

from patron_privacy import connections
from patron_privacy.cli import main
from patron_privacy.facts import new_key_file
from patron_privacy.sources.libcal.connector import run_libcal
from patron_privacy.sources.libcal.demo import build_demo_libcal
from patron_privacy.sources.libcal.fixture import FIXTURE_FILE
from patron_privacy.sources.libcal.synthetic import build_libcal_fixture
from patron_privacy.sources.libki.demo import build_demo_libki
from patron_privacy.sources.libki.synthetic import build_libki

AS_OF = date(2026, 11, 30)


def _dump(path) -> str:
    with closing(sqlite3.connect(path)) as c:
        return "\n".join(c.iterdump())


def test_libki_is_deterministic_per_seed(tmp_path):
    dumps = []
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        eng = connections.engine_for_url(f"sqlite:///{tmp_path / name}.db")
        build_libki(eng, patrons=50, days=30, seed=seed, as_of=AS_OF)
        eng.dispose()
        dumps.append(_dump(tmp_path / f"{name}.db"))
    assert dumps[0] == dumps[1] and dumps[0] != dumps[2]


def test_libcal_fixture_is_deterministic_per_seed():
    a = build_libcal_fixture(days=60, seed=4, as_of=AS_OF)
    b = build_libcal_fixture(days=60, seed=4, as_of=AS_OF)
    c = build_libcal_fixture(days=60, seed=5, as_of=AS_OF)
    assert (a.events, a.registrations, a.client_secret) == (
        b.events,
        b.registrations,
        b.client_secret,
    )
    assert a.events != c.events


def test_the_demo_sources_and_their_runs(home, capsys):
    libki = build_demo_libki(patrons=60, seed=11, as_of=AS_OF, days=40)
    libcal = build_demo_libcal(seed=11, as_of=AS_OF)
    assert (home / "sources" / "libki.db").exists()
    assert (home / "sources" / "libcal" / FIXTURE_FILE).exists()
    assert libki["statistics"] > 0 and libcal["registrations"] > 0
    # A second build starts clean (make demo twice).
    assert build_demo_libki(patrons=60, seed=11, as_of=AS_OF, days=40) == libki
    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2022, 2028)])

    out = run_libcal(datetime(2026, 11, 30), "demo-lc")
    assert out["errors"] == [] and out["facts_recorded"] > 100
    assert out["findings"] > 0  # the demo vendor still holds registrations past the window
    assert main(["libcal", "--as-of", "2026-11-30", "--run-id", "demo-lc2"]) == 1
    printed = capsys.readouterr()
    assert "program facts recorded" in printed.out
    assert "registration(s) past their window" in printed.err
