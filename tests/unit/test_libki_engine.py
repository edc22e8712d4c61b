"""The Libki connector on SQLite: each category against hand-built rows, the facts it
records before a link is cut, and the whole CLI pipeline on the demo's Libki."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import pytest
from libki_builders import (
    AS_OF,
    STAFF,
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
from patron_privacy.engine import Context, Hold, enforce_rule, inspect_rule
from patron_privacy.facts import MissingKeyError, Pseudonymizer, new_key_file
from patron_privacy.policy import load_policy
from patron_privacy.sources.base import SourceConfigError
from patron_privacy.sources.libki import schema
from patron_privacy.sources.libki.connector import CONNECTOR, duration_band
from patron_privacy.warehouse import pc_session_facts, retention_audit
from sqlalchemy import insert, select

RULES = {r.category.name: r for r in load_policy().rules_for("libki")}
KEYS = Pseudonymizer({str(y): f"key-{y}" for y in range(2018, 2030)})
DAY = timedelta(days=1)


@pytest.fixture
def libki(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path / 'libki.db'}")
    make_libki(eng)
    return eng


def _ctx(facts: list | None = None, held=(), keys=KEYS) -> Context:
    def sink(rows):
        facts.extend(rows)
        return len(rows)

    return Context(
        as_of=AS_OF,
        holds_loader=lambda: [Hold(str(h)) for h in held],
        facts_sink=sink if facts is not None else None,
        pseudonymizer=keys,
        options={"guest_prefix": "guest"},
    )


def _rows(eng, table, *cols):
    with eng.connect() as c:
        return {r[0]: tuple(r[1:]) for r in c.execute(select(*[table.c[x] for x in cols]))}


def test_duration_bands():
    t = AS_OF
    assert duration_band(t, t + timedelta(minutes=14, seconds=59)) == "0-14"
    assert duration_band(t, t + timedelta(minutes=15)) == "15-29"
    assert duration_band(t, t + timedelta(minutes=59)) == "30-59"
    assert duration_band(t, t + timedelta(minutes=60)) == "60-119"
    assert duration_band(t, t + timedelta(minutes=120)) == "120+"
    assert duration_band(t, None) == "unknown"
    assert duration_band(t, t - timedelta(minutes=1)) == "unknown"


def test_statistics_link_cuts_username_and_info_and_records_facts_first(libki):
    with libki.begin() as c:
        patron = add_user(c, 10, updated=AS_OF - 300 * DAY)
        guest = add_user(c, 11, username="guest1", guest=True, created=AS_OF - DAY)
        # Yesterday (a Sunday) 10:00, 45 minutes.
        add_session_rows(c, 1, patron, AS_OF - DAY + timedelta(hours=10), 45)
        # Two days ago, never logged out (a crashed client).
        add_session_rows(c, 3, patron, AS_OF - 2 * DAY + timedelta(hours=15), None)
        add_session_rows(c, 5, guest, AS_OF - DAY + timedelta(hours=14), 20, client="EAST-PC1")
        # What Libki's own job left: a reversible MD5, and deleted usernames in info.
        add_stat(c, 7, "5f4dcc3b5aa765d61d8327deb882cf99", AS_OF - 100 * DAY, anonymized=1)
        add_stat(
            c,
            8,
            None,
            AS_OF - 50 * DAY,
            action="USERS_DELETE",
            info={"deleted_from": "cronjobs/libki_nightly", "usernames": "29970000009999"},
        )
        # Today, after the as-of midnight: inside the window.
        add_session_rows(c, 9, patron, AS_OF + timedelta(hours=1), None)
    before = _rows(libki, schema.statistics, "id", "created_on")
    facts: list[dict] = []
    res = enforce_rule(libki, RULES["session_statistics_link"], _ctx(facts))
    after = _rows(libki, schema.statistics, "id", "username", "info", "anonymized", "created_on")
    for sid in (1, 2, 3, 5, 6, 7, 8):
        assert after[sid][:3] == (None, None, 1), sid
    assert after[9][0] == patron and after[9][1] is not None  # inside the window: untouched
    assert {sid: v[3] for sid, v in after.items()} == {
        sid: v[0] for sid, v in before.items()
    }  # clocks kept
    assert res.changed == 7 and res.remaining == 0 and res.facts_recorded == 4

    by_key = {f["fact_key"]: f for f in facts}
    assert len(by_key) == 4
    first = by_key[KEYS.fact_key("2026", "libki", ":1")]
    assert first == {
        "fact_key": KEYS.fact_key("2026", "libki", ":1"),
        "source": "libki",
        "session_date": date(2026, 11, 29),
        "weekday": 7,
        "hour": 10,
        "branch": "MAIN",
        "client_name": "MAIN-PC1",
        "duration_minutes_band": "30-59",
        "patron_type": "patron",
        "patron_pseudonym": KEYS.pseudonym("2026", f"libki:{patron}"),
        "reporting_period": "2026",
    }
    crashed = by_key[KEYS.fact_key("2026", "libki", ":3")]
    assert crashed["duration_minutes_band"] == "unknown"
    assert crashed["patron_pseudonym"] == first["patron_pseudonym"]  # one patron, one period
    g = by_key[KEYS.fact_key("2026", "libki", ":5")]
    assert g["patron_type"] == "guest" and g["branch"] == "MAIN" and g["client_name"] == "EAST-PC1"
    assert g["patron_pseudonym"] not in (None, KEYS.pseudonym("2026", "libki:guest1"))
    md5 = by_key[KEYS.fact_key("2026", "libki", ":7")]
    assert md5["patron_type"] == "unknown" and md5["patron_pseudonym"] is None
    text = json.dumps(facts, default=str)
    assert patron not in text and "guest1" not in text and "5f4dcc3b" not in text

    # The newest activity moved onto the account before the link went.
    with libki.connect() as c:
        updated = c.execute(
            select(schema.users.c.updated_on).where(schema.users.c.id == 10)
        ).scalar()
    assert updated == AS_OF - DAY + timedelta(hours=10, minutes=45)


def test_statistics_link_refuses_without_a_facts_sink_and_changes_nothing(libki):
    with libki.begin() as c:
        u = add_user(c, 10)
        add_session_rows(c, 1, u, AS_OF - 3 * DAY, 30)
    before = _rows(libki, schema.statistics, "id", "username", "info")
    with pytest.raises(SourceConfigError, match="session facts cannot be recorded"):
        enforce_rule(libki, RULES["session_statistics_link"], _ctx(None))
    assert _rows(libki, schema.statistics, "id", "username", "info") == before


def test_a_missing_pseudonym_key_changes_nothing(libki):
    with libki.begin() as c:
        u = add_user(c, 10)
        add_session_rows(c, 1, u, AS_OF - 3 * DAY, 30)
    before = _rows(libki, schema.statistics, "id", "username", "info")
    with pytest.raises(MissingKeyError):
        enforce_rule(libki, RULES["session_statistics_link"], _ctx([], keys=Pseudonymizer({})))
    assert _rows(libki, schema.statistics, "id", "username", "info") == before


def test_inactive_accounts_go_by_last_activity_not_by_creation(libki):
    old = AS_OF - 3 * 365 * DAY
    with libki.begin() as c:
        daily = add_user(c, 20, created=old)  # created 3 years ago, used 10 days ago
        add_session_rows(c, 1, daily, AS_OF - 10 * DAY, 30)
        add_user(c, 21, created=old, updated=AS_OF - 400 * DAY)  # gone
        gone_too = add_user(c, 22, created=old, updated=AS_OF - 500 * DAY)
        add_session_rows(c, 3, gone_too, AS_OF - 400 * DAY, 30)  # last used 400 days ago
        add_user(c, 23, created=AS_OF - 20 * DAY)  # new, never used
        add_user(c, 24, created=old)
        add_live_session(c, 24, 1, "live-24")
        add_user(c, 25, created=old)
        add_reservation(c, 1, 25, AS_OF + DAY)
        add_user(c, 26, created=old)
        c.execute(insert(schema.user_roles), [{"user_id": 26, "role_id": 1}])
        add_user(c, 27, created=old, is_troublemaker="Yes", troublemaker_until=None)
        add_user(c, 28, created=old, is_troublemaker="Yes", troublemaker_until=AS_OF - DAY)
        held = add_user(c, 29, created=old)
        # What goes with account 21: its past reservation and print job (cascade); its
        # printed file loses the account id (SET NULL) and goes on its own rule.
        add_reservation(c, 2, 21, AS_OF - 500 * DAY, client_id=2)
        add_print(c, 1, 21, "29970000000021", AS_OF - 500 * DAY)
    facts: list[dict] = []
    # Statistics are unlinked first (as the policy orders the rules): the daily user's
    # activity must still count once the rows have lost the username.
    enforce_rule(libki, RULES["session_statistics_link"], _ctx(facts, held=[held]))
    res = enforce_rule(libki, RULES["inactive_accounts"], _ctx(facts, held=[held]))
    left = set(_rows(libki, schema.users, "id", "username"))
    assert left == {STAFF, 20, 23, 24, 25, 26, 27, 29}
    assert res.changed == 3 and res.remaining == 0
    assert res.kept == {
        "active_session": 1,
        "ban_in_force": 1,
        "legal_hold": 1,
        "open_reservation": 1,
        "staff_account": 2,  # 26 and the staff account
    }
    assert set(_rows(libki, schema.reservations, "id", "user_id")) == {1}
    assert _rows(libki, schema.print_jobs, "id", "user_id") == {}
    assert _rows(libki, schema.print_files, "id", "user_id") == {1: (None,)}


def test_guest_passes_go_every_night_unless_in_use(libki):
    with libki.begin() as c:
        add_user(c, 30, username="guest1", guest=True, created=AS_OF - DAY + timedelta(hours=9))
        add_user(c, 31, username="guest2", guest=True, created=AS_OF - DAY + timedelta(hours=9))
        add_live_session(c, 31, 2, "live-31")
        add_user(c, 32, username="guest3", guest=True, created=AS_OF + timedelta(hours=1))
        add_user(c, 33, created=AS_OF - 2 * DAY)
    res = enforce_rule(libki, RULES["guest_accounts"], _ctx([]))
    assert set(_rows(libki, schema.users, "id", "username")) == {STAFF, 31, 32, 33}
    assert res.changed == 1 and res.kept == {"active_session": 1}


def test_sessions_past_their_end_by_their_last_event(libki):
    with libki.begin() as c:
        for uid in (40, 41, 42, 43):
            add_user(c, uid)
        crashed = "29970000000040"
        add_stat(c, 1, crashed, AS_OF - 3 * DAY, session="s40")
        add_live_session(c, 40, 1, "s40")
        add_stat(c, 2, "29970000000041", AS_OF - timedelta(hours=2), session="s41")
        add_live_session(c, 41, 2, "s41")
        add_live_session(c, 42, 3, "s-without-statistics")  # unknown age: a data error
        add_stat(c, 3, "29970000000043", AS_OF - 3 * DAY, session="s43")
        add_live_session(c, 43, 4, "s43")
    res = enforce_rule(libki, RULES["ended_sessions"], _ctx([], held=["29970000000043"]))
    assert set(_rows(libki, schema.sessions, "user_id", "client_id")) == {41, 42, 43}
    assert res.changed == 1 and res.data_errors == 1 and res.kept == {"legal_hold": 1}


def test_reservations_and_prints_go_a_day_after(libki):
    with libki.begin() as c:
        for uid in (50, 51, 52):
            add_user(c, uid)
        add_reservation(c, 1, 50, AS_OF - 2 * DAY)
        add_reservation(c, 2, 51, AS_OF - timedelta(hours=12))
        add_reservation(c, 3, 52, None)  # no end: a data error, kept
        add_print(c, 1, 50, "29970000000050", AS_OF - 2 * DAY)
        add_print(c, 2, 51, "29970000000051", AS_OF - timedelta(hours=1))
        add_print(c, 3, 52, "29970000000052", AS_OF - 5 * DAY)  # held
    ctx = _ctx([], held=["29970000000052"])
    r = enforce_rule(libki, RULES["ended_reservations"], ctx)
    assert set(_rows(libki, schema.reservations, "id", "user_id")) == {2, 3}
    assert r.changed == 1 and r.data_errors == 1
    j = enforce_rule(libki, RULES["print_jobs"], ctx)
    f = enforce_rule(libki, RULES["print_files"], ctx)
    assert set(_rows(libki, schema.print_jobs, "id", "user_id")) == {2, 3}
    assert set(_rows(libki, schema.print_files, "id", "user_id")) == {2, 3}
    assert (j.changed, j.kept, f.changed, f.kept) == (1, {"legal_hold": 1}, 1, {"legal_hold": 1})


def test_statistics_deletion_records_a_fact_the_link_rule_never_did(libki):
    with libki.begin() as c:
        u = add_user(c, 60)
        add_session_rows(c, 1, u, AS_OF - 100 * DAY, 30)
        add_session_rows(c, 3, u, AS_OF - 80 * DAY, 30)
    facts: list[dict] = []
    res = enforce_rule(libki, RULES["session_statistics"], _ctx(facts))
    assert set(_rows(libki, schema.statistics, "id", "username")) == {3, 4}
    assert res.changed == 2 and len(facts) == 1 and facts[0]["patron_type"] == "patron"


def test_dry_run_counts_without_changing(libki):
    with libki.begin() as c:
        u = add_user(c, 70)
        add_session_rows(c, 1, u, AS_OF - 3 * DAY, 30)
    res = inspect_rule(libki, RULES["session_statistics_link"], _ctx([]), "dry_run")
    assert res.remaining == 2 and res.changed == 0
    assert _rows(libki, schema.statistics, "id", "username")[1] == (u,)


def test_prepare_warns_about_libki_own_jobs_naming_settings_only(libki, caplog):
    with libki.begin() as c:
        c.execute(
            insert(schema.settings),
            [
                {"name": "InactiveUserRetentionDays", "value": "365"},
                {"name": "DataAnonymizationDays", "value": "0"},
            ],
        )
        add_user(c, 80)
    ctx = _ctx(None)
    with caplog.at_level(logging.WARNING, logger="patron_privacy.libki"):
        CONNECTOR.prepare(libki, {}, ctx)
    text = caplog.text
    assert "InactiveUserRetentionDays" in text and "DataAnonymizationDays" not in text
    assert "29970000000080" not in text
    assert ctx.options["guest_prefix"] == "guest" and ctx.facts_sink is None


def test_the_cli_pipeline_on_the_demo_libki_is_idempotent(home, capsys):
    from patron_privacy.sources.libki.demo import build_demo_libki

    build_demo_libki(patrons=60, seed=5, as_of=date(2026, 11, 30), days=100)
    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2020, 2028)])
    argv = ["--source", "libki", "--as-of", "2026-11-30"]
    assert main(["enforce", *argv, "--run-id", "r1"]) == 0
    out = capsys.readouterr().out
    assert "libki.session_statistics_link" in out and "libki.inactive_accounts" in out
    assert main(["verify", *argv]) == 0
    assert "verification passed" in capsys.readouterr().out
    w = connections.engine_for(connections.WAREHOUSE_DB)
    with w.connect() as c:
        n_facts = c.execute(select(pc_session_facts.c.fact_key)).all()
        audit = c.execute(
            select(retention_audit.c.category, retention_audit.c.changed).where(
                retention_audit.c.run_id == "r1"
            )
        ).all()
    assert len(n_facts) > 100
    assert dict(audit)["session_statistics_link"] > 0
    assert main(["enforce", *argv, "--run-id", "r2"]) == 0
    with w.connect() as c:
        again = c.execute(select(pc_session_facts.c.fact_key)).all()
        changed = c.execute(
            select(retention_audit.c.changed).where(retention_audit.c.run_id == "r2")
        ).scalars()
        assert sum(changed) == 0
    assert len(again) == len(n_facts)
    # No username of the source reached the warehouse.
    src = connections.engine_for(connections.LIBKI_DB)
    with src.connect() as c:
        names = set(c.execute(select(schema.users.c.username)).scalars())
    with w.connect() as c:
        cells = {str(v) for row in c.execute(select(pc_session_facts)) for v in row}
    assert not names & cells
