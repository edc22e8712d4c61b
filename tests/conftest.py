"""Shared fixtures: isolated state per test, real database servers where asked."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

MARIADB_ROOT = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private PATRON_PRIVACY_HOME with no connection leaking in from the environment."""
    for key in list(os.environ):
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PATRON_PRIVACY_HOME", str(tmp_path / "local"))
    return tmp_path / "local"


@contextmanager
def _database(root_url: str, create: str, drop: str):
    """A fresh database (its name) on the server at ``root_url``, dropped afterwards."""
    name = f"pp_t_{uuid.uuid4().hex[:10]}"
    root = create_engine(root_url, isolation_level="AUTOCOMMIT")
    with root.connect() as c:
        c.execute(text(create.format(name)))
    try:
        yield name
    finally:
        with root.connect() as c:
            c.execute(text(drop.format(name)))
        root.dispose()


@contextmanager
def _mariadb_database():
    """A fresh MariaDB database (URL string), dropped afterwards."""
    create, drop = "CREATE DATABASE `{}` CHARACTER SET utf8mb4", "DROP DATABASE IF EXISTS `{}`"
    with _database(MARIADB_ROOT, create, drop) as name:
        yield f"{MARIADB_ROOT.rstrip('/')}/{name}?charset=utf8mb4"


@pytest.fixture
def mariadb_url():
    """A fresh MariaDB database for one test, dropped afterwards."""
    with _mariadb_database() as url:
        yield url


@pytest.fixture
def second_mariadb_url():
    """Another fresh MariaDB database on the same server, for tests of two at once."""
    with _mariadb_database() as url:
        yield url


POSTGRES_ROOT = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def _postgres_database():
    """A fresh PostgreSQL database (URL), dropped afterwards with whoever is still on it."""
    create, drop = 'CREATE DATABASE "{}"', 'DROP DATABASE IF EXISTS "{}" WITH (FORCE)'
    with _database(POSTGRES_ROOT, create, drop) as name:
        yield make_url(POSTGRES_ROOT).set(database=name)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with _postgres_database() as url:
        yield url


@pytest.fixture
def second_postgres_url():
    """Another fresh PostgreSQL database on the same server, for tests of two at once."""
    with _postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def postgres_module_url():
    """One PostgreSQL database per test module (``warehouse_db`` empties it per test)."""
    with _postgres_database() as url:
        yield url


def _empty_postgres_warehouse(url) -> None:
    """Migrated and emptied: earlier tests' sessions ended, every table truncated and its
    ids restarted, so a test sees what it would on a fresh SQLite file."""
    from patron_privacy.warehouse import create_warehouse, metadata

    eng = create_engine(url)
    try:
        with eng.begin() as c:
            # Engines the code under test left open would hold locks TRUNCATE waits for.
            c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        create_warehouse(eng)
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with eng.begin() as c:
            c.execute(text("SET LOCAL lock_timeout = '20s'"))
            c.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def warehouse_db(request, home, monkeypatch):
    """The warehouse on each backend it runs on: the embedded SQLite file under ``home``
    (the demo), or PostgreSQL (production) through ``AIRFLOW_CONN_WAREHOUSE_DB``, in a
    database shared by the module and emptied before each test. Yields the URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{home / 'warehouse.db'}"
        return
    url = request.getfixturevalue("postgres_module_url")
    _empty_postgres_warehouse(url)
    conn = url.set(drivername="postgres").render_as_string(hide_password=False)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", conn)  # Airflow's URI form
    from patron_privacy import connections

    assert connections.describe(connections.WAREHOUSE_DB).startswith("postgresql")
    yield url.render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def _no_logging_to_closed_streams():
    """Some imports (Airflow's logging set-up among them) bind a handler to the stderr
    of the test that first imported them; pytest closes that stream afterwards. Drop
    such handlers so a later test's output is not a logging traceback."""
    import logging

    yield
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for h in list(getattr(logger, "handlers", [])):
            stream = getattr(h, "stream", None)
            if stream is not None and getattr(stream, "closed", False):
                logger.removeHandler(h)
