"""Several sessions applying one rule's batches at once, on a real MariaDB.

The engine's invariants must hold whatever the number of workers: nothing inside
its window or blocked is touched, every eligible row is handled, each fact is
recorded before its link is cut, and a batch that fails takes nothing with it
but itself.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from koha_builders import (
    AS_OF,
    T,
    add_old_issue,
    add_patron,
    clear_activity,
    loan_scenario,
    make_koha,
)
from patron_privacy import connections
from patron_privacy.engine import Context, Hold, enforce_rule, lost_a_deadlock
from patron_privacy.facts import Pseudonymizer
from patron_privacy.policy import load_policy
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

pytestmark = pytest.mark.integration

RULES = {r.category.name: r for r in load_policy().rules_for("koha")}
KEYS = Pseudonymizer({str(y): "k" for y in range(2000, 2030)})


@pytest.fixture
def koha(mariadb_url):
    """A Koha database for one test (hypothesis reuses it, clearing it each time)."""
    eng = connections.engine_for_url(mariadb_url)
    make_koha(eng)
    yield eng
    eng.dispose()


def _loans(eng) -> dict[int, int | None]:
    with eng.connect() as c:
        o = T["old_issues"]
        return dict(c.execute(select(o.c.issue_id, o.c.borrowernumber)).all())


def _context(held=(), sink=None, holds_loader=None) -> Context:
    return Context(
        as_of=AS_OF,
        anonymous_patron=1,
        holds_loader=holds_loader or (lambda: [Hold(str(p)) for p in held]),
        facts_sink=sink or (lambda rows: len(rows)),
        pseudonymizer=KEYS,
    )


def _library(eng, n: int, *, days_ago: int = 40) -> None:
    """n loans past their window, spread over three patrons."""
    clear_activity(eng)
    with eng.begin() as c:
        for bn in (10, 11, 12):
            add_patron(c, bn)
        for i in range(1, n + 1):
            add_old_issue(c, i, 10 + i % 3, AS_OF - timedelta(days=days_ago, hours=i % 24))


loan = st.fixed_dictionaries(
    {
        "patron": st.integers(10, 15),
        "days_ago": st.one_of(st.none(), st.integers(-3, 90)),
        "fine_owed": st.booleans(),
    }
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    loans=st.lists(loan, max_size=40),
    keep_history=st.sets(st.integers(10, 15), max_size=3),
    held=st.sets(st.integers(10, 15), max_size=2),
    batch=st.integers(1, 12),
    workers=st.integers(1, 4),
)
def test_any_number_of_workers_touches_only_eligible_rows_and_all_of_them(
    koha, loans, keep_history, held, batch, workers
):
    clear_activity(koha)
    with koha.begin() as c:
        expected = loan_scenario(c, loans, keep_history, held)
    recorded: list[int] = []
    lock = threading.Lock()

    def sink(rows):
        with lock:
            recorded.extend(r["fact_key"] for r in rows)
        return len(rows)

    res = enforce_rule(
        koha,
        RULES["returned_loans"],
        _context(held, sink),
        batch_size=batch,
        workers=workers,
    )
    assert _loans(koha) == expected
    assert res.remaining == 0
    changed = sorted(i for i, v in expected.items() if v == 1)
    assert res.changed == len(changed)
    # A fact for every loan unlinked, each once.
    assert len(recorded) == len(set(recorded)) == len(changed)


def test_batches_run_in_several_sessions_at_once_and_holds_are_read_one_at_a_time(koha):
    _library(koha, 24)
    rule = RULES["returned_loans"]
    inside = {"now": 0, "max": 0}
    open_batches: dict[int, int] = {}  # session id -> batches open in it now
    most_open = {"n": 0}
    guard = threading.Lock()
    record = rule.category.before_change

    def before_change(conn, where, ctx):
        session = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        with guard:
            open_batches[session] = open_batches.get(session, 0) + 1
            most_open["n"] = max(most_open["n"], sum(1 for n in open_batches.values() if n))
        time.sleep(0.05)  # long enough for the other workers to start theirs
        with guard:
            open_batches[session] -= 1
        return record(conn, where, ctx)

    def holds_loader():
        with guard:
            inside["now"] += 1
            inside["max"] = max(inside["max"], inside["now"])
        time.sleep(0.01)
        with guard:
            inside["now"] -= 1
        return []

    category = dataclasses.replace(rule.category, before_change=before_change)
    res = enforce_rule(
        koha,
        dataclasses.replace(rule, category=category),
        _context(holds_loader=holds_loader),
        batch_size=2,
        workers=3,
    )
    assert res.changed == 24 and res.batches == 12 and res.remaining == 0
    # Three sessions had a batch open at once, never more.
    assert most_open["n"] == 3
    # The loader may check the run lock on one shared warehouse session.
    assert inside["max"] == 1


def test_a_failed_batch_stops_the_others_and_a_rerun_finishes_the_rest(koha):
    _library(koha, 40)
    rule = RULES["returned_loans"]
    record = rule.category.before_change
    calls = {"n": 0}
    guard = threading.Lock()

    class Boom(RuntimeError):
        pass

    def before_change(conn, where, ctx):
        with guard:
            calls["n"] += 1
            n = calls["n"]
        if n == 6:
            raise Boom("the warehouse went away")
        time.sleep(0.02)
        return record(conn, where, ctx)

    category = dataclasses.replace(rule.category, before_change=before_change)
    with pytest.raises(Boom):
        enforce_rule(
            koha,
            dataclasses.replace(rule, category=category),
            _context(),
            batch_size=2,
            workers=3,
        )
    after = _loans(koha)
    done = [i for i, bn in after.items() if bn == 1]
    # Whole batches only: a batch is its two keys, both changed or neither.
    for lo in range(1, 41, 2):
        assert (after[lo] == 1) == (after[lo + 1] == 1)
    # It stopped: the workers finished the batch each was in, and took no more.
    assert 0 < len(done) < 40
    assert calls["n"] <= 6 + 2

    res = enforce_rule(koha, rule, _context(), batch_size=2, workers=3)
    assert res.changed == 40 - len(done)
    assert set(_loans(koha).values()) == {1}


def test_loans_inside_their_window_are_never_touched_by_any_worker(koha):
    _library(koha, 30, days_ago=29)
    before = _loans(koha)
    res = enforce_rule(koha, RULES["returned_loans"], _context(), batch_size=1, workers=4)
    assert res.changed == 0 and res.batches == 0
    assert _loans(koha) == before


WANTS_LOAN_1 = "SELECT issue_id FROM old_issues WHERE issue_id = 1 FOR UPDATE"


def _wait_until_waiting(eng, other: dict, timeout_s: float = 20.0) -> None:
    """Until the other session's request for loan 1 is in progress (it waits for the
    batch's lock: a primary-key lookup waits while being planned, so InnoDB's own
    transaction list does not show it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not other:
        with eng.connect() as c:
            waiting = c.execute(
                text("SELECT COUNT(*) FROM information_schema.processlist WHERE info = :q"),
                {"q": WANTS_LOAN_1},
            ).scalar_one()
        if waiting:
            time.sleep(0.2)
            return
        time.sleep(0.02)
    raise AssertionError(f"the other session never asked for loan 1: {other}")


