"""The engine on hand-built Evergreen states (a real PostgreSQL): what is aged, purged or kept
and why, renewal chains as one loan, Evergreen's own aging (its triggers, or verify only),
bad input named before any change, and a run stopped anywhere converging on rerun."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from evergreen_builders import (
    AS_OF,
    BRANCH,
    CIRCULATORS_GRP,
    STAFF,
    STAFF_GRP,
    ZONE,
    add_activity,
    add_bill,
    add_chain,
    add_circ,
    add_hold,
    add_patron,
    clear_activity,
    engine_for,
    make_evergreen,
    pg_database,
)
from patron_privacy.engine import (
    Context,
    Hold,
    SourceSchemaError,
    check_schema,
    enforce_rule,
    inspect_rule,
)
from patron_privacy.facts import Pseudonymizer
from patron_privacy.policy import load_policy, parse_policy
from patron_privacy.sources.base import SourceConfigError
from patron_privacy.sources.evergreen import schema as S
from patron_privacy.sources.evergreen.connector import CONNECTOR, check_options
from sqlalchemy import create_engine, func, insert, select, text

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("evergreen_pg")]

RULES = {r.category.name: r for r in load_policy().rules_for("evergreen")}
KEYS = Pseudonymizer({str(y): f"key-{y}" for y in range(1990, 2030)})
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def eg():
    with pg_database() as url:
        eng = engine_for(url)
        make_evergreen(eng)
        yield eng
        eng.dispose()


@pytest.fixture
def db(eg):
    clear_activity(eg)
    with eg.begin() as c:
        c.execute(text("DROP TRIGGER IF EXISTS action_circulation_aging_tgr ON action.circulation"))
        c.execute(text("DROP TRIGGER IF EXISTS age_parent_circ ON action.circulation"))
        c.execute(text("DELETE FROM actor.org_unit_setting"))
    return eg


def ctx(eng, *, holds=(), sink=None, **opts):
    facts: list[dict] = []
    context = Context(
        as_of=AS_OF,
        holds_loader=lambda: list(holds),
        facts_sink=sink or (lambda rows: facts.extend(rows) or len(rows)),
        pseudonymizer=KEYS,
        options=dict(opts),
    )
    CONNECTOR.prepare(eng, {**CONNECTOR.default_options, "timezone": ZONE, **opts}, context)
    return context, facts


def circs(eng) -> dict[int, int]:
    with eng.connect() as c:
        return dict(c.execute(select(S.circulation.c.id, S.circulation.c.usr)).all())


def aged(eng) -> dict[int, dict]:
    with eng.connect() as c:
        rows = c.execute(select(S.aged_circulation)).mappings().all()
    return {r["id"]: dict(r) for r in rows}


def test_finished_circulations_renewal_chains_age_as_one(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11)
        # A loan renewed twice, all finished long ago: aged, all three.
        add_chain(c, 10, 10, [AS_OF - 100 * DAY, AS_OF - 80 * DAY, AS_OF - 60 * DAY], copy=2)
        # Renewed; its last renewal finished inside the window: none of it yet.
        add_chain(c, 20, 10, [AS_OF - 100 * DAY, AS_OF - 10 * DAY], copy=3)
        # Renewed; the renewal is still out: none of it.
        add_chain(c, 30, 11, [AS_OF - 100 * DAY, None], copy=4)
        # Returned, but a fine is still owed (xact_finish NULL): not finished.
        add_circ(c, 40, 11, None, checkin=AS_OF - 90 * DAY, copy=5)
        # Single, finished long ago: aged.
        add_circ(c, 50, 11, AS_OF - 45 * DAY, copy=6)
        # Finished inside the window.
        add_circ(c, 60, 11, AS_OF - 29 * DAY, copy=7)
    context, facts = ctx(db)
    dry = inspect_rule(db, RULES["finished_circulations"], context, "dry_run")
    assert (dry.remaining, dry.kept, dry.data_errors) == (4, {}, 0)
    assert len(circs(db)) == 10, "a dry run changes nothing"

    res = enforce_rule(db, RULES["finished_circulations"], context, batch_size=1)
    assert (res.changed, res.remaining, res.matched) == (4, 0, 4)
    assert sorted(circs(db)) == [20, 21, 30, 31, 40, 60]
    a = aged(db)
    assert sorted(a) == [10, 11, 12, 50]
    assert [a[i]["parent_circ"] for i in (10, 11, 12)] == [None, 10, 11]
    assert "usr" not in next(iter(a.values()))
    assert a[10]["usr_post_code"] == "06103" and a[10]["usr_birth_year"] == 1980
    assert a[10]["usr_home_ou"] == BRANCH and a[10]["copy_bib_record"] == 1
    # One fact per loan: the chain is one loan with two renewals.
    by_key = {f["fact_key"]: f for f in facts}
    assert sorted(f["renewals"] for f in by_key.values()) == [0, 2]
    assert all(f["patron_pseudonym"] and len(f["patron_pseudonym"]) == 64 for f in facts)
    chain_fact = next(f for f in by_key.values() if f["renewals"] == 2)
    assert chain_fact["loan_date"] == (AS_OF - 114 * DAY).date()
    assert chain_fact["return_date"] == (AS_OF - 60 * DAY).date()
    assert chain_fact["branch"] == "BR1" and chain_fact["category_type"] == "A"

    again = enforce_rule(db, RULES["finished_circulations"], context, batch_size=3)
    assert again.changed == 0 and again.remaining == 0


def test_legal_hold_keeps_whole_chain_and_binds_mid_run(db):
    with db.begin() as c:
        for uid in (10, 11, 12):
            add_patron(c, uid)
        for i in range(12):
            fins = [AS_OF - (200 - i) * DAY, AS_OF - (150 - i) * DAY]
            add_chain(c, 1 + 2 * i, 10 + i % 3, fins, copy=1 + i)
    holds: list = []
    context, _ = ctx(db, holds=holds)
    # Newest first: the first batch ages the chain with the highest ids; the hold on
    # patron 12 arrives after it and keeps everything of 12's after that.
    res = enforce_rule(
        db,
        RULES["finished_circulations"],
        context,
        batch_size=2,
        after_batch=lambda n: holds.append(Hold("12")) if n == 1 else None,
    )
    left = circs(db)
    assert set(left.values()) == {12}
    # The newest chain (ids 23, 24) is patron 12's and was aged before the hold.
    assert 23 not in left and 24 not in left and len(left) == 6
    assert res.kept == {"legal_hold": len(left)} and res.remaining == 0
    # A hold is on a patron's records dated within its range: the chain's clock.
    clear_activity(db)
    with db.begin() as c:
        add_patron(c, 10)
        add_chain(c, 1, 10, [datetime(2025, 3, 1), datetime(2025, 4, 1)])
        add_chain(c, 3, 10, [datetime(2025, 8, 1), datetime(2025, 9, 1)], copy=2)
    hold = Hold(
        "10", frozenset({"finished_circulations"}), datetime(2025, 3, 15), datetime(2025, 6, 1)
    )
    context, _ = ctx(db, holds=[hold])
    enforce_rule(db, RULES["finished_circulations"], context, batch_size=1)
    assert sorted(circs(db)) == [1, 2]


def test_last_loan_of_copy_blocker_keeps_the_latest_chain(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11)
        add_chain(c, 1, 10, [AS_OF - 300 * DAY, AS_OF - 280 * DAY], copy=9)
        add_chain(c, 3, 11, [AS_OF - 200 * DAY, AS_OF - 180 * DAY], copy=9)  # latest of 9
        add_circ(c, 5, 11, AS_OF - 100 * DAY, copy=8)  # latest of 8
    rule = dataclasses.replace(
        RULES["finished_circulations"], blockers=("legal_hold", "last_loan_of_copy")
    )
    context, _ = ctx(db)
    res = enforce_rule(db, rule, context, batch_size=2)
    assert res.changed == 2 and res.kept == {"last_loan_of_copy": 3}
    assert sorted(circs(db)) == [3, 4, 5]


def test_verify_only_when_evergreen_ages(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_chain(c, 100, 10, [AS_OF - 100 * DAY, AS_OF - 60 * DAY])
        add_hold(c, 1, 10, fulfilled=AS_OF - 40 * DAY)
    aging = {"finished_circulations": "evergreen", "hold_requests": "evergreen"}
    context, facts = ctx(db, aging=aging)
    for name in ("finished_circulations", "hold_requests"):
        res = enforce_rule(db, RULES[name], context)
        assert res.enforced_by == "source" and res.mode == "enforce"
        assert res.changed == 0 and res.batches == 0
    assert res.remaining == 1
    assert sorted(circs(db)) == [100, 101] and facts == []
    # The same counts as a verification by the engine's own aging would give.
    engine_ctx, _ = ctx(db)
    engine_view = inspect_rule(db, RULES["finished_circulations"], engine_ctx, "verify")
    source_view = enforce_rule(db, RULES["finished_circulations"], context)
    assert (source_view.remaining, source_view.kept) == (engine_view.remaining, engine_view.kept)
    # Once Evergreen's purge has aged them, verification passes.
    with db.begin() as c:
        c.execute(text("DELETE FROM action.circulation WHERE id IN (101, 100)"))
    assert enforce_rule(db, RULES["finished_circulations"], context).remaining == 0


# A stand-in for Evergreen's aging triggers (own code, same contract): a deleted
# circulation is copied into action.aged_circulation; deleting a renewal deletes the
# circulation it renewed.
STAND_IN_TRIGGERS = """
CREATE OR REPLACE FUNCTION public.test_age_circ() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM action.circulation WHERE parent_circ = OLD.id) THEN
        RETURN NULL;
    END IF;
    INSERT INTO action.aged_circulation (id, usr_home_ou, usr_profile, copy_call_number,
        copy_owning_lib, copy_circ_lib, copy_bib_record, xact_start, xact_finish, target_copy,
        circ_lib, circ_staff, renewal_remaining, grace_period, duration_rule,
        recurring_fine_rule, max_fine_rule, fine_interval, phone_renewal, desk_renewal,
        opac_renewal, create_time, copy_location, auto_renewal, parent_circ)
    SELECT OLD.id, u.home_ou, u.profile, 1, 2, 2, 1, OLD.xact_start, OLD.xact_finish,
        OLD.target_copy, OLD.circ_lib, OLD.circ_staff, OLD.renewal_remaining, OLD.grace_period,
        OLD.duration_rule, OLD.recurring_fine_rule, OLD.max_fine_rule, OLD.fine_interval,
        false, false, false, OLD.create_time, OLD.copy_location, false, OLD.parent_circ
    FROM actor.usr u WHERE u.id = OLD.usr;
    RETURN OLD;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION public.test_age_parent() RETURNS trigger AS $$
