"""The Koha schema and synthetic library on a real MariaDB, where foreign keys, ENUMs,
TIMESTAMP columns and index prefix lengths are enforced as in production Koha."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from patron_privacy.sources.koha import schema
from patron_privacy.sources.koha.synthetic import build_koha, build_koha_from_url
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("koha_schema_mariadb")]

ROOT_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
ARGS = {"patrons": 200, "years": 1, "seed": 11, "as_of": dt.date(2025, 1, 31)}
T = schema.metadata.tables


@pytest.fixture(scope="module")
def mariadb():
    """A fresh database for this module, always dropped afterwards."""
    name = f"pp_test_{uuid.uuid4().hex[:12]}"
    root = create_engine(ROOT_URL)
    try:
        with root.begin() as c:
            c.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
    except OperationalError as exc:  # no server: nothing here can be checked
        root.dispose()
        pytest.skip(f"MariaDB not reachable at {ROOT_URL}: {exc.orig}")
    url = f"{ROOT_URL.rstrip('/')}/{name}?charset=utf8mb4"
    try:
        yield url
    finally:
        with root.begin() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        root.dispose()


@pytest.fixture(scope="module")
def built(mariadb):
    counts = build_koha_from_url(mariadb, **ARGS)
    engine = create_engine(mariadb)
    yield engine, counts
    engine.dispose()


def test_counts_match_the_database(built):
    engine, counts = built
    assert set(counts) == set(T)
    with engine.connect() as c:
        for name, table in T.items():
            assert c.execute(select(func.count()).select_from(table)).scalar() == counts[name]
    assert counts["borrowers"] + counts["deletedborrowers"] == ARGS["patrons"] + 1
    assert counts["old_issues"] > 2000
    assert counts["issues"] > 0
    assert counts["statistics"] > counts["old_issues"]


def test_same_library_as_on_sqlite(built, tmp_path):
    engine, counts = built
    lite = create_engine(f"sqlite:///{tmp_path / 'same.db'}")
    try:
        assert build_koha(lite, **ARGS) == counts
        for name in ("borrowers", "old_issues", "accountlines", "message_queue"):
            table = T[name]
            query = select(table).order_by(*table.primary_key.columns)
            with engine.connect() as m, lite.connect() as s:
                assert m.execute(query).all() == s.execute(query).all(), name
    finally:
        lite.dispose()


def test_real_koha_ddl_details(built):
    engine, _ = built
    with engine.connect() as c:
        ddl = c.execute(text("SHOW CREATE TABLE old_issues")).one()[1]
        assert "`issue_id` int(11) NOT NULL," in ddl  # not auto-increment
        assert "ON DELETE SET NULL" in ddl
        assert "ON UPDATE current_timestamp()" in ddl
        ddl = c.execute(text("SHOW CREATE TABLE borrowers")).one()[1]
        assert "UNIQUE KEY `cardnumber`" in ddl and "UNIQUE KEY `userid`" in ddl
        assert "ENGINE=InnoDB" in ddl and "utf8mb4" in ddl
        assert c.execute(text("SHOW KEYS FROM statistics WHERE Key_name = 'PRIMARY'")).all() == []
        anon = c.execute(
            text(
                "SELECT b.surname FROM systempreferences s JOIN borrowers b "
                "ON b.borrowernumber = CAST(s.value AS UNSIGNED) "
                "WHERE s.variable = 'AnonymousPatron'"
            )
        ).scalar()
        assert anon == "Anonymous"


def test_create_schema_is_idempotent_and_build_refuses_a_filled_database(built, mariadb):
    engine, counts = built
    schema.create_schema(engine)
    with pytest.raises(ValueError, match="non-empty"):
        build_koha(engine, **ARGS)
    with engine.connect() as c:
        assert (
            c.execute(select(func.count()).select_from(T["borrowers"])).scalar()
            == (counts["borrowers"])
        )
