"""The engine on hand-built Koha states (SQLite): what changes, what is kept and why,
and that a run stopped anywhere converges on rerun."""

from __future__ import annotations

import dataclasses
import time
from datetime import date, datetime, timedelta

import pytest
from koha_builders import AS_OF, T, add_fine, add_old_issue, add_patron, make_koha
from patron_privacy import connections
from patron_privacy.engine import (
    Context,
    Hold,
    SourceSchemaError,
    check_schema,
    enforce_rule,
    inspect_rule,
)
from patron_privacy.facts import Pseudonymizer
from patron_privacy.policy import load_policy
from patron_privacy.sources.base import SourceConfigError
from patron_privacy.sources.koha.connector import CONNECTOR
from sqlalchemy import func, select, update

RULES = {r.category.name: r for r in load_policy().rules_for("koha")}
KEYS = Pseudonymizer({str(y): f"key-{y}" for y in range(2000, 2030)})


def ctx(holds=(), sink=None, anon=1):
    facts = []
    return Context(
        as_of=AS_OF,
        anonymous_patron=anon,
        holds_loader=lambda: list(holds),
        facts_sink=sink or (lambda rows: facts.extend(rows) or len(rows)),
        pseudonymizer=KEYS,
    ), facts


@pytest.fixture
def koha(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path}/koha.db")
    make_koha(eng)
    return eng


def loans(eng):
    with eng.connect() as c:
        return dict(
            c.execute(select(T["old_issues"].c.issue_id, T["old_issues"].c.borrowernumber)).all()
        )


def test_returned_loans_window_and_blockers(koha):
    with koha.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11, privacy=0)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=40))  # eligible
        add_old_issue(c, 2, 10, AS_OF - timedelta(days=29))  # inside window
        add_old_issue(c, 3, 11, AS_OF - timedelta(days=400))  # keep history
        add_old_issue(c, 4, 10, AS_OF - timedelta(days=60))  # fine owed on it
        add_old_issue(c, 5, 10, AS_OF - timedelta(days=60))  # fine paid
        add_old_issue(c, 6, 10, None)  # bad data
        add_old_issue(c, 7, 10, AS_OF + timedelta(days=1))  # after as-of
        add_fine(c, 1, 10, 4, 2.5, AS_OF - timedelta(days=60))
        add_fine(c, 2, 10, 5, 0, AS_OF - timedelta(days=60))
    context, facts = ctx()
    dry = inspect_rule(koha, RULES["returned_loans"], context, "dry_run")
    assert (dry.remaining, dry.kept, dry.data_errors) == (
        2,
        {"keep_history": 1, "outstanding_balance": 1},
        1,
    )
    assert loans(koha)[1] == 10, "a dry run changes nothing"

    res = enforce_rule(koha, RULES["returned_loans"], context, batch_size=1)
    assert res.changed == 2 and res.remaining == 0 and res.matched == 4
    assert loans(koha) == {1: 1, 2: 10, 3: 11, 4: 10, 5: 1, 6: 10, 7: 10}
    assert res.facts_recorded == 2 and len(facts) == 2
    assert all(f["patron_pseudonym"] and f["patron_pseudonym"] != "10" for f in facts)


def test_legal_hold_keeps_records_and_binds_mid_run(koha):
    from patron_privacy.engine import Hold

    with koha.begin() as c:
        for bn in (10, 11, 12):
            add_patron(c, bn)
        for i in range(1, 13):
            add_old_issue(c, i, 10 + (i % 3), AS_OF - timedelta(days=100 + i))
    holds: list = []
    context, _ = ctx(holds=holds)
    # The hold on patron 12 arrives after the first batch: later batches honour it.
    res = enforce_rule(
        koha,
        RULES["returned_loans"],
        context,
        batch_size=3,
        after_batch=lambda n: holds.append(Hold("12")) if n == 1 else None,
    )
    state = loans(koha)
    first_batch = [1, 2, 3]
    assert all(state[i] == 1 for i in first_batch)
    later_of_12 = [i for i in range(4, 13) if 10 + (i % 3) == 12]
    assert all(state[i] == 12 for i in later_of_12)
    assert res.kept == {"legal_hold": len(later_of_12)} and res.remaining == 0


def test_hold_limited_to_categories_and_dates(koha):
    from patron_privacy.engine import Hold

    with koha.begin() as c:
        add_patron(c, 10)
        add_old_issue(c, 1, 10, datetime(2025, 3, 1))
        add_old_issue(c, 2, 10, datetime(2025, 9, 1))
    hold = Hold("10", frozenset({"returned_loans"}), datetime(2025, 1, 1), datetime(2025, 6, 1))
    context, _ = ctx(holds=[hold])
    enforce_rule(koha, RULES["returned_loans"], context)
    assert loans(koha) == {1: 10, 2: 1}
    other = Hold("10", frozenset({"hold_history"}))
    context, _ = ctx(holds=[other])
    enforce_rule(koha, RULES["returned_loans"], context)
    assert loans(koha) == {1: 1, 2: 1}


