"""The personal-data inventory for Evergreen (PostgreSQL) and Libki (MariaDB): discovery by
reflection on each system's schema as this project models it, the shipped policy
classifying every place, and a table added by an upgrade failing ``--fail-on-uncovered``."""

from __future__ import annotations

import json
import uuid

import pytest
from evergreen_builders import airflow_uri, engine_for, pg_database
from patron_privacy.cli import main
from patron_privacy.inventory import COVERED, KEPT, build_report, discover
from patron_privacy.sources.evergreen import schema as evergreen_schema
from patron_privacy.sources.evergreen.connector import INVENTORY as EVERGREEN
from patron_privacy.sources.libki import schema as libki_schema
from patron_privacy.sources.libki.connector import INVENTORY as LIBKI
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.integration


def _links(places, kind):
    return {(n, x.column) for n, p in places.items() for x in p.links if x.kind == kind}


# --- Evergreen --------------------------------------------------------------------------------


@pytest.fixture
def evergreen_url():
    with pg_database("pp_inv") as url:
        engine = engine_for(url)
        evergreen_schema.create_schema(engine)
        engine.dispose()
        yield url


def test_evergreen_discovery_finds_keys_keyless_columns_and_personal_fields(evergreen_url):
    engine = engine_for(evergreen_url)
    try:
        places = discover(engine, EVERGREEN)
    finally:
        engine.dispose()
    assert places["actor.usr"].links[0].kind == "patron key"
    assert {
        ("action.circulation", "usr"),
        ("action.hold_request", "usr"),
        ("action.hold_request", "requestor"),
        ("actor.card", "usr"),
        ("actor.usr_address", "usr"),
        ("actor.usr_setting", "usr"),
        ("actor.usr_activity", "usr"),
        ("money.billable_xact", "usr"),
    } <= _links(places, "foreign key")
    # PostgreSQL does not inherit foreign keys: the grocery bill names its patron keylessly.
    assert ("money.grocery", "usr") in _links(places, "keyless")
    assert ("action.circulation", "circ_staff") in _links(places, "keyless")
    usr = places["actor.usr"].personal
    assert usr["family_name"] == "name" and usr["first_given_name"] == "name"
    assert usr["day_phone"] == "phone" and usr["dob"] == "birth date"
    assert usr["usrname"] == "login" and usr["ident_value"] == "identifier"
    assert places["actor.card"].personal["barcode"] == "identifier"
    assert places["actor.usr_address"].personal["post_code"] == "address"
    # Catalogue tables with no user id are not places.
    assert "asset.copy_location" not in places and "config.internal_flag" not in places


def test_evergreen_shipped_policy_classifies_every_place(evergreen_url):
    engine = engine_for(evergreen_url)
    try:
        report = build_report("evergreen", None, bind=engine)
    finally:
        engine.dispose()
    assert report.uncovered == [] and report.coverage_pct == 100.0
    status = {c.place.table: c for c in report.places}
    assert status["actor.usr"].by == ["expired_patrons"]
    # The patron purge deletes cards, addresses and settings: those tables are covered by it.
    for table in ("actor.card", "actor.usr_address", "actor.usr_setting"):
        assert status[table].status == COVERED and status[table].by == ["expired_patrons"]
    assert status["money.grocery"].by == ["settled_bills"]
    assert status["money.billable_xact"].status == KEPT


