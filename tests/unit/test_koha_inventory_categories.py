"""The rules for the rest of Koha (issue 3) on SQLite: each category changes what is past
its window, keeps what is inside it or blocked, and verifies to zero afterwards."""

from __future__ import annotations

import pytest
from koha_builders import ANON, AS_OF, T, make_koha
from koha_inventory_builders import add_inventory_rows, check_end_state, run_inventory_rules
from patron_privacy.engine import Context, enforce_rule
from sqlalchemy import create_engine, select


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