class Stop(Exception):
    pass


def _build_many(eng, n=60):
    with eng.begin() as c:
        for bn in range(10, 20):
            add_patron(c, bn, privacy=0 if bn == 13 else 1)
        for i in range(1, n + 1):
            add_old_issue(c, i, 10 + i % 10, AS_OF - timedelta(days=5 * i))


@pytest.mark.parametrize("stop_after", [1, 2, 5])
def test_interrupted_run_converges_on_rerun(tmp_path, stop_after):
    a = connections.engine_for_url(f"sqlite:///{tmp_path}/a.db")
    b = connections.engine_for_url(f"sqlite:///{tmp_path}/b.db")
    for e in (a, b):
        make_koha(e)
        _build_many(e)
    context, _ = ctx()
    enforce_rule(a, RULES["returned_loans"], context, batch_size=7)

    def boom(n):
        if n == stop_after:
            raise Stop

    with pytest.raises(Stop):
        enforce_rule(b, RULES["returned_loans"], context, batch_size=7, after_batch=boom)
    assert loans(b) != loans(a)
    res = enforce_rule(b, RULES["returned_loans"], context, batch_size=7)
    assert loans(b) == loans(a) and res.remaining == 0
    again = enforce_rule(b, RULES["returned_loans"], context, batch_size=7)
    assert again.changed == 0, "a rerun on a finished state changes nothing"


def test_failed_fact_write_changes_nothing(koha):
    with koha.begin() as c:
        add_patron(c, 10)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=40))

    def broken(rows):
        raise RuntimeError("warehouse down")

    context, _ = ctx(sink=broken)
    with pytest.raises(RuntimeError):
        enforce_rule(koha, RULES["returned_loans"], context)
    assert loans(koha) == {1: 10}
    context.facts_sink = None
    with pytest.raises(SourceConfigError):
        enforce_rule(koha, RULES["returned_loans"], context)
    assert loans(koha) == {1: 10}


def test_a_batch_commits_only_after_its_facts_are_written(koha):
    """Facts are written alongside the change: a slow write that fails on the second
    batch must still roll that batch back, and leave the first batch's work in place."""
    with koha.begin() as c:
        add_patron(c, 10)
        for i in range(1, 5):
            add_old_issue(c, i, 10, AS_OF - timedelta(days=40 + i))
    calls = []

    def slow_then_broken(rows):
        time.sleep(0.3)  # the change's UPDATE has long finished by now
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("warehouse down")
        return len(rows)

    context, _ = ctx(sink=slow_then_broken)
    with pytest.raises(RuntimeError):
        enforce_rule(koha, RULES["returned_loans"], context, batch_size=2)
    assert calls == [2, 2]
    assert loans(koha) == {1: 1, 2: 1, 3: 10, 4: 10}  # 1: the anonymous patron


def test_expired_patron_anonymized_like_koha_unless_blocked(koha):
    old = date(2022, 1, 1)
    with koha.begin() as c:
        add_patron(c, 10, dateexpiry=old)
        add_patron(c, 11, dateexpiry=old, protected=1)
        add_patron(c, 12, dateexpiry=old)
        add_patron(c, 13, dateexpiry=date(2024, 1, 1))  # expired, but not 3 years ago
        add_patron(c, 14, dateexpiry=None)  # never expires
        add_patron(c, 15, dateexpiry=old)
        add_fine(c, 1, 15, None, 5.0, datetime(2021, 6, 1))
        c.execute(
            T["issues"].insert(),
            [{"borrowernumber": 12, "itemnumber": 9, "issuedate": datetime(2021, 12, 1)}],
        )
    context, _ = ctx()
    res = enforce_rule(koha, RULES["expired_patrons"], context)
    assert res.changed == 1 and res.kept == {
        "open_loan": 1,
        "outstanding_balance": 1,
        "protected": 1,
    }
    with koha.connect() as c:
        b = T["borrowers"]
        row = c.execute(select(b).where(b.c.borrowernumber == 10)).mappings().one()
        assert row["anonymized"] == 1
        assert all(
            row[k] in (None, "")
            for k in (
                "surname",
                "firstname",
                "email",
                "cardnumber",
                "dateofbirth",
                "address",
                "phone",
                "userid",
            )
        )
        untouched = c.execute(
            select(func.count())
            .select_from(b)
            .where(b.c.borrowernumber.in_([11, 12, 13, 14, 15]), b.c.anonymized == 0)
        ).scalar()
        assert untouched == 5


