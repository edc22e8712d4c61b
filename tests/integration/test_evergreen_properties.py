"""Property-based, on a real PostgreSQL: the engine never ages, purges or deletes an Evergreen
record inside its window or blocked, always handles every eligible one, and treats a renewal
chain as one loan (all of it aged, or none) — whatever the mix, whatever the batch size."""

from __future__ import annotations

from datetime import timedelta

import pytest
from evergreen_builders import (
    AS_OF,
    ZONE,
    add_activity,
    add_circ,
    add_hold,
    add_patron,
    clear_activity,
    engine_for,
    make_evergreen,
    pg_database,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patron_privacy.engine import Context, Hold, enforce_rule
from patron_privacy.facts import Pseudonymizer
from patron_privacy.policy import load_policy
from patron_privacy.sources.evergreen import schema as S
from patron_privacy.sources.evergreen.connector import CONNECTOR
from sqlalchemy import insert, select

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("evergreen_pg")]

RULES = {r.category.name: r for r in load_policy().rules_for("evergreen")}
KEYS = Pseudonymizer({str(y): "k" for y in range(2000, 2030)})
PATRONS = range(10, 15)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def eg():
    with pg_database() as url:
        eng = engine_for(url)
        make_evergreen(eng)
        prepared = Context(as_of=AS_OF)
        CONNECTOR.prepare(eng, {**CONNECTOR.default_options, "timezone": ZONE}, prepared)
        yield eng, prepared.options
        eng.dispose()


def _ctx(options, held) -> Context:
    return Context(
        as_of=AS_OF,
        holds_loader=lambda: [Hold(str(p)) for p in held],
        facts_sink=lambda rows: len(rows),
        pseudonymizer=KEYS,
        options=dict(options),
    )


# A circulation finished `days_ago` days (and some hours) before the as-of; None: still
# open (not returned, or money still owed). Negative: after the as-of.
finish = st.one_of(st.none(), st.tuples(st.integers(-3, 90), st.integers(0, 23)))
chain = st.fixed_dictionaries(
    {"patron": st.sampled_from(PATRONS), "finishes": st.lists(finish, min_size=1, max_size=4)}
)


@SETTINGS
@given(
    chains=st.lists(chain, max_size=14),
    held=st.sets(st.sampled_from(PATRONS), max_size=2),
    batch=st.integers(1, 9),
)
def test_chains_aged_whole_never_inside_window_or_held(eg, chains, held, batch):
    eng, options = eg
    clear_activity(eng)
    cutoff = AS_OF - timedelta(days=30)
    expect_aged: set[int] = set()
    expect_left: dict[int, int] = {}
    cid = 0
    with eng.begin() as c:
        for uid in PATRONS:
            add_patron(c, uid)
        for n, ch in enumerate(chains):
            parent = None
            times = []
            ids = []
            for f in ch["finishes"]:
                cid += 1
                when = None if f is None else AS_OF - timedelta(days=f[0], hours=-f[1])
                add_circ(c, cid, ch["patron"], when, parent=parent, copy=1 + n,
                         start=(when or AS_OF) - timedelta(days=20))  # fmt: skip
                times.append(when)
                ids.append(cid)
                parent = cid
            eligible = (
                all(t is not None for t in times)
                and max(times) < cutoff
                and ch["patron"] not in held
            )
            for i in ids:
                if eligible:
                    expect_aged.add(i)
                else:
                    expect_left[i] = ch["patron"]
    res = enforce_rule(eng, RULES["finished_circulations"], _ctx(options, held), batch_size=batch)
    with eng.connect() as c:
        left = dict(c.execute(select(S.circulation.c.id, S.circulation.c.usr)).all())
        aged = set(c.execute(select(S.aged_circulation.c.id)).scalars())
    assert left == expect_left
    assert aged == expect_aged
    assert res.remaining == 0 and res.changed == len(expect_aged)
    assert res.kept.get("legal_hold", 0) == sum(
        1 for i, p in expect_left.items() if p in held and _chain_past(i, chains, cutoff)
    )


def _chain_past(cid: int, chains, cutoff) -> bool:
    """Is circulation ``cid``'s chain finished and past the window (whatever its patron)?"""
    n = 0
    for ch in chains:
        times = [
            None if f is None else AS_OF - timedelta(days=f[0], hours=-f[1]) for f in ch["finishes"]
        ]
        if n < cid <= n + len(times):
            return all(t is not None for t in times) and max(times) < cutoff
        n += len(times)
    raise AssertionError(cid)


@SETTINGS
@given(
    holds=st.lists(
        st.tuples(st.sampled_from(PATRONS), st.integers(-2, 60), st.sampled_from("fco")),
        max_size=20,
    ),
    keep=st.sets(st.sampled_from(PATRONS), max_size=2),
    held=st.sets(st.sampled_from(PATRONS), max_size=1),
    batch=st.integers(1, 7),
)
def test_hold_requests_never_inside_window_kept_or_held(eg, holds, keep, held, batch):
    eng, options = eg
    clear_activity(eng)
    cutoff = AS_OF - timedelta(days=30)
    expect_left = set()
    with eng.begin() as c:
        for uid in PATRONS:
            add_patron(c, uid)
        if keep:
            c.execute(
                insert(S.usr_setting),
                [{"usr": u, "name": "history.hold.retention_start", "value": '"2020-01-01"'}
                 for u in keep],
            )  # fmt: skip
        for hid, (uid, days, fate) in enumerate(holds, 1):
            when = AS_OF - timedelta(days=days)
            add_hold(
                c,
                hid,
                uid,
                fulfilled=when if fate == "f" else None,
                cancelled=when if fate == "c" else None,
            )
            if fate == "o" or not when < cutoff or uid in keep or uid in held:
                expect_left.add(hid)
    res = enforce_rule(eng, RULES["hold_requests"], _ctx(options, held), batch_size=batch)
    with eng.connect() as c:
        left = set(c.execute(select(S.hold_request.c.id)).scalars())
        aged = set(c.execute(select(S.aged_hold_request.c.id)).scalars())
    assert left == expect_left
    assert aged == set(range(1, len(holds) + 1)) - expect_left
    assert res.remaining == 0


@SETTINGS
@given(
    ages=st.lists(st.tuples(st.sampled_from(PATRONS), st.integers(300, 430)), max_size=25),
    held=st.sets(st.sampled_from(PATRONS), max_size=2),
    batch=st.integers(1, 9),
)
def test_activity_deleted_only_past_window_and_unheld(eg, ages, held, batch):
    eng, options = eg
    clear_activity(eng)
    cutoff = AS_OF - timedelta(days=365)
    keep = set()
    with eng.begin() as c:
        for uid in PATRONS:
            add_patron(c, uid)
        for aid, (uid, days) in enumerate(ages, 1):
            when = AS_OF - timedelta(days=days)
            add_activity(c, aid, uid, when)
            if not when < cutoff or uid in held:
                keep.add(aid)
    res = enforce_rule(eng, RULES["user_activity"], _ctx(options, held), batch_size=batch)
    with eng.connect() as c:
        left = set(c.execute(select(S.usr_activity.c.id)).scalars())
    assert left == keep
    assert res.changed == len(ages) - len(keep) and res.remaining == 0
