"""Alembic environment for the warehouse.

``patron_privacy.warehouse.migrate_warehouse`` passes its own connection in
``config.attributes["connection"]``; run by hand (``alembic -c
include/patron_privacy/migrations/alembic.ini ...``) it resolves the ``warehouse_db``
connection the way the CLI does. SQLite cannot ALTER most things, so its migrations run
in batch mode (copy and rename), which the same revision files support.
"""

from __future__ import annotations

from alembic import context

from patron_privacy.warehouse import VERSION_TABLE, metadata


def _configure(**kw) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        **kw,
    )


def run_offline() -> None:
    from patron_privacy import connections  # noqa: PLC0415

    url = connections.sqlalchemy_url(connections.get_conn(connections.WAREHOUSE_DB))
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    conn = context.config.attributes.get("connection")
    if conn is None:
        from patron_privacy import connections  # noqa: PLC0415

        engine = connections.engine_for(connections.WAREHOUSE_DB)
        with engine.connect() as c:
            _run(c)
        engine.dispose()
    else:
        _run(conn)


def _run(conn) -> None:
    _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
