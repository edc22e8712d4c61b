"""Property-based: on Libki, the engine never touches a row inside its window or blocked,
and always handles every eligible one — whatever the mix, whatever the batch size."""

from __future__ import annotations

from datetime import timedelta

from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libki_builders import (
    AS_OF,
    STAFF,
    add_live_session,
    add_print,
    add_reservation,
    add_stat,
    add_user,
    clear_activity,
    make_libki,
)
from patron_privacy import connections
from patron_privacy.engine import Context, Hold, enforce_rule
from patron_privacy.facts import Pseudonymizer
from patron_privacy.policy import load_policy
from patron_privacy.sources.libki import schema
from sqlalchemy import insert, select

RULES = {r.category.name: r for r in load_policy().rules_for("libki")}
KEYS = Pseudonymizer({str(y): "k" for y in range(2020, 2030)})
USERS = [f"2997000000{100 + i:04d}" for i in range(4)]
FAST = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _engine(fn, tmp_path_factory):
    eng = getattr(fn, "eng", None)
    if eng is None:
        eng = connections.engine_for_url(f"sqlite:///{tmp_path_factory.mktemp('lk') / 'l.db'}")
        make_libki(eng)
        with eng.begin() as c:
            c.execute(
                insert(schema.clients),
                [{"id": i, "name": f"X-PC{i}", "location": "MAIN"} for i in range(5, 40)],
            )
        fn.eng = eng
    clear_activity(eng)
    return eng


def _ctx(held, facts=None) -> Context:
    sink = None
    if facts is not None:

        def sink(rows):
            facts.extend(rows)
            return len(rows)

    return Context(
        as_of=AS_OF,
        holds_loader=lambda: [Hold(h) for h in held],
        facts_sink=sink,
        pseudonymizer=KEYS,
        options={"guest_prefix": "guest"},
    )


stat_row = st.fixed_dictionaries(
    {
        "user": st.one_of(st.none(), st.integers(0, 3)),
        "hours_ago": st.one_of(st.none(), st.integers(-30, 24 * 5)),
        "action": st.sampled_from(("LOGIN", "LOGOUT", "MODIFY_TIME", "USERS_DELETE")),
        "info": st.booleans(),
        "anonymized": st.sampled_from((0, 0, 1)),
    }
)


@FAST
@given(
    rows=st.lists(stat_row, max_size=30),
    held=st.sets(st.integers(0, 3), max_size=2),
    batch=st.integers(1, 8),
)
def test_unlinking_statistics_touches_no_row_inside_its_window_or_held(
    tmp_path_factory, rows, held, batch
):
    fn = test_unlinking_statistics_touches_no_row_inside_its_window_or_held
    eng = _engine(fn, tmp_path_factory)
    held_names = {USERS[i] for i in held}
    expected, eligible_rows, eligible_logins = {}, 0, 0
    with eng.begin() as c:
        for i, r in enumerate(rows, 1):
            name = USERS[r["user"]] if r["user"] is not None else None
            when = None if r["hours_ago"] is None else AS_OF - timedelta(hours=r["hours_ago"])
            info = {"username": "x"} if r["info"] else None
            add_stat(
                c,
                i,
                name,
                when,
                action=r["action"],
                session=f"s{i}",
                info=info,
                anonymized=r["anonymized"],
            )
            eligible = (
                when is not None
                and when < AS_OF
                and (name is not None or info is not None)
                and name not in held_names
            )
            expected[i] = (None, False) if eligible else (name, info is not None)
            eligible_rows += eligible
            eligible_logins += eligible and r["action"] == "LOGIN"
    facts: list = []
    res = enforce_rule(
        eng, RULES["session_statistics_link"], _ctx(held_names, facts), batch_size=batch
    )
    st_ = schema.statistics
    with eng.connect() as c:
        got = {
            i: (u, info is not None)
            for i, u, info in c.execute(select(st_.c.id, st_.c.username, st_.c.info))
        }
    assert got == expected
    assert res.remaining == 0
    assert res.changed == eligible_rows
    assert len(facts) == eligible_logins


deletable = st.lists(st.tuples(st.integers(-48, 24 * 100), st.integers(0, 3)), max_size=25)


