"""Shared fixtures: isolated state per test, real database servers where asked."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

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


@pytest.fixture
def mariadb_url():
    """A fresh MariaDB database for one test, dropped afterwards."""
    name = f"pp_t_{uuid.uuid4().hex[:10]}"
    root = create_engine(MARIADB_ROOT)
    with root.begin() as c:
        c.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield f"{MARIADB_ROOT.rstrip('/')}/{name}?charset=utf8mb4"
    finally:
        with root.begin() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        root.dispose()


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
