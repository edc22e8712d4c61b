"""The warehouse's schema through Alembic, on SQLite (the demo) and PostgreSQL
(production): migrations produce exactly the tables the code declares (an ``alembic
check``: autogenerate finds nothing to do), an older ``create_all`` warehouse is adopted
with its rows, concurrent first use migrates once, and the CLI reports the revision."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from legal_builders import cli
from patron_privacy import warehouse
from patron_privacy.connections import engine_for_url
from sqlalchemy import Column, Integer, MetaData, inspect, select


@pytest.fixture
def fresh(request):
    """An engine on an empty database of each backend."""
    if request.param == "sqlite":
        tmp = request.getfixturevalue("tmp_path")
        eng = engine_for_url(f"sqlite:///{tmp / 'w.db'}")
    else:
        eng = engine_for_url(request.getfixturevalue("postgres_url"))
    yield eng
    eng.dispose()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
both = pytest.mark.parametrize("fresh", BACKENDS, indirect=True)


def differences(eng, target: MetaData = warehouse.metadata) -> list:
    with eng.connect() as c:
        ctx = MigrationContext.configure(
            c, opts={"compare_type": True, "version_table": warehouse.VERSION_TABLE}
        )
        return compare_metadata(ctx, target)


@both
def test_migrated_schema_matches_the_models(fresh):
    assert warehouse.migrate_warehouse(fresh) is True
    assert warehouse.current_revisions(fresh) == warehouse.head_revisions()
    assert differences(fresh) == []
    assert warehouse.migrate_warehouse(fresh) is False, "at head: nothing to do"


@both
def test_the_check_finds_a_model_change_without_a_migration(fresh):
    warehouse.create_warehouse(fresh)
    changed = MetaData()
    for t in warehouse.metadata.sorted_tables:
        if t.name != "dp_budget_ledger":
            t.to_metadata(changed)
    changed.tables["legal_holds"].append_column(Column("court", Integer))
    found = {(d[0], getattr(d[-1], "name", d[-1])) for d in differences(fresh, changed) if d}
    assert ("add_column", "court") in found
    assert ("remove_table", "dp_budget_ledger") in found


@both
def test_a_warehouse_made_before_migrations_is_adopted_with_its_rows(fresh):
    warehouse.metadata.create_all(fresh)
    with fresh.begin() as c:
        warehouse.place_hold(
            c,
            source="koha",
            patron_ids=["10"],
            request_ref="LE-2026-001",
            placed_at=datetime(2026, 11, 5, 9, 0),
        )
    assert warehouse.current_revisions(fresh) == frozenset()
    assert warehouse.migrate_warehouse(fresh) is True
    assert warehouse.current_revisions(fresh) == warehouse.head_revisions()
    with fresh.connect() as c:
        assert c.execute(select(warehouse.legal_holds.c.request_ref)).scalars().all() == [
            "LE-2026-001"
        ]
    assert differences(fresh) == []


@both
def test_downgrade_to_base_removes_every_table(fresh):
    warehouse.create_warehouse(fresh)
    with fresh.begin() as c:
        command.downgrade(warehouse._alembic_config(c), "base")
    assert set(inspect(fresh).get_table_names()) <= {warehouse.VERSION_TABLE}


@both
def test_parallel_first_use_migrates_once(fresh):
    """Parallel tasks on a fresh warehouse: one migrates under the lock, the rest wait."""
    results: list = []
    start = threading.Barrier(4)

    def use() -> None:
        start.wait()
        try:
            results.append(warehouse.migrate_warehouse(fresh, wait_s=120))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(repr, results)) == ["False", "False", "False", "True"], results
    assert differences(fresh) == []


def test_cli_upgrade_and_current(warehouse_db, capsys):
    rc, out, err = cli(capsys, "warehouse", "upgrade")
    assert rc == 0, err
    head = ",".join(sorted(warehouse.head_revisions()))
    assert out.strip().endswith(f"revision {head}")
    assert "password" not in out
    rc, out, _ = cli(capsys, "warehouse", "current")
    assert (rc, out.split()) == (0, ["current:", head, "newest:", head])
