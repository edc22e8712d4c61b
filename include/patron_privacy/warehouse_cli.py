"""``python -m patron_privacy warehouse upgrade|current``: the warehouse's schema by hand.

Every step migrates the warehouse by itself before using it; deployments run
``warehouse upgrade`` once at start-up (compose's ``airflow-init``, a Helm job) so the
first nightly tasks, starting in parallel, find the schema ready.
"""

from __future__ import annotations


def add_commands(sub) -> None:
    w = sub.add_parser(
        "warehouse",
        help="the warehouse's schema: upgrade to the newest migration, or show its revision",
        description="The warehouse's schema (Alembic migrations in patron_privacy/migrations).",
    )
    wsub = w.add_subparsers(dest="warehouse_command", required=True)
    up = wsub.add_parser("upgrade", help="migrate the warehouse_db connection's database")
    up.set_defaults(func=cmd_upgrade)
    cur = wsub.add_parser("current", help="the revision the warehouse is at, and the newest")
    cur.set_defaults(func=cmd_current)


def _engine():
    from patron_privacy import connections  # noqa: PLC0415

    return connections.engine_for(connections.WAREHOUSE_DB)


def cmd_upgrade(args) -> int:
    from patron_privacy import connections, warehouse  # noqa: PLC0415

    engine = _engine()
    try:
        ran = warehouse.migrate_warehouse(engine)
        at = ",".join(sorted(warehouse.current_revisions(engine)))
    finally:
        engine.dispose()
    where = connections.describe(connections.WAREHOUSE_DB)
    print(f"warehouse {where}: {'upgraded to' if ran else 'already at'} revision {at}")
    return 0


def cmd_current(args) -> int:
    from patron_privacy import warehouse  # noqa: PLC0415

    engine = _engine()
    try:
        at = sorted(warehouse.current_revisions(engine))
    finally:
        engine.dispose()
    head = sorted(warehouse.head_revisions())
    print(f"current: {','.join(at) or '(none)'}  newest: {','.join(head)}")
    return 0 if at == head else 1
