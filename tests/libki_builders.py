"""Hand-built Libki states for tests: every row placed on purpose, so each test knows
exactly which records are inside their window, blocked or eligible."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from patron_privacy.sources.libki import schema
from sqlalchemy import delete, insert

AS_OF = datetime(2026, 11, 30)
STAFF = 1
BRANCHES = ("MAIN", "EAST")


def make_libki(engine) -> None:
    """Libki's tables, two branches with two PCs each, and one staff account (id 1)."""
    schema.create_schema(engine)
    with engine.begin() as c:
        c.execute(insert(schema.locations), [{"code": b} for b in BRANCHES])
        c.execute(
            insert(schema.clients),
            [
                {"id": i, "name": f"{b}-PC{n}", "location": b, "type": "public"}
                for i, (b, n) in enumerate(((b, n) for b in BRANCHES for n in (1, 2)), 1)
            ],
        )
        c.execute(insert(schema.roles), [{"id": 1, "role": "admin"}])
        add_user(c, STAFF, username="staffer", created=AS_OF - timedelta(days=2000))
        c.execute(insert(schema.user_roles), [{"user_id": STAFF, "role_id": 1}])
        c.execute(insert(schema.settings), [{"name": "GuestPassPrefix", "value": "guest"}])


def clear_activity(engine) -> None:
    with engine.begin() as c:
        for t in (
            schema.print_jobs,
            schema.print_files,
            schema.sessions,
            schema.reservations,
            schema.statistics,
            schema.messages,
        ):
            c.execute(delete(t))
        c.execute(delete(schema.users).where(schema.users.c.id != STAFF))


def add_user(
    c,
    uid: int,
    *,
    username: str | None = None,
    created: datetime | None = None,
    updated: datetime | None = None,
    guest: bool = False,
    **kw,
) -> str:
    username = username or f"2997000000{uid:04d}"
    created = created or AS_OF - timedelta(days=100)
    row = {
        "id": uid,
        "username": username,
        "password": "x",
        "status": "enabled",
        "is_guest": "Yes" if guest else "No",
        "created_on": created,
        "updated_on": updated or created,
        "firstname": f"First{uid}",
        "lastname": f"Last{uid}",
        **kw,
    }
    c.execute(insert(schema.users), [row])
    return username


def add_stat(
    c,
    sid: int,
    username: str | None,
    when: datetime | None,
    *,
    action: str = "LOGIN",
    session: str | None = None,
    client: str = "MAIN-PC1",
    location: str = "MAIN",
    info: dict | None = None,
    anonymized: int = 0,
) -> None:
    c.execute(
        insert(schema.statistics),
        [
            {
                "id": sid,
                "username": username,
                "client_name": client,
                "client_location": location,
                "client_type": "public",
                "action": action,
                "created_on": when,
                "anonymized": anonymized,
                "session_id": session,
                "info": json.dumps(info) if info is not None else None,
            }
        ],
    )


def add_session_rows(
    c, sid: int, username: str, start: datetime, minutes: int | None, **kw
) -> None:
    """A LOGIN row (id ``sid``) and, unless ``minutes`` is None, its LOGOUT (id ``sid + 1``)."""
    session = f"sess-{sid}"
    add_stat(c, sid, username, start, session=session, info={"user_id": 0}, **kw)
    if minutes is not None:
        add_stat(
            c,
            sid + 1,
            username,
            start + timedelta(minutes=minutes),
            action="LOGOUT",
            session=session,
            **kw,
        )


def add_live_session(c, user_id: int, client_id: int, session: str) -> None:
    c.execute(
        insert(schema.sessions),
        [{"client_id": client_id, "user_id": user_id, "status": "active", "session_id": session}],
    )


def add_reservation(c, rid: int, user_id: int, end: datetime | None, client_id: int = 1) -> None:
    c.execute(
        insert(schema.reservations),
        [
            {
                "id": rid,
                "client_id": client_id,
                "user_id": user_id,
                "begin_time": end - timedelta(minutes=30) if end else None,
                "end_time": end,
            }
        ],
    )


def add_print(c, pid: int, user_id: int | None, username: str, when: datetime) -> None:
    c.execute(
        insert(schema.print_files),
        [
            {
                "id": pid,
                "filename": f"doc-{pid}.pdf",
                "data": b"%PDF-1.4 test",
                "client_id": 1,
                "client_name": "MAIN-PC1",
                "client_location": "MAIN",
                "user_id": user_id,
                "username": username,
                "created_on": when,
                "updated_on": when,
            }
        ],
    )
    c.execute(
        insert(schema.print_jobs),
        [
            {
                "id": pid,
                "type": "PrintManager",
                "status": "Done",
                "printer": "bw",
                "user_id": user_id,
                "print_file_id": pid,
                "created_on": when,
                "updated_on": when,
            }
        ],
    )