def test_deletes_and_strips(koha):
    sh, mq = T["search_history"], T["message_queue"]
    with koha.begin() as c:
        add_patron(c, 10)
        c.execute(
            sh.insert(),
            [
                {
                    "id": 1,
                    "userid": 10,
                    "sessionid": "s",
                    "query_desc": "q",
                    "query_cgi": "q",
                    "total": 1,
                    "time": AS_OF - timedelta(days=2),
                },
                {
                    "id": 2,
                    "userid": 10,
                    "sessionid": "s",
                    "query_desc": "q",
                    "query_cgi": "q",
                    "total": 1,
                    "time": AS_OF - timedelta(hours=3),
                },
            ],
        )
        c.execute(
            mq.insert(),
            [
                {
                    "message_id": 1,
                    "borrowernumber": 10,
                    "subject": "s",
                    "content": "c",
                    "message_transport_type": "email",
                    "status": "sent",
                    "time_queued": AS_OF - timedelta(days=45),
                },
                {
                    "message_id": 2,
                    "borrowernumber": 10,
                    "subject": "s",
                    "content": "c",
                    "message_transport_type": "email",
                    "status": "pending",
                    "time_queued": AS_OF - timedelta(days=45),
                },
            ],
        )
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=3), note="free text")
        add_old_issue(c, 2, 10, AS_OF - timedelta(days=1), note="free text")
    context, _ = ctx()
    assert enforce_rule(koha, RULES["opac_search_history"], context).changed == 1
    res = enforce_rule(koha, RULES["notices"], context)
    assert res.changed == 1 and res.kept == {"pending_notice": 1}
    strip = dataclasses.replace(
        RULES["returned_loans"],
        action="strip",
        fields=("note",),
        cutoff_delta=RULES["opac_search_history"].cutoff_delta,
    )
    assert enforce_rule(koha, strip, context).changed == 1
    with koha.connect() as c:
        assert c.execute(select(sh.c.id)).scalars().all() == [2]
        notes = dict(c.execute(select(T["old_issues"].c.issue_id, T["old_issues"].c.note)).all())
        assert notes == {1: None, 2: "free text"}


def test_missing_column_fails_before_any_change(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path}/k.db")
    make_koha(eng)
    with eng.begin() as c:
        add_patron(c, 10)
        c.exec_driver_sql("ALTER TABLE borrowers DROP COLUMN protected")
    context, _ = ctx()
    with eng.connect() as c, pytest.raises(SourceSchemaError, match=r"borrowers\.protected"):
        check_schema(c, list(RULES.values()), context)
    with eng.begin() as c:
        c.exec_driver_sql("DROP TABLE search_history")
    with eng.connect() as c, pytest.raises(SourceSchemaError, match="table search_history"):
        check_schema(c, list(RULES.values()), context)


def test_anonymous_patron_must_exist(koha):
    context, _ = ctx(anon=None)
    CONNECTOR.prepare(koha, {"anonymous_patron": "preference"}, context)
    assert context.anonymous_patron == 1
    with koha.begin() as c:
        c.execute(update(T["systempreferences"]).values(value="999"))
    with pytest.raises(SourceConfigError, match="999 does not exist"):
        CONNECTOR.prepare(koha, {"anonymous_patron": "preference"}, context)
    with koha.begin() as c:
        c.execute(update(T["systempreferences"]).values(value=""))
    with pytest.raises(SourceConfigError, match="AnonymousPatron is not set"):
        CONNECTOR.prepare(koha, {"anonymous_patron": "preference"}, context)
    CONNECTOR.prepare(koha, {"anonymous_patron": None}, context)
    assert context.anonymous_patron is None


def test_null_anonymous_patron_unlinks(koha):
    with koha.begin() as c:
        add_patron(c, 10)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=40))
    context, _ = ctx(anon=None)
    enforce_rule(koha, RULES["returned_loans"], context)
    assert loans(koha) == {1: None}


def test_a_hold_on_someone_else_does_not_keep_rows_without_a_patron(koha):
    mq = T["message_queue"]
    with koha.begin() as c:
        add_patron(c, 10)
        c.execute(
            mq.insert(),
            [
                {
                    "message_id": 1,
                    "borrowernumber": None,
                    "subject": "s",
                    "content": "c",
                    "message_transport_type": "email",
                    "status": "sent",
                    "time_queued": AS_OF - timedelta(days=45),
                },
            ],
        )
    context, _ = ctx(holds=[Hold("10")])
    res = enforce_rule(koha, RULES["notices"], context)
    assert res.changed == 1 and res.remaining == 0