BEGIN
    IF OLD.parent_circ IS NOT NULL THEN
        DELETE FROM action.circulation WHERE id = OLD.parent_circ;
    END IF;
    RETURN OLD;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER action_circulation_aging_tgr BEFORE DELETE ON action.circulation
    FOR EACH ROW EXECUTE PROCEDURE public.test_age_circ();
CREATE TRIGGER age_parent_circ AFTER DELETE ON action.circulation
    FOR EACH ROW EXECUTE PROCEDURE public.test_age_parent();
"""


def test_evergreen_aging_trigger_does_the_copy(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_chain(c, 1, 10, [AS_OF - 100 * DAY, AS_OF - 80 * DAY, AS_OF - 60 * DAY])
        add_circ(c, 4, 10, AS_OF - 50 * DAY, copy=2)
        add_circ(c, 5, 10, AS_OF - 5 * DAY, copy=3)
        c.execute(text(STAND_IN_TRIGGERS))
    context, facts = ctx(db)
    res = enforce_rule(db, RULES["finished_circulations"], context, batch_size=1)
    # Deleting 3 made the trigger age 2 and 1 too: they are counted, once.
    assert (res.changed, res.remaining, res.matched) == (4, 0, 4)
    assert sorted(circs(db)) == [5]
    assert sorted(aged(db)) == [1, 2, 3, 4]
    assert sorted(f["renewals"] for f in {f["fact_key"]: f for f in facts}.values()) == [0, 2]


def test_do_not_retain_settings_are_honoured(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_circ(c, 100, 10, AS_OF - 100 * DAY)
        add_hold(c, 1, 10, cancelled=AS_OF - 100 * DAY, phone="860-555-0101")
        c.execute(
            insert(S.org_unit_setting),
            [
                {"org_unit": BRANCH, "name": "circ.do_not_retain_year_of_birth_on_aged",
                 "value": "true"},
                {"org_unit": 1, "name": "holds.do_not_retain_post_code_on_aged", "value": "true"},
            ],
        )  # fmt: skip
    context, _ = ctx(db)
    enforce_rule(db, RULES["finished_circulations"], context)
    enforce_rule(db, RULES["hold_requests"], context)
    a = aged(db)[100]
    assert a["usr_birth_year"] is None and a["usr_post_code"] == "06103"
    with db.connect() as c:
        h = c.execute(select(S.aged_hold_request)).mappings().one()
    assert h["usr_post_code"] is None and h["usr_birth_year"] == 1980
    assert h["phone_notify"] is True and h["staff_placed"] is False


def test_hold_requests_aged_unless_patron_keeps_history(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11)
        c.execute(
            insert(S.usr_setting),
            [{"usr": 11, "name": "history.hold.retention_start", "value": '"2020-01-01"'}],
        )
        add_hold(c, 1, 10, fulfilled=AS_OF - 40 * DAY, phone="860-555-0101")
        add_hold(c, 2, 10, cancelled=AS_OF - 40 * DAY)
        add_hold(c, 3, 10, fulfilled=AS_OF - 20 * DAY)  # inside the window
        add_hold(c, 4, 10)  # still open
        add_hold(c, 5, 11, fulfilled=AS_OF - 400 * DAY)  # keeps history
    context, _ = ctx(db)
    res = enforce_rule(db, RULES["hold_requests"], context, batch_size=2)
    assert (res.changed, res.kept, res.remaining) == (2, {"keep_history": 1}, 0)
    with db.connect() as c:
        assert sorted(c.execute(select(S.hold_request.c.id)).scalars()) == [3, 4, 5]
        assert sorted(c.execute(select(S.aged_hold_request.c.id)).scalars()) == [1, 2]
        cols = set(S.aged_hold_request.c.keys())
    assert not {"usr", "requestor", "sms_carrier"} & cols


def test_settled_bills_aged_into_evergreens_money_tables(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_bill(c, 9001, 10, AS_OF - 400 * DAY, note="printing, 3 pages")
        add_bill(c, 9002, 10, AS_OF - 100 * DAY)  # inside the window
        add_bill(c, 9003, 10, None)  # still owed
    context, _ = ctx(db)
    res = enforce_rule(db, RULES["settled_bills"], context)
    assert (res.changed, res.remaining) == (1, 0)
    with db.connect() as c:
        assert sorted(c.execute(select(S.grocery.c.id)).scalars()) == [9002, 9003]
        assert sorted(c.execute(select(S.billing.c.xact)).scalars()) == [9002, 9003]
        ab = c.execute(select(S.aged_billing)).mappings().one()
        ap = c.execute(select(S.aged_payment)).mappings().one()
        assert sorted(c.execute(select(S.payment.c.xact)).scalars()) == [9002]
    assert ab["xact"] == 9001 and str(ab["amount"]) == "2.50"
    assert ap["payment_type"] == "credit_card_payment" and ap["accepting_usr"] == STAFF
    assert "cc_number" not in ap and ap["refundable"] is True


def test_expired_patrons_purged_like_evergreen_unless_blocked(db):
    old = AS_OF - timedelta(days=4 * 365)
    with db.begin() as c:
        add_patron(c, 10, expire=old)  # purged
        add_patron(c, 11, expire=old)  # an item still out
        add_circ(c, 1, 11, None, returned=False)
        add_patron(c, 12, expire=old)  # owes money
        add_bill(c, 9001, 12, None)
        add_patron(c, 13, expire=old)  # an open hold
        add_hold(c, 1, 13)
        add_patron(c, 14, expire=old)  # logged in after the card expired
        add_activity(c, 1, 14, old + 30 * DAY)
        add_patron(c, 15, expire=old, profile=CIRCULATORS_GRP)  # staff, through the tree
        add_patron(c, 16, expire=old)  # staff through a secondary group
        c.execute(insert(S.usr_grp_map), [{"usr": 16, "grp": STAFF_GRP}])
        add_patron(c, 17, expire=AS_OF - 365 * DAY)  # expired, not long enough
        add_patron(c, 18)  # uses patron 10's address as its billing address
        c.execute(text("UPDATE actor.usr SET billing_address = 10 WHERE id = 18"))
        c.execute(
            insert(S.usr_setting),
            [{"usr": 10, "name": "opac.default_phone", "value": '"860-555-0110"'}],
        )
    context, _ = ctx(db)
    res = enforce_rule(db, RULES["expired_patrons"], context, batch_size=3)
    assert res.changed == 1
    assert res.kept == {
        "active_after_expiry": 1,
        "open_hold": 1,
        "open_loan": 1,
        "outstanding_balance": 1,
        "staff_account": 3,  # 15, 16 and the staff account of the fixture
    }
    u = S.usr
    with db.connect() as c:
        row = c.execute(select(u).where(u.c.id == 10)).mappings().one()
        assert row["usrname"] == row["family_name"] == row["first_given_name"] == "10-PURGED"
        assert row["deleted"] is True and row["active"] is False
        for col in ("email", "day_phone", "dob", "card", "mailing_address", "ident_value"):
            assert row[col] is None, col
        assert (
            c.execute(select(func.count()).select_from(S.card).where(S.card.c.usr == 10)).scalar()
            == 0
        )
        assert c.execute(select(func.count()).select_from(S.usr_setting)).scalar() == 0
        # Patron 10's address is 18's billing address: it moved to 18, not deleted.
        assert c.execute(select(S.usr_address.c.usr).where(S.usr_address.c.id == 10)).scalar() == 18
        assert c.execute(select(S.usr_address.c.usr).where(S.usr_address.c.id == 18)).scalar() == 18
        untouched = c.execute(
            select(func.count()).select_from(u).where(u.c.id.in_([11, 12, 13, 14, 15, 16, 17]),
                                                      ~u.c.usrname.like("%PURGED%"))
        ).scalar()  # fmt: skip
    assert untouched == 7


def test_user_activity_deleted_after_its_window(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_activity(c, 1, 10, AS_OF - 400 * DAY)
        add_activity(c, 2, 10, AS_OF - 300 * DAY)
        add_activity(c, 3, None, AS_OF - 500 * DAY)
    context, _ = ctx(db)
    res = enforce_rule(db, RULES["user_activity"], context)
    assert (res.changed, res.remaining) == (2, 0)
    with db.connect() as c:
        assert c.execute(select(S.usr_activity.c.id)).scalars().all() == [2]


def test_impossible_dates_are_data_errors_never_very_old(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_circ(c, 1, 10, datetime(1850, 1, 1), start=datetime(1850, 1, 1))
        add_circ(c, 2, 10, AS_OF - 90 * DAY, copy=2)
        c.execute(text("INSERT INTO actor.usr_activity (usr, etype, event_time) "
                       "VALUES (10, 1, '-infinity')"))  # fmt: skip
    context, _ = ctx(db)
    res = enforce_rule(db, RULES["finished_circulations"], context)
    assert (res.changed, res.data_errors, res.remaining) == (1, 1, 0)
    assert sorted(circs(db)) == [1]
    act = enforce_rule(db, RULES["user_activity"], context)
    assert (act.changed, act.data_errors) == (0, 1)


def test_missing_table_or_column_named_before_any_change(eg):
    with pg_database() as url:
        eng = engine_for(url)
        make_evergreen(eng)
        with eng.begin() as c:
            add_patron(c, 10)
            add_circ(c, 1, 10, AS_OF - 90 * DAY)
            c.execute(text("DROP TABLE action.aged_circulation"))
            c.execute(text("ALTER TABLE action.hold_request DROP COLUMN cancel_time"))
        context, _ = ctx(eng)
        with eng.connect() as c, pytest.raises(SourceSchemaError) as err:
            check_schema(c, list(RULES.values()), context)
        msg = str(err.value)
        assert "table action.aged_circulation (needed by finished_circulations)" in msg
        assert "column action.hold_request.cancel_time" in msg
        assert sorted(circs(eng)) == [1]
        eng.dispose()


class Stop(Exception):
    pass


@pytest.mark.parametrize("stop_after", [1, 3])
def test_interrupted_run_converges_on_rerun(db, stop_after):
    with db.begin() as c:
        for uid in range(10, 14):
            add_patron(c, uid)
        for i in range(15):
            fins = [AS_OF - (300 - 10 * i) * DAY] + ([AS_OF - (200 - 5 * i) * DAY] * (i % 3))
            add_chain(c, 1 + 3 * i, 10 + i % 4, fins, copy=1 + i)

    def boom(n):
        if n == stop_after:
            raise Stop

    context, _ = ctx(db)
    with pytest.raises(Stop):
        enforce_rule(db, RULES["finished_circulations"], context, batch_size=4, after_batch=boom)
    partial = set(circs(db))
    res = enforce_rule(db, RULES["finished_circulations"], context, batch_size=4)
    assert res.remaining == 0 and circs(db) == {}
    assert len(aged(db)) == 15 + sum(i % 3 for i in range(15))
    assert partial, "the stop left work for the rerun"


def test_failed_fact_write_changes_nothing(db):
    with db.begin() as c:
        add_patron(c, 10)
        add_circ(c, 1, 10, AS_OF - 90 * DAY)

    def broken(rows):
        raise RuntimeError("warehouse down")

    context, _ = ctx(db, sink=broken)
    with pytest.raises(RuntimeError):
        enforce_rule(db, RULES["finished_circulations"], context)
    assert circs(db) == {1: 10}
    context.facts_sink = None
    with pytest.raises(SourceConfigError):
        enforce_rule(db, RULES["finished_circulations"], context)
    assert circs(db) == {1: 10} and aged(db) == {}


def test_options_checked_and_non_postgres_refused(tmp_path):
    assert (
        check_options({"timezone": "America/New_York", "aging": {"hold_requests": "engine"}}) == []
    )
    problems = check_options(
        {"timezone": "Mars/Base", "batch_size": 0, "aging": {"notices": "engine",
         "finished_circulations": "sometimes"}, "colour": "blue"}
    )  # fmt: skip
    assert any(p.startswith("timezone:") for p in problems)
    assert any(p.startswith("batch_size:") for p in problems)
    assert any(p.startswith("aging.notices:") for p in problems)
    assert any(p.startswith("aging.finished_circulations:") for p in problems)
    assert any(p.startswith("colour:") for p in problems)
    text_policy = load_policy().path
    with open(text_policy, encoding="utf-8") as f:
        bad = f.read().replace("finished_circulations: engine", "finished_circulations: maybe")
    with pytest.raises(Exception, match=r"sources\.evergreen\.aging\.finished_circulations"):
        parse_policy(bad, "bad.yaml")
    sqlite = create_engine(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(SourceConfigError, match="PostgreSQL"):
        CONNECTOR.prepare(sqlite, {}, Context(as_of=AS_OF))
