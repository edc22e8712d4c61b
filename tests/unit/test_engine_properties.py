"""Property-based: the engine never changes a record inside its window or blocked,
and always handles every eligible one — whatever the mix, whatever the batch size."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from koha_builders import (
    AS_OF,
    T,
    add_patron,
    clear_activity,
    loan_scenario,
    make_koha,
)
from patron_privacy import connections
from patron_privacy.engine import Context, Hold, enforce_rule
from patron_privacy.facts import Pseudonymizer
from patron_privacy.policy import load_policy
from sqlalchemy import select

RULES = {r.category.name: r for r in load_policy().rules_for("koha")}
KEYS = Pseudonymizer({str(y): "k" for y in range(2000, 2030)})

loan = st.fixed_dictionaries(
    {
        "patron": st.integers(10, 15),
        "days_ago": st.one_of(st.none(), st.integers(-3, 90)),
        "hours": st.integers(0, 23),
        "fine_owed": st.booleans(),
    }
)
scenario = st.fixed_dictionaries(
    {
        "loans": st.lists(loan, max_size=40),
        "keep_history": st.sets(st.integers(10, 15), max_size=3),
        "held": st.sets(st.integers(10, 15), max_size=2),
        "batch": st.integers(1, 12),
    }
)


def _engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("prop") / "koha.db"
    eng = connections.engine_for_url(f"sqlite:///{path}")
    make_koha(eng)
    return eng


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(s=scenario)
def test_loans_inside_window_or_blocked_untouched_and_all_eligible_done(tmp_path_factory, s):
    eng = getattr(test_loans_inside_window_or_blocked_untouched_and_all_eligible_done, "eng", None)
    if eng is None:
        eng = _engine(tmp_path_factory)
        test_loans_inside_window_or_blocked_untouched_and_all_eligible_done.eng = eng
    clear_activity(eng)
    with eng.begin() as c:
        expected = loan_scenario(c, s["loans"], s["keep_history"], s["held"])
    ctx = Context(
        as_of=AS_OF,
        anonymous_patron=1,
        holds_loader=lambda: [Hold(str(p)) for p in s["held"]],
        facts_sink=lambda rows: len(rows),
        pseudonymizer=KEYS,
    )
    res = enforce_rule(eng, RULES["returned_loans"], ctx, batch_size=s["batch"])
    with eng.connect() as c:
        got = dict(
            c.execute(select(T["old_issues"].c.issue_id, T["old_issues"].c.borrowernumber)).all()
        )
    assert got == expected
    assert res.remaining == 0
    assert res.changed == sum(1 for i, v in expected.items() if v == 1)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ages=st.lists(st.integers(-2, 72), max_size=40),
    held=st.sets(st.integers(10, 12), max_size=1),
    batch=st.integers(1, 9),
)
def test_deletion_never_touches_rows_inside_window_or_held(tmp_path_factory, ages, held, batch):
    eng = getattr(test_deletion_never_touches_rows_inside_window_or_held, "eng", None)
    if eng is None:
        eng = _engine(tmp_path_factory)
        test_deletion_never_touches_rows_inside_window_or_held.eng = eng
    clear_activity(eng)
    sh = T["search_history"]
    cutoff = AS_OF - timedelta(days=1)
    keep = set()
    with eng.begin() as c:
        for bn in (10, 11, 12):
            add_patron(c, bn)
        rows = []
        for i, hours in enumerate(ages, 1):
            when = AS_OF - timedelta(hours=hours)
            bn = 10 + i % 3
            rows.append(
                {
                    "id": i,
                    "userid": bn,
                    "sessionid": "s",
                    "query_desc": "q",
                    "query_cgi": "q",
                    "total": 0,
                    "time": when,
                }
            )
            if not (when < cutoff) or bn in held:
                keep.add(i)
        if rows:
            c.execute(sh.insert(), rows)
    ctx = Context(
        as_of=AS_OF, anonymous_patron=1, holds_loader=lambda: [Hold(str(p)) for p in held]
    )
    res = enforce_rule(eng, RULES["opac_search_history"], ctx, batch_size=batch)
    with eng.connect() as c:
        left = set(c.execute(select(sh.c.id)).scalars())
    assert left == keep
    assert res.changed == len(ages) - len(keep) and res.remaining == 0
