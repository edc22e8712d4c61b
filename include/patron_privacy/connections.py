"""Airflow connections, resolved the same way inside and outside Airflow.

The DAGs and the CLI must reach the same databases from the same settings, so
both read connections by their fixed ids (``koha_db``, ``warehouse_db``, ...)
from ``AIRFLOW_CONN_<ID>`` in either of Airflow's two forms (URI or JSON).
Inside a running task the Airflow SDK is asked as well, so a secrets backend
or the metadata database works too. Only the embedded defaults (the demo's
SQLite files under ``.local/``) are used when nothing else names a connection.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy import URL, Engine, create_engine, event

KOHA_DB = "koha_db"
WAREHOUSE_DB = "warehouse_db"
LIBKI_DB = "libki_db"
LIBCAL_API = "libcal_api"
EVERGREEN_DB = "evergreen_db"
PSEUDONYM_KEYS = "pseudonym_keys"


class ConnectionConfigError(RuntimeError):
    """A connection id that cannot be resolved or used; the message names it."""


@dataclass(frozen=True)
class Conn:
    conn_id: str
    conn_type: str
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    port: int | None = None
    extra: dict = field(default_factory=dict, repr=False)


def local_home() -> Path:
    """Where demo state lives; ``PATRON_PRIVACY_HOME`` moves it (tests use tmp dirs)."""
    return Path(os.environ.get("PATRON_PRIVACY_HOME", ".local")).resolve()


def _embedded_default(conn_id: str) -> Conn | None:
    home = local_home()
    defaults = {
        WAREHOUSE_DB: home / "warehouse.db",
        KOHA_DB: home / "sources" / "koha.db",
        LIBKI_DB: home / "sources" / "libki.db",
    }
    if conn_id in defaults:
        return Conn(conn_id, "sqlite", host=str(defaults[conn_id]))
    keys = home / "pseudonym_keys.json"
    if conn_id == PSEUDONYM_KEYS and keys.exists():
        return Conn(conn_id, "generic", extra=json.loads(keys.read_text()))
    return None


def parse_conn(conn_id: str, value: str) -> Conn:
    """Parse one ``AIRFLOW_CONN_*`` value in Airflow's JSON or URI form."""
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConnectionConfigError(
                f"connection {conn_id}: JSON form is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        if "conn_type" not in data:
            raise ConnectionConfigError(f"connection {conn_id}: JSON form lacks conn_type")
        return Conn(
            conn_id,
            data["conn_type"],
            host=data.get("host"),
            login=data.get("login"),
            password=data.get("password"),
            schema=data.get("schema"),
            port=int(data["port"]) if data.get("port") else None,
            extra=extra,
        )
    parts = urlsplit(value)
    if not parts.scheme:
        raise ConnectionConfigError(f"connection {conn_id}: URI form lacks a scheme")
    conn_type = parts.scheme.replace("-", "_")
    extra = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        extra = json.loads(extra["__extra__"])
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    return Conn(
        conn_id,
        conn_type,
        host=unquote(parts.hostname) if parts.hostname else None,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=path or None,
        port=parts.port,
        extra=extra,
    )


def _from_airflow(conn_id: str) -> Conn | None:
    """Ask the Airflow SDK; only meaningful inside a task, so any failure means 'not there'."""
    try:
        from airflow.sdk import Connection  # noqa: PLC0415 - optional at run time
    except ImportError:
        return None
    try:
        c = Connection.get(conn_id)
    except Exception:  # noqa: BLE001 - outside a task the SDK has no backend to ask
        return None
    return Conn(
        conn_id,
        c.conn_type,
        host=c.host,
        login=c.login,
        password=c.password,
        schema=c.schema,
        port=c.port,
        extra=c.extra_dejson,
    )


def is_defined(conn_id: str) -> bool:
    """Whether the library has this system: its connection is set, or its embedded file exists.

    An embedded SQLite default counts only when its file is there, so a library without
    that system is not mistaken for one whose system cannot be read.
    """
    if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") or _from_airflow(conn_id):
        return True
    found = _embedded_default(conn_id)
    return found is not None and (found.conn_type != "sqlite" or Path(found.host).exists())


def get_conn(conn_id: str) -> Conn:
    env = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if env:
        return parse_conn(conn_id, env)
    found = _from_airflow(conn_id) or _embedded_default(conn_id)
    if found is None:
        raise ConnectionConfigError(
            f"connection {conn_id} is not defined (set AIRFLOW_CONN_{conn_id.upper()})"
        )
    return found


_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
}


def sqlalchemy_url(conn: Conn) -> URL:
    if conn.conn_type == "sqlite":
        # Airflow's SQLite connection names its file in ``host``.
        path = conn.host or conn.schema
        if not path:
            raise ConnectionConfigError(f"connection {conn.conn_id}: sqlite needs a file in host")
        return URL.create("sqlite", database=path)
    driver = _DRIVERS.get(conn.conn_type)
    if driver is None:
        raise ConnectionConfigError(
            f"connection {conn.conn_id}: conn_type {conn.conn_type!r} is not a supported database"
        )
    query = {"charset": "utf8mb4"} if driver.startswith("mysql") else {}
    return URL.create(
        driver,
        username=conn.login,
        password=conn.password,
        host=conn.host,
        port=conn.port,
        database=conn.schema,
        query=query,
    )


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def engine_for_url(url: URL | str) -> Engine:
    url = url if isinstance(url, URL) else _parse_sa_url(url)
    if url.get_backend_name() == "sqlite":
        if url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, hide_parameters=True)
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    # hide_parameters: a statement's bound values (a held patron's id, say)
    # must never reach an exception text, and so a task log.
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _parse_sa_url(url: str) -> URL:
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    return make_url(url)


def engine_for(conn_id: str) -> Engine:
    return engine_for_url(sqlalchemy_url(get_conn(conn_id)))


def describe(conn_id: str) -> str:
    """A safe one-line description of where a connection points (no password)."""
    url = sqlalchemy_url(get_conn(conn_id))
    return url.render_as_string(hide_password=True)
