"""The rules for the rest of Koha (issue 3) on SQLite: each category changes what is past
its window, keeps what is inside it or blocked, and verifies to zero afterwards."""

from __future__ import annotations

import pytest
from koha_builders import ANON, AS_OF, T, make_koha
from koha_inventory_builders import P, Q, add_inventory_rows, check_end_state, run_inventory_rules
from patron_privacy.engine import Context, Hold, enforce_rule, inspect_rule
from patron_privacy.policy import load_policy
from patron_privacy.sources.koha.connector import PATRON_DEPENDENTS
from sqlalchemy import create_engine, func, select


@pytest.fixture
def koha(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'koha.db'}")
    make_koha(engine)
    with engine.begin() as c:
        add_inventory_rows(c)
    yield engine
    engine.dispose()


def test_inventory_rules_on_sqlite(koha):
    results = run_inventory_rules(koha)
    check_end_state(koha, results)
    kept = {n: r.kept for n, r in results["after"].items() if r.kept}
    assert kept["bookings"] == {"open_loan": 1}
    assert kept["ill_comments"] == {"open_request": 1}
    assert kept["purchase_suggestions"] == {"open_suggestion": 1}
    assert kept["checkout_renewals"] == {"keep_history": 1, "open_loan": 1}
    assert kept["patron_tags"] == {"keep_history": 1}
    assert kept["patron_photos"] == {"protected": 1}


def test_anonymizing_keeps_koha_timestamps_and_clears_text(koha):
    run_inventory_rules(koha)
    with koha.connect() as c:
        ill = c.execute(
            select(T["illrequests"]).where(T["illrequests"].c.illrequest_id == 101)
        ).one()
        assert ill.borrowernumber is None and ill.notesopac is None
        assert ill.updated.year == AS_OF.year - 4
        sug = c.execute(
            select(T["suggestions"]).where(T["suggestions"].c.suggestionid == 101)
        ).one()
        assert sug.suggestedby is None and sug.note is None and sug.patronreason is None
        assert sug.title is None or sug.STATUS == "AVAILABLE"


def test_deleted_patrons_can_be_anonymized_instead(koha):
    from patron_privacy.engine import Rule
    from patron_privacy.sources.koha.connector import CATEGORIES
    from patron_privacy.timebase import parse_duration

    w = parse_duration("P30D")
    rule = Rule(CATEGORIES["deleted_patrons"], w.text, w.delta, "anonymize", ("legal_hold",))
    r = enforce_rule(koha, rule, Context(as_of=AS_OF, anonymous_patron=ANON))
    assert r.changed == 1 and r.remaining == 0
    with koha.connect() as c:
        row = c.execute(
            select(T["deletedborrowers"]).where(T["deletedborrowers"].c.borrowernumber == 101)
        ).one()
    assert row.surname is None and row.anonymized == 1 and row.updated_on.year == AS_OF.year - 4


# --- a patron's registration extras go with the registration -------------------------------


def _rules(names):
    return [r for r in load_policy().rules_for("koha") if r.category.name in names]


def _dependent_rows(engine, bn: int) -> dict[str, int]:
    counts = {}
    with engine.connect() as c:
        for d in PATRON_DEPENDENTS:
            t = T[d.table]
            n = c.execute(select(func.count()).where(t.c[d.patron] == bn)).scalar_one()
            if n:
                counts[d.table] = n
    return counts


def test_anonymizing_an_expired_patron_clears_its_registration_extras_in_the_same_run(koha):
    """Patron 53's card expired in 2020 and nothing blocks it: the shipped rules, in the
    policy's order, anonymize it and then remove every row of its registration extras."""
    assert _dependent_rows(koha, 53)  # alerts, attributes, preferences, profile, list
    names = {"expired_patrons"} | {d.name for d in PATRON_DEPENDENTS}
    rules = _rules(names)
    assert rules[0].category.name == "expired_patrons"  # the policy runs it first
    ctx = Context(as_of=AS_OF, anonymous_patron=ANON)
    for rule in rules:
        enforce_rule(koha, rule, ctx)
    assert _dependent_rows(koha, 53) == {}
    assert _dependent_rows(koha, P)  # an active patron keeps everything
    for rule in rules:
        assert inspect_rule(koha, rule, ctx, "verify").remaining == 0, rule.category.name


def test_registration_extras_wait_for_the_anonymization(koha):
    """Without expired_patrons, 53 is not anonymized yet: its extras are inside their window."""
    ctx = Context(as_of=AS_OF, anonymous_patron=ANON)
    before = _dependent_rows(koha, 53)
    for rule in _rules({d.name for d in PATRON_DEPENDENTS}):
        enforce_rule(koha, rule, ctx)
    assert _dependent_rows(koha, 53) == before


def test_a_legal_hold_keeps_registration_extras_and_offline_transactions(koha):
    holds = [Hold(str(Q)), Hold(str(P), frozenset({"offline_circulation"}))]
    ctx = Context(as_of=AS_OF, anonymous_patron=ANON, holds_loader=lambda: holds)
    kept_q = _dependent_rows(koha, Q)
    assert kept_q
    rules = _rules({d.name for d in PATRON_DEPENDENTS} | {"offline_circulation"})
    results = {r.category.name: enforce_rule(koha, r, ctx) for r in rules}
    assert _dependent_rows(koha, Q) == kept_q
    assert results["patron_alerts"].kept == {"legal_hold": 1}
    # The offline transaction names P only by card number; the hold still finds it.
    assert results["offline_circulation"].kept == {"legal_hold": 1}
    assert results["offline_circulation"].changed == 0


def test_every_registration_rule_runs_after_expired_patrons_in_the_shipped_policy():
    order = [r.category for r in load_policy().rules if r.source == "koha"]
    first = order.index("expired_patrons")
    for d in PATRON_DEPENDENTS:
        assert order.index(d.name) > first, d.name


def test_registration_extras_of_a_patron_no_longer_in_borrowers_go(koha):
    """Deleted outside Koha's cascade (or with keys off): the rows name someone who is gone."""
    from sqlalchemy import delete

    with koha.begin() as c:
        c.execute(delete(T["borrowers"]).where(T["borrowers"].c.borrowernumber == 53))
    assert _dependent_rows(koha, 53)
    ctx = Context(as_of=AS_OF, anonymous_patron=ANON)
    for rule in _rules({d.name for d in PATRON_DEPENDENTS}):
        enforce_rule(koha, rule, ctx)
    assert _dependent_rows(koha, 53) == {}
    assert _dependent_rows(koha, P)