def test_a_batch_chosen_as_a_deadlock_victim_is_applied_again(koha):
    """A real InnoDB deadlock: the batch holds loan 1 and wants loan 2; another, larger
    transaction holds loan 2 and wants loan 1. InnoDB rolls back the smaller one, the
    batch, which the engine then applies again."""
    _library(koha, 6)
    rule = RULES["returned_loans"]
    record = rule.category.before_change
    calls = {"n": 0}
    other: dict = {}

    def other_session():
        try:
            with koha.connect() as c, c.begin():
                c.execute(text("SET SESSION innodb_lock_wait_timeout = 20"))
                # Heavier than the batch, so that InnoDB picks the batch as the victim.
                c.execute(
                    text(
                        "INSERT INTO action_logs (timestamp, user, module, action, object, info) "
                        "SELECT '2026-11-01', 0, 'SYSTEM', 'TEST', seq, '' FROM seq_1_to_200"
                    )
                )
                c.execute(text("UPDATE old_issues SET itemnumber = itemnumber WHERE issue_id = 2"))
                c.execute(text(WANTS_LOAN_1))
            other["done"] = True
        except Exception as exc:  # noqa: BLE001 - asserted below
            other["error"] = exc

    thread = threading.Thread(target=other_session)

    def before_change(conn, where, ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            conn.execute(text("SET SESSION innodb_lock_wait_timeout = 20"))
            conn.execute(text("SELECT issue_id FROM old_issues WHERE issue_id = 1 FOR UPDATE"))
            thread.start()
            _wait_until_waiting(koha, other)
        return record(conn, where, ctx)

    category = dataclasses.replace(rule.category, before_change=before_change)
    res = enforce_rule(
        koha, dataclasses.replace(rule, category=category), _context(), batch_size=10, workers=1
    )
    thread.join(30)
    assert other == {"done": True}, "the other transaction survived the deadlock"
    assert calls["n"] == 2, "the batch was rolled back once and applied again"
    assert (res.changed, res.batches, res.remaining) == (6, 1, 0)
    assert set(_loans(koha).values()) == {1}
    with koha.begin() as c:
        c.execute(text("DELETE FROM action_logs WHERE action = 'TEST'"))


def test_a_real_postgres_deadlock_is_recognised(postgres_url):
    """The retry's test on PostgreSQL's own error, from a real deadlock between two sessions."""
    eng = connections.engine_for_url(str(postgres_url))
    with eng.begin() as c:
        c.execute(text("CREATE TABLE t (id int PRIMARY KEY, v int)"))
        c.execute(text("INSERT INTO t VALUES (1, 0), (2, 0)"))
    errors: list = []
    ready = threading.Barrier(2)

    def session(first: int, second: int) -> None:
        try:
            with eng.begin() as c:
                c.execute(text("UPDATE t SET v = v + 1 WHERE id = :i"), {"i": first})
                ready.wait()
                c.execute(text("UPDATE t SET v = v + 1 WHERE id = :i"), {"i": second})
        except DBAPIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=a) for a in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    eng.dispose()
    assert len(errors) == 1
    assert lost_a_deadlock(errors[0])
