"""Libki's own tables, as SQLAlchemy Core, for the parts of Libki that hold patron data.

Written from the facts of Libki's ``installer/schema.sql`` (libki-server 5.x): table and
column names, types, nullability, defaults, keys and foreign keys with their ON DELETE
rules — deleting a user cascades to its sessions, reservations, print jobs, allotments,
messages, roles and payment transactions, and sets ``print_files.user_id`` to NULL
(the file keeps its ``username``). The connector, the synthetic library and the tests
all build on this module, so a query that passes here runs against a real Libki.

Deliberate differences from Libki, each because this subset must also create on SQLite
or because the retention clock needs it:

* Tables no retention rule reads are left out (``client_age_limits``, ``closing_hours``,
  ``jobs``, the location hours tables).
* SQLite index names are database-wide, so every index name starts with its table's.
* Indexes Libki does not have, on the columns the retention clocks scan (suffix
  ``_retention_idx``): ``statistics.created_on``, ``statistics.session_id`` (a session's
  end is found through it), ``statistics (instance, username)`` (an account's last
  activity), ``print_jobs.created_on``, ``print_files.created_on``.
* ``... ON UPDATE current_timestamp()`` columns are plain ``DEFAULT CURRENT_TIMESTAMP``
  on SQLite; on MariaDB the ``ON UPDATE`` clause is added after creation, as in Libki.
* Libki's tables are ``utf8mb3`` (its ``statistics.info`` is ``utf8mb4_bin`` JSON with a
  ``json_valid`` check); kept on MariaDB, irrelevant on SQLite.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Engine,
    Enum,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

_MYSQL = ("mysql", "mariadb")
_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb3",
    "mysql_collate": "utf8mb3_unicode_ci",
}
YES_NO = ("Yes", "No")


def _mediumtext() -> Text:
    return Text().with_variant(mysql.MEDIUMTEXT(), *_MYSQL)


def _longtext() -> Text:
    return Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def _longblob() -> LargeBinary:
    return LargeBinary().with_variant(mysql.LONGBLOB(), *_MYSQL)


def _timestamp() -> DateTime:
    # TIMESTAMP on MariaDB (Libki's type for these columns), DATETIME elsewhere.
    return DateTime().with_variant(mysql.TIMESTAMP(), *_MYSQL)


def _tinyint1() -> SmallInteger:
    return SmallInteger().with_variant(mysql.TINYINT(display_width=1), *_MYSQL)


def _yes_no(name: str) -> Column:
    return Column(name, Enum(*YES_NO, name=f"{name}_enum"), nullable=False, server_default="No")


def _instance() -> Column:
    return Column("instance", String(32), nullable=False, server_default="")


def _created() -> Column:
    return Column("created_on", DateTime, nullable=False, server_default=func.current_timestamp())


def _updated() -> Column:
    return Column("updated_on", DateTime, nullable=False, server_default=func.current_timestamp())


def _table(name: str, *items, on_update: tuple[str, ...] = (), **kw) -> Table:
    table = Table(name, metadata, *items, **{**_TABLE_OPTIONS, **kw})
    for col in on_update:
        event.listen(
            table,
            "after_create",
            DDL(
                f"ALTER TABLE `{name}` MODIFY `{col}` DATETIME NOT NULL "
                "DEFAULT current_timestamp() ON UPDATE current_timestamp()"
            ).execute_if(dialect=_MYSQL),
        )
    return table


def _fk(name: str, col: str, ref: str, *, ondelete: str | None = None, onupdate=None):
    return ForeignKeyConstraint([col], [ref], name=name, ondelete=ondelete, onupdate=onupdate)


users = _table(
    "users",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Often the library card number (SIP and LDAP log in with it).
    Column("username", String(191), nullable=False),
    Column("password", String(191), nullable=False),
    Column("status", String(191), nullable=False),
    Column("notes", _mediumtext()),
    _yes_no("is_troublemaker"),
    Column("troublemaker_until", DateTime),
    _yes_no("is_guest"),
    Column("birthdate", Date),
    _created(),
    _updated(),
    Column("firstname", String(191), server_default=""),
    Column("lastname", String(191), server_default=""),
    Column("category", String(191), server_default=""),
    Column("creation_source", String(191)),
    Column("gratis_print_balance", Integer, nullable=False, server_default=text("0")),
    UniqueConstraint("instance", "username", name="unique_username"),
    on_update=("updated_on",),
)

roles = _table(
    "roles",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("role", _mediumtext()),
)

user_roles = _table(
    "user_roles",
    Column("user_id", Integer, nullable=False, server_default=text("0")),
    Column("role_id", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("user_id", "role_id"),
    Index("user_roles_role_id", "role_id"),
    _fk("user_roles_ibfk_1", "user_id", "users.id", ondelete="CASCADE", onupdate="CASCADE"),
    _fk("user_roles_ibfk_2", "role_id", "roles.id", ondelete="CASCADE", onupdate="CASCADE"),
)

locations = _table(
    "locations",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(191), nullable=False),
    UniqueConstraint("instance", "code", name="unique_code"),
)

clients = _table(
    "clients",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(191), nullable=False),
    Column("location", String(191)),
    Column("status", String(191), server_default="online"),
    Column("type", String(191)),
    Column("ipaddress", String(191)),
    Column("macaddress", String(191)),
    Column("hostname", String(191)),
    Column("last_registered", _timestamp(), nullable=True),
    UniqueConstraint("instance", "name", name="name"),
)

sessions = _table(
    "sessions",
    _instance(),
    Column("client_id", Integer, nullable=False),
    Column("user_id", Integer, nullable=False),
    Column(
        "status",
        Enum("active", "locked", name="session_status_enum"),
        nullable=False,
        server_default="active",
    ),
    Column("minutes", Integer, nullable=False, server_default=text("0")),
    Column("session_id", String(72).with_variant(mysql.CHAR(72), *_MYSQL)),
    PrimaryKeyConstraint("client_id", "user_id"),
    UniqueConstraint("client_id", name="sessions_client_id"),
    UniqueConstraint("user_id", name="sessions_user_id"),
    _fk("sessions_ibfk_1", "client_id", "clients.id", ondelete="CASCADE"),
    _fk("sessions_ibfk_2", "user_id", "users.id", ondelete="CASCADE"),
)

reservations = _table(
    "reservations",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", Integer, nullable=False),
    Column("user_id", Integer, nullable=False),
    Column("begin_time", DateTime),
    Column("end_time", DateTime),
    UniqueConstraint("user_id", name="reservations_user_id"),
    _fk("reservations_ibfk_1", "client_id", "clients.id", ondelete="CASCADE", onupdate="CASCADE"),
    _fk("reservations_ibfk_2", "user_id", "users.id", ondelete="CASCADE", onupdate="CASCADE"),
)

statistics = _table(
    "statistics",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The patron's username for LOGIN/LOGOUT; a staff member's for admin actions.
    Column("username", String(191)),
    Column("client_name", String(191)),
    Column("client_location", String(191)),
    Column("client_type", String(191)),
    Column("action", String(191)),
    Column("created_on", _timestamp(), nullable=True),
    Column("anonymized", _tinyint1(), server_default=text("0")),
    Column("session_id", String(72).with_variant(mysql.CHAR(72), *_MYSQL)),
    # JSON: user ids, client ids, and for some actions usernames (USER_DELETE,
    # USERS_DELETE, FORCE_LOGOUT, SHUTDOWN, client statistics).
    Column(
        "info",
        Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL),
    ),
    CheckConstraint("info IS NULL OR json_valid(info)", name="statistics_info_json"),
    Index("statistics_instance", "instance"),
    Index("statistics_created_on_retention_idx", "created_on"),
    Index("statistics_session_id_retention_idx", "session_id"),
    Index("statistics_username_retention_idx", "instance", "username"),
)

print_files = _table(
    "print_files",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("filename", _mediumtext(), nullable=False),
    Column("content_type", String(191)),
    Column("data", _longblob()),
    Column("pages", Integer),
    Column("client_id", Integer),
    Column("client_name", String(191), nullable=False),
    Column("client_location", String(191)),
    Column("client_type", String(191)),
    Column("user_id", Integer),
    Column("username", String(191), nullable=False),
    _created(),
    _updated(),
    Index("print_files_created_on_retention_idx", "created_on"),
    _fk("print_files_ibfk_1", "client_id", "clients.id", ondelete="CASCADE", onupdate="CASCADE"),
    _fk("print_files_ibfk_2", "user_id", "users.id", ondelete="SET NULL", onupdate="CASCADE"),
    on_update=("updated_on",),
)

print_jobs = _table(
    "print_jobs",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(191), nullable=False),
    Column("status", String(191), nullable=False),
    Column("copies", Integer),
    Column("data", _mediumtext()),
    Column("printer", String(191), nullable=False),
    Column("user_id", Integer),
    Column("print_file_id", Integer),
    _created(),
    _updated(),
    Column("released_on", _timestamp(), nullable=True),
    Column("queued_on", DateTime),
    Column("queued_to", String(191)),
    Index("print_jobs_created_on_retention_idx", "created_on"),
    _fk(
        "print_jobs_ibfk_1",
        "print_file_id",
        "print_files.id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk("print_jobs_ibfk_2", "user_id", "users.id", ondelete="CASCADE", onupdate="CASCADE"),
    on_update=("updated_on",),
)

allotments = _table(
    "allotments",
    _instance(),
    Column("user_id", Integer, nullable=False),
    Column("location", String(191), nullable=False),
    Column("minutes", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("user_id", "location"),
    _fk("allotments_ibfk_1", "user_id", "users.id", ondelete="CASCADE", onupdate="CASCADE"),
)

messages = _table(
    "messages",
    _instance(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False),
    Column("content", _mediumtext(), nullable=False),
    _fk("messages_ibfk_1", "user_id", "users.id", ondelete="CASCADE", onupdate="CASCADE"),
)

transactions = _table(
    "transactions",
    Column("id", Integer, primary_key=True, autoincrement=True),
    _instance(),
    Column("user_id", Integer, nullable=False),
    Column("provider", String(32), nullable=False),
    Column("provider_payment_id", String(128)),
    Column("amount_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("status", String(32), nullable=False),
    Column("notes", _longtext()),
    _created(),
    _updated(),
    UniqueConstraint("instance", "provider", "provider_payment_id", name="uniq_provider_payment"),
    _fk("user_transactions_ibfk_1", "user_id", "users.id", ondelete="CASCADE", onupdate="CASCADE"),
    on_update=("updated_on",),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_unicode_ci",
)

settings = _table(
    "settings",
    _instance(),
    Column("name", String(191), nullable=False),
    Column("value", _mediumtext(), nullable=False),
    PrimaryKeyConstraint("instance", "name"),
)

logs = _table(
    "logs",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("instance", String(32), server_default=""),
    _created(),
    Column("pid", String(10), nullable=False, server_default=""),
    Column("hostname", String(100), nullable=False, server_default=""),
    Column("level", String(10), nullable=False, server_default=""),
    Column("message", Text, nullable=False),
    Index("logs_created_on_idx", "created_on"),
)

login_sessions = _table(
    "login_sessions",
    Column("id", String(72).with_variant(mysql.CHAR(72), *_MYSQL), primary_key=True),
    Column("session_data", _mediumtext()),
    Column("expires", Integer),
)

# Libki's statistics actions (from its code), and the ones that end a client session.
ACTIONS = (
    "LOGIN",
    "LOGOUT",
    "SESSION_DELETED",
    "FORCE_LOGOUT",
    "RESERVATION",
    "MODIFY_TIME",
    "MODIFY_BALANCE",
    "GRATIS_DISCOUNT",
    "UNLOCK",
    "TOGGLE_STATUS",
    "DELETE",
    "SHUTDOWN",
    "RESTART",
    "SHUTDOWN_ALL",
    "RESTART_ALL",
    "WAKEUP_ALL",
    "USER_DELETE",
    "USERS_DELETE",
    "ADMIN_LOGIN",
    "PRINT_JOB_CREATED",
    "PRINT_JOB_RELEASED",
    "PRINT_JOB_CANCELED",
)
SESSION_END_ACTIONS = ("LOGOUT", "SESSION_DELETED")

# Columns that identify a person (the connector never reads them into facts or logs).
PERSONAL_COLUMNS = {
    "users": ("username", "password", "notes", "birthdate", "firstname", "lastname"),
    "statistics": ("username", "info"),
    "print_files": ("filename", "data", "username"),
    "print_jobs": ("data",),
    "messages": ("content",),
    "transactions": ("notes", "provider_payment_id"),
    "login_sessions": ("session_data",),
    "logs": ("message",),
}


def create_schema(engine: Engine) -> None:
    """Create every table that is missing; existing tables are left untouched."""
    metadata.create_all(engine, checkfirst=True)


def drop_schema(engine: Engine) -> None:
    metadata.drop_all(engine, checkfirst=True)
