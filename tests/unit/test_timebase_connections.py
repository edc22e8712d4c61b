"""Durations, the as-of instant, and connection ids resolved the Airflow way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from patron_privacy import connections
from patron_privacy.timebase import as_of_from_date, as_of_from_instant, parse_duration


@pytest.mark.parametrize(
    ("text", "cutoff"),
    [
        ("P30D", datetime(2026, 10, 31)),
        ("P1D", datetime(2026, 11, 29)),
        ("P1Y", datetime(2025, 11, 30)),
        ("P3Y", datetime(2023, 11, 30)),
        ("P180D", datetime(2026, 6, 3)),
        ("P2W", datetime(2026, 11, 16)),
        ("P1M", datetime(2026, 10, 30)),
        ("PT12H", datetime(2026, 11, 29, 12)),
        ("P0D", datetime(2026, 11, 30)),
    ],
)
def test_durations(text, cutoff):
    assert parse_duration(text).cutoff(datetime(2026, 11, 30)) == cutoff


@pytest.mark.parametrize("bad", ["30 days", "P", "PT", "1Y", "P-1D", "", None, 30, "P1.5D"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_as_of_date_is_local_midnight():
    assert as_of_from_date("2026-11-30", "America/New_York") == datetime(2026, 11, 30)


def test_as_of_instant_converts_to_library_time():
    # 07:30 UTC on 30 Nov is 02:30 in New York (EST, UTC-5).
    got = as_of_from_instant(datetime(2026, 11, 30, 7, 30, tzinfo=UTC), "America/New_York")
    assert got == datetime(2026, 11, 30, 2, 30)
    with pytest.raises(ValueError):
        as_of_from_instant(datetime(2026, 11, 30), "America/New_York")


def test_uri_form(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KOHA_DB", "mysql://root:s%40cret@127.0.0.1:3306/koha")
    c = connections.get_conn("koha_db")
    assert (c.conn_type, c.host, c.login, c.password, c.port, c.schema) == (
        "mysql",
        "127.0.0.1",
        "root",
        "s@cret",
        3306,
        "koha",
    )
    url = connections.sqlalchemy_url(c)
    assert url.drivername == "mysql+pymysql" and url.database == "koha"
    assert "s@cret" not in connections.describe("koha_db")


def test_json_form_sqlite_names_file_in_host(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DB", f'{{"conn_type": "sqlite", "host": "{tmp_path}/w.db"}}'
    )
    url = connections.sqlalchemy_url(connections.get_conn("warehouse_db"))
    assert url.drivername == "sqlite" and url.database == f"{tmp_path}/w.db"


def test_postgres_and_extra(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_EVERGREEN_DB",
        '{"conn_type": "postgres", "host": "db", "login": "eg", "schema": "evergreen",'
        ' "port": 5432, "extra": {"sslmode": "disable"}}',
    )
    c = connections.get_conn("evergreen_db")
    assert c.extra == {"sslmode": "disable"}
    assert connections.sqlalchemy_url(c).drivername == "postgresql+psycopg2"


def test_embedded_defaults_and_missing(home):
    c = connections.get_conn("warehouse_db")
    assert c.conn_type == "sqlite" and c.host == str(home / "warehouse.db")
    with pytest.raises(connections.ConnectionConfigError, match="evergreen_db"):
        connections.get_conn("evergreen_db")


def test_bad_json_names_the_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KOHA_DB", "{not json")
    with pytest.raises(connections.ConnectionConfigError, match="koha_db"):
        connections.get_conn("koha_db")