def test_evergreen_table_added_by_an_upgrade_fails_the_cli(evergreen_url, monkeypatch, capsys):
    engine = engine_for(evergreen_url)
    try:
        with engine.begin() as c:
            c.execute(
                text(
                    "CREATE TABLE actor.usr_message_extra (id serial PRIMARY KEY, "
                    "usr integer REFERENCES actor.usr (id), message text)"
                )
            )
    finally:
        engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_EVERGREEN_DB", airflow_uri(evergreen_url))
    assert main(["inventory", "--source", "evergreen", "--fail-on-uncovered"]) == 1
    captured = capsys.readouterr()
    assert "actor.usr_message_extra" in captured.err
    assert main(["inventory", "--source", "evergreen", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["uncovered_tables"] == ["actor.usr_message_extra"]
    assert data["places"] - data["not_covered"] == data["covered"] + data["kept_on_purpose"]


# --- Libki ------------------------------------------------------------------------------------


@pytest.fixture
def libki_url():
    server = "mysql+pymysql://root@127.0.0.1:3306/"
    name = f"pp_inv_{uuid.uuid4().hex[:10]}"
    root = create_engine(server)
    with root.begin() as c:
        c.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        engine = create_engine(f"{server}{name}?charset=utf8mb4")
        libki_schema.create_schema(engine)
        engine.dispose()
        yield f"{server}{name}?charset=utf8mb4"
    finally:
        with root.begin() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        root.dispose()


def test_libki_inventory_classifies_every_place_and_prints_no_values(
    libki_url, monkeypatch, capsys
):
    engine = create_engine(libki_url)
    try:
        with engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO users (id, username, password, firstname, lastname, status, "
                    "created_on) VALUES (7, 'zqxcanary.login', 'x', 'Zqxcanaryfirst', "
                    "'Zqxcanarylast', 'enabled', NOW())"
                )
            )
        places = discover(engine, LIBKI)
        report = build_report("libki", None, bind=engine)
    finally:
        engine.dispose()
    assert ("statistics", "username") in _links(places, "keyless")
    assert {("sessions", "user_id"), ("print_jobs", "user_id"), ("allotments", "user_id")} <= (
        _links(places, "foreign key")
    )
    assert places["users"].personal["lastname"] == "name"
    assert report.uncovered == [] and report.coverage_pct == 100.0
    status = {c.place.table: c.status for c in report.places}
    assert status["statistics"] == COVERED and status["transactions"] == KEPT

    host_url = libki_url.replace("mysql+pymysql://", "mysql://").split("?")[0]
    monkeypatch.setenv("AIRFLOW_CONN_LIBKI_DB", host_url)
    assert main(["inventory", "--source", "libki", "--fail-on-uncovered"]) == 0
    out = capsys.readouterr()
    assert "(100.0%)" in out.out
    assert "zqxcanary" not in (out.out + out.err).lower()

    engine = create_engine(libki_url)
    try:
        with engine.begin() as c:
            c.execute(
                text(
                    "CREATE TABLE user_notes (id int PRIMARY KEY, user_id int, note text, "
                    "FOREIGN KEY (user_id) REFERENCES users (id))"
                )
            )
    finally:
        engine.dispose()
    assert main(["inventory", "--source", "libki", "--fail-on-uncovered"]) == 1
    assert "user_notes" in capsys.readouterr().err


# --- a patron's own records, from each source ---------------------------------------------------


def _package(out) -> dict[str, list[dict]]:
    from pathlib import Path

    pkg = json.loads(Path(out["json"]).read_text())
    return {t["table"]: t["rows"] for t in pkg["tables"]}


def test_libki_patron_report_has_that_users_rows_and_nobody_elses(libki_url, tmp_path):
    from datetime import timedelta

    from libki_builders import AS_OF, add_reservation, add_stat, add_user, make_libki
    from patron_privacy.patron_report import make_patron_report

    engine = create_engine(libki_url)
    warehouse = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        make_libki(engine)
        with engine.begin() as c:
            mine = add_user(c, 10)
            theirs = add_user(c, 11)
            add_stat(c, 1, mine, AS_OF - timedelta(days=1))
            add_stat(c, 2, theirs, AS_OF - timedelta(days=1))
            add_reservation(c, 1, 10, AS_OF + timedelta(hours=1))
            add_reservation(c, 2, 11, AS_OF + timedelta(hours=1), client_id=2)
        out = make_patron_report(
            "libki", "10", "CR-7", tmp_path / "out", bind=engine, warehouse=warehouse
        )
    finally:
        engine.dispose()
        warehouse.dispose()
    rows = _package(out)
    assert [r["id"] for r in rows["users"]] == [10]
    assert [r["username"] for r in rows["statistics"]] == [mine]
    assert [r["user_id"] for r in rows["reservations"]] == [10]
    assert theirs not in json.dumps(rows)


def test_evergreen_patron_report_has_that_patrons_rows_and_nobody_elses(evergreen_url, tmp_path):
    from evergreen_builders import AS_OF, add_circ, add_patron, make_evergreen
    from patron_privacy.patron_report import make_patron_report

    engine = engine_for(evergreen_url)
    warehouse = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        make_evergreen(engine)
        with engine.begin() as c:
            add_patron(c, 10)
            add_patron(c, 11)
            add_circ(c, 1, 10, AS_OF)
            add_circ(c, 2, 11, AS_OF, copy=2)
        out = make_patron_report(
            "evergreen", "10", "CR-8", tmp_path / "out", bind=engine, warehouse=warehouse
        )
    finally:
        engine.dispose()
        warehouse.dispose()
    rows = _package(out)
    assert [r["id"] for r in rows["actor.usr"]] == [10]
    assert [r["usr"] for r in rows["action.circulation"]] == [10]
    assert {r["usr"] for r in rows["actor.card"]} == {10}