@FAST
@given(rows=deletable, held=st.sets(st.integers(0, 3), max_size=2), batch=st.integers(1, 7))
def test_deletions_keep_rows_inside_their_window_or_held_and_take_every_other(
    tmp_path_factory, rows, held, batch
):
    fn = test_deletions_keep_rows_inside_their_window_or_held_and_take_every_other
    eng = _engine(fn, tmp_path_factory)
    held_names = {USERS[i] for i in held}
    with eng.begin() as c:
        for k, name in enumerate(USERS):
            add_user(c, 100 + k, username=name)
        for i, (hours, u) in enumerate(rows, 1):
            when = AS_OF - timedelta(hours=hours)
            add_stat(c, i, USERS[u], when, session=f"s{i}")
            add_print(c, i, 100 + u, USERS[u], when)
            add_user(c, 1000 + i, username=f"r{i}")
            add_reservation(c, i, 1000 + i, when)
    ctx = _ctx(held_names, facts=[])
    checks = {
        "session_statistics": (schema.statistics, timedelta(days=90)),
        "print_jobs": (schema.print_jobs, timedelta(days=1)),
        "print_files": (schema.print_files, timedelta(days=1)),
        "ended_reservations": (schema.reservations, timedelta(days=1)),
    }
    for name, (table, window) in checks.items():
        res = enforce_rule(eng, RULES[name], ctx, batch_size=batch)
        cutoff = AS_OF - window
        keep = {
            i
            for i, (hours, u) in enumerate(rows, 1)
            if AS_OF - timedelta(hours=hours) >= cutoff
            # a hold names the patron; a reservation's patron here is r<i>, never held
            or (name != "ended_reservations" and USERS[u] in held_names)
        }
        with eng.connect() as c:
            left = set(c.execute(select(table.c.id)).scalars())
        assert left == keep, name
        assert res.remaining == 0 and res.changed == len(rows) - len(keep), name


account = st.fixed_dictionaries(
    {
        "updated_days": st.integers(0, 800),
        "stat_days": st.one_of(st.none(), st.integers(0, 800)),
        "session": st.booleans(),
        "reservation_days": st.one_of(st.none(), st.integers(-5, 5)),
        "staff": st.booleans(),
        "ban": st.sampled_from((None, "forever", "expired", "future")),
        "held": st.booleans(),
        "guest": st.sampled_from((False, False, False, True)),
    }
)


@FAST
@given(accounts=st.lists(account, max_size=12), batch=st.integers(1, 5))
def test_accounts_are_deleted_only_when_unused_for_the_window_and_unblocked(
    tmp_path_factory, accounts, batch
):
    fn = test_accounts_are_deleted_only_when_unused_for_the_window_and_unblocked
    eng = _engine(fn, tmp_path_factory)
    cutoff = AS_OF - relativedelta(years=1)
    held, expected_left = set(), {STAFF}
    bans = {
        None: ("No", None),
        "forever": ("Yes", None),
        "expired": ("Yes", AS_OF - timedelta(days=3)),
        "future": ("Yes", AS_OF + timedelta(days=3)),
    }
    with eng.begin() as c:
        for k, a in enumerate(accounts):
            uid = 200 + k
            trouble, until = bans[a["ban"]]
            updated = AS_OF - timedelta(days=a["updated_days"])
            name = add_user(
                c,
                uid,
                created=updated - timedelta(days=10),
                updated=updated,
                guest=a["guest"],
                is_troublemaker=trouble,
                troublemaker_until=until,
            )
            last = updated
            if a["stat_days"] is not None:
                seen = AS_OF - timedelta(days=a["stat_days"], hours=-1)
                add_stat(c, uid, name, seen, session=f"s{uid}")
                last = max(last, seen)
            if a["session"]:
                add_live_session(c, uid, 5 + k, f"live{uid}")
            res_end = None
            if a["reservation_days"] is not None:
                res_end = AS_OF + timedelta(days=a["reservation_days"])
                add_reservation(c, uid, uid, res_end)
            if a["staff"]:
                c.execute(insert(schema.user_roles), [{"user_id": uid, "role_id": 1}])
            if a["held"]:
                held.add(name)
            blocked = (
                a["session"]
                or (res_end is not None and res_end >= AS_OF)
                or a["staff"]
                or a["ban"] in ("forever", "future")
                or a["held"]
            )
            if a["guest"] or last >= cutoff or blocked:
                expected_left.add(uid)
    res = enforce_rule(eng, RULES["inactive_accounts"], _ctx(held), batch_size=batch)
    with eng.connect() as c:
        left = set(c.execute(select(schema.users.c.id)).scalars())
    assert left == expected_left
    assert res.remaining == 0
