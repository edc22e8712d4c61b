"""A hand-made Koha state that passes validation, and helpers for breaking it on purpose.

``good_koha`` is small but complete: every table the suite reads has rows that satisfy
every check (fresh returns and statistics, known codes, existing references), and some
rows that a real enforcement would change — so "nothing changed" after a refused
enforcement means something.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date, datetime, timedelta

from koha_builders import AS_OF, T, add_fine, add_old_issue, add_patron, make_koha
from patron_privacy.validation import CheckResult
from patron_privacy.warehouse import create_warehouse, write_validation
from sqlalchemy import insert, inspect, text

AS_OF_TEXT = AS_OF.date().isoformat()
EXPIRED = 12


def good_koha(engine) -> None:
    make_koha(engine)
    with engine.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11, privacy=0)
        add_patron(c, EXPIRED, dateexpiry=date(2022, 1, 1))
        add_patron(c, 13, categorycode="CHILD", privacy=2)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=40))  # past its window: enforce changes it
        add_old_issue(c, 2, 10, AS_OF - timedelta(days=2), item=2)
        add_old_issue(c, 3, 11, AS_OF - timedelta(days=40), item=3)  # kept: keep history
        add_old_issue(c, 4, 13, AS_OF - timedelta(hours=20), item=4)
        add_fine(c, 1, 10, 1, 0, AS_OF - timedelta(days=39))
        c.execute(
            insert(T["issues"]),
            [
                {
                    "issue_id": 50,
                    "borrowernumber": 13,
                    "itemnumber": 5,
                    "issuedate": AS_OF - timedelta(days=3),
                    "date_due": AS_OF + timedelta(days=18),
                    "branchcode": "MAIN",
                }
            ],
        )
        c.execute(
            insert(T["statistics"]),
            [
                {
                    "datetime": AS_OF - timedelta(days=d),
                    "branch": "MAIN",
                    "type": "issue",
                    "itemnumber": d + 1,
                    "itemtype": "BK",
                    "borrowernumber": 10,
                    "categorycode": "ADULT",
                    "value": 0,
                }
                for d in (1, 3, 40)
            ],
        )
        c.execute(
            insert(T["search_history"]),
            [
                {
                    "userid": 10,
                    "sessionid": "s1",
                    "query_desc": "q",
                    "query_cgi": "q",
                    "total": 1,
                    "time": AS_OF - timedelta(days=3),
                }
            ],
        )
        c.execute(
            insert(T["message_queue"]),
            [
                {
                    "borrowernumber": 10,
                    "subject": "s",
                    "content": "c",
                    "message_transport_type": "email",
                    "status": "sent",
                    "time_queued": AS_OF - timedelta(days=40),
                }
            ],
        )
        c.execute(
            insert(T["action_logs"]),
            [
                {
                    "timestamp": AS_OF - timedelta(days=10),
                    "user": 2,
                    "module": "MEMBERS",
                    "action": "MODIFY",
                    "object": 10,
                    "info": "i",
                }
            ],
        )
        c.execute(
            insert(T["old_reserves"]),
            [
                {
                    "reserve_id": 1,
                    "borrowernumber": 10,
                    "reservedate": (AS_OF - timedelta(days=50)).date(),
                    "biblionumber": 1,
                    "branchcode": "MAIN",
                    "timestamp": AS_OF - timedelta(days=45),
                }
            ],
        )


def raw_sql(db_path, *statements: str, params: tuple = ()) -> None:
    """Statements on a raw sqlite3 connection, foreign keys off: how bad data gets in."""
    with closing(sqlite3.connect(db_path)) as c:
        c.execute("PRAGMA foreign_keys=OFF")
        for s in statements:
            c.execute(s, params) if params else c.execute(s)
        c.commit()


def snapshot_sqlite(db_path) -> dict[str, list]:
    """Every row of every table, order-independent: for 'nothing changed' assertions."""
    with closing(sqlite3.connect(db_path)) as c:
        c.text_factory = bytes  # undecodable text is part of some states
        names = [
            r[0].decode()
            for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        return {n: sorted(map(repr, c.execute(f'SELECT * FROM "{n}"').fetchall())) for n in names}


def snapshot_engine(engine) -> dict[str, list]:
    with engine.connect() as c:
        return {
            n: sorted(map(repr, c.execute(text(f"SELECT * FROM `{n}`")).fetchall()))
            for n in inspect(engine).get_table_names()
        }


def seed_history(warehouse, dataset: str, counts: list[int], *, source: str = "koha") -> None:
    """Successful validation runs on the days before the as-of, with these row counts."""
    create_warehouse(warehouse)
    with warehouse.begin() as w:
        for i, n in enumerate(counts, start=1):
            write_validation(
                w,
                run_id=f"history-{dataset}-{i}",
                source=source,
                as_of=AS_OF - timedelta(days=i),
                results=[
                    CheckResult(dataset, "expect_table_row_count_to_be_between", None, n, 0, True)
                ],
                recorded_at=datetime(2026, 11, 30) - timedelta(days=i),
            )


def koha_for_cli(tmp_path, home, monkeypatch):
    """``good_koha`` in a SQLite file that ``koha_db`` points at, with pseudonym keys:
    ready for ``patron_privacy.cli.main``. Returns the file's path."""
    import json  # noqa: PLC0415

    from patron_privacy import connections  # noqa: PLC0415
    from patron_privacy.facts import new_key_file  # noqa: PLC0415

    db = tmp_path / "koha.db"
    eng = connections.engine_for_url(f"sqlite:///{db}")
    good_koha(eng)
    eng.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_KOHA_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2018, 2028)])
    return db


def drop_new_log_handlers(before: list) -> None:
    """``cli.main`` binds a logging handler to the stderr of the test that first calls it;
    pytest closes that stream afterwards. Drop handlers a test added."""
    import logging  # noqa: PLC0415

    for handler in list(logging.root.handlers):
        if handler not in before:
            logging.root.removeHandler(handler)
