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
import uuid
from datetime import timedelta

import pytest
from conftest import MARIADB_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from koha_builders import AS_OF, T, add_fine, add_old_issue, add_patron, clear_activity, make_koha
from patron_privacy import connections
from patron_privacy.engine import Context, Hold, enforce_rule
from patron_privacy.facts import Pseudonymizer
from patron_privacy.policy import load_policy
from sqlalchemy import select, text

pytestmark = pytest.mark.integration

RULES = {r.category.name: r for r in load_policy().rules_for("koha")}
KEYS = Pseudonymizer({str(y): "k" for y in range(2000, 2030)})


@pytest.fixture(scope="module")
def koha(tmp_path_factory):
    """One Koha database for the module (hypothesis reuses it, clearing it each time)."""
    name = f"pp_t_{uuid.uuid4().hex[:10]}"
    root = connections.engine_for_url(MARIADB_ROOT)
    with root.begin() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        c.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    eng = connections.engine_for_url(f"{MARIADB_ROOT.rstrip('/')}/{name}?charset=utf8mb4")
    make_koha(eng)
    yield eng
    eng.dispose()
    with root.begin() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    root.dispose()


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
    cutoff = AS_OF - timedelta(days=30)
    expected = {}
    with koha.begin() as c:
        for bn in range(10, 16):
            add_patron(c, bn, privacy=0 if bn in keep_history else 1)
        for i, ln in enumerate(loans, 1):
            ret = None if ln["days_ago"] is None else AS_OF - timedelta(days=ln["days_ago"])
            add_old_issue(c, i, ln["patron"], ret)
            if ln["fine_owed"]:
                add_fine(c, i, ln["patron"], i, 1.0, AS_OF - timedelta(days=100))
            eligible = (
                ret is not None
                and ret < cutoff
                and ln["patron"] not in keep_history
                and not ln["fine_owed"]
                and ln["patron"] not in held
            )
            expected[i] = 1 if eligible else ln["patron"]
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
    sessions: set[int] = set()
    inside = {"now": 0, "max": 0}
    guard = threading.Lock()
    record = rule.category.before_change

    def before_change(conn, where, ctx):
        sessions.add(conn.execute(text("SELECT CONNECTION_ID()")).scalar_one())
        time.sleep(0.05)  # long enough for the other workers to start theirs
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
    assert len(sessions) == 3
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
