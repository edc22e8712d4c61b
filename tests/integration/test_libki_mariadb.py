"""The Libki connector on a real MariaDB (InnoDB, Libki's own column types): the whole CLI
pipeline, zero dates refused by validation, foreign-key cascades, ON UPDATE clocks that
must not move, facts, idempotent reruns, and no deleted username kept anywhere."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from libki_builders import (
    AS_OF,
    add_live_session,
    add_print,
    add_reservation,
    add_session_rows,
    add_stat,
    add_user,
    make_libki,
)
from patron_privacy import connections
from patron_privacy.cli import main
from patron_privacy.facts import new_key_file
from patron_privacy.sources.libki import schema
from patron_privacy.warehouse import pc_session_facts, retention_audit
from sqlalchemy import select, text

pytestmark = pytest.mark.integration
DAY = timedelta(days=1)
ARGS = ["--source", "libki", "--as-of", "2026-11-30"]


@pytest.fixture
def libki_maria(mariadb_url, home, monkeypatch):
    eng = connections.engine_for_url(mariadb_url)
    make_libki(eng)
    monkeypatch.setenv("AIRFLOW_CONN_LIBKI_DB", mariadb_url.replace("mysql+pymysql", "mysql"))
    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2018, 2028)])
    yield eng
    eng.dispose()


def _seed(eng) -> dict:
    old = AS_OF - 3 * 365 * DAY
    with eng.begin() as c:
        daily = add_user(c, 10, created=old)
        add_session_rows(c, 1, daily, AS_OF - DAY + timedelta(hours=10), 45)
        add_session_rows(c, 3, daily, AS_OF - 120 * DAY + timedelta(hours=11), 20)
        dormant = add_user(c, 11, created=old, updated=AS_OF - 400 * DAY)
        add_reservation(c, 1, 11, AS_OF - 400 * DAY)
        add_print(c, 1, 11, dormant, AS_OF - 400 * DAY)
        guest = add_user(c, 12, username="guest1", guest=True, created=AS_OF - DAY)
        add_session_rows(c, 5, guest, AS_OF - DAY + timedelta(hours=15), 30, client="EAST-PC1")
        crashed = add_user(c, 13, created=old)
        add_stat(c, 7, crashed, AS_OF - 3 * DAY, session="crash-13")
        add_live_session(c, 13, 2, "crash-13")
        add_stat(
            c,
            8,
            None,
            AS_OF - 10 * DAY,
            action="USERS_DELETE",
            info={"deleted_from": "cronjobs/libki_nightly", "usernames": "29979999999999"},
        )
        # MariaDB zero date in the TIMESTAMP clock: validation must refuse the run.
        c.execute(text("SET SESSION sql_mode=''"))
        c.execute(
            text(
                "INSERT INTO statistics (id, username, action, created_on) "
                "VALUES (9, :u, 'LOGIN', '0000-00-00 00:00:00')"
            ),
            {"u": daily},
        )
    return {"daily": daily, "dormant": dormant, "guest": guest, "crashed": crashed}


def _stats(eng):
    st = schema.statistics
    with eng.connect() as c:
        return {
            r.id: r
            for r in c.execute(
                select(st.c.id, st.c.username, st.c.info, st.c.anonymized, st.c.created_on)
            )
        }


def test_libki_pipeline_on_mariadb(libki_maria, capsys):
    eng = libki_maria
    who = _seed(eng)
    before = _stats(eng)

    # A zero date fails validation: the dry run still previews, enforcement changes nothing.
    assert main(["enforce", *ARGS, "--dry-run", "--json"]) == 1
    captured = capsys.readouterr()
    assert "libki.statistics.created_on: expect_column_values_to_not_be_zero_dates" in captured.err
    dry = {r["category"]: r for r in json.loads(captured.out.strip().splitlines()[-1])["results"]}
    assert dry["session_statistics_link"]["data_errors"] == 1
    assert dry["inactive_accounts"]["remaining"] == 1
    assert main(["enforce", *ARGS, "--run-id", "r0"]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert _stats(eng) == before

    with eng.begin() as c:  # the repair a librarian would make
        c.execute(text("DELETE FROM statistics WHERE id = 9"))
    assert main(["enforce", *ARGS, "--run-id", "r1"]) == 0
    capsys.readouterr()

    after = _stats(eng)
    assert set(after) == {1, 2, 5, 6, 7, 8}  # 120-day-old session rows deleted (P90D)
    for sid in after:
        assert after[sid].username is None and after[sid].info is None, sid
        assert after[sid].anonymized == 1
        assert after[sid].created_on == before[sid].created_on, sid  # TIMESTAMP clock kept
    with eng.connect() as c:
        users = dict(c.execute(select(schema.users.c.id, schema.users.c.updated_on)).all())
        assert set(users) == {1, 10, 13}  # dormant account and guest pass gone
        # Carried forward explicitly, despite ON UPDATE current_timestamp().
        assert users[10] == AS_OF - DAY + timedelta(hours=10, minutes=45)
        assert c.execute(text("SELECT COUNT(*) FROM sessions")).scalar() == 0  # crashed
        assert c.execute(text("SELECT COUNT(*) FROM reservations")).scalar() == 0  # cascade
        assert c.execute(text("SELECT COUNT(*) FROM print_jobs")).scalar() == 0
        assert c.execute(text("SELECT COUNT(*) FROM print_files")).scalar() == 0

    assert main(["verify", *ARGS, "--run-id", "v1"]) == 0
    assert "verification passed" in capsys.readouterr().out

    w = connections.engine_for(connections.WAREHOUSE_DB)
    with w.connect() as c:
        facts = c.execute(select(pc_session_facts)).mappings().all()
        audit = {
            r["category"]: r
            for r in c.execute(
                select(retention_audit).where(retention_audit.c.run_id == "r1")
            ).mappings()
        }
    assert len(facts) == 4  # 3 logins of yesterday and before, the 120-day-old one
    bands = sorted(f["duration_minutes_band"] for f in facts)
    assert bands == ["15-29", "30-59", "30-59", "unknown"]
    assert {f["patron_type"] for f in facts} == {"patron", "guest"}
    assert audit["inactive_accounts"]["changed"] == 1
    assert audit["guest_accounts"]["changed"] == 1
    assert all(a["remaining"] == 0 for a in audit.values())

    # No username — deleted or kept — is anywhere in the warehouse.
    with w.connect() as c:
        cells = " ".join(
            str(v)
            for t in (pc_session_facts, retention_audit)
            for row in c.execute(select(t))
            for v in row
        )
    for name in (*who.values(), "29979999999999"):
        assert name not in cells, name

    # A rerun changes nothing and writes no fact twice.
    assert main(["enforce", *ARGS, "--run-id", "r2"]) == 0
    with w.connect() as c:
        assert len(c.execute(select(pc_session_facts.c.fact_key)).all()) == 4
        changed = c.execute(
            select(retention_audit.c.changed).where(retention_audit.c.run_id == "r2")
        ).scalars()
        assert sum(changed) == 0
