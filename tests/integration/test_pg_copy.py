"""Facts into a real PostgreSQL warehouse by COPY: every value arrives as it was sent,
keys already there are skipped and counted honestly, a batch is all or nothing, and a
refused batch is described without any of its values."""

from __future__ import annotations

import traceback
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patron_privacy.facts import write_circulation_facts
from patron_privacy.pg_copy import BatchNotWritten, copy_ignoring_duplicates
from patron_privacy.warehouse import circulation_facts, create_warehouse
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select, text

pytestmark = pytest.mark.integration

CANARY = "zqx.copy.canary@example.org"


@pytest.fixture(scope="module")
def pg(postgres_module_url):
    eng = create_engine(postgres_module_url, hide_parameters=True)
    create_warehouse(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def facts(pg):
    with pg.begin() as c:
        c.execute(text("TRUNCATE circulation_facts"))
    return pg


def fact(i: int, **kw) -> dict:
    row = {
        "fact_key": f"{i:064x}",
        "source": "koha",
        "loan_date": date(2026, 10, 1 + i % 28),
        "return_date": None,
        "branch": "MAIN",
        "item_type": "BK",
        "collection": None,
        "patron_category": "PT",
        "category_type": "A",
        "age_band": "19-64",
        "patron_pseudonym": f"{i % 7:064x}",
        "reporting_period": "2026",
        "renewals": i % 3,
    }
    return row | kw


def stored(eng) -> dict[str, dict]:
    with eng.connect() as c:
        rows = c.execute(select(circulation_facts)).mappings().all()
    return {r["fact_key"]: dict(r) for r in rows}


def test_new_keys_are_written_and_known_ones_skipped_and_counted(facts):
    rows = [fact(i) for i in range(50)]
    with facts.begin() as c:
        assert write_circulation_facts(c, rows) == 50
    with facts.begin() as c:
        assert write_circulation_facts(c, rows[:10] + [fact(i) for i in range(50, 55)]) == 5
    got = stored(facts)
    assert len(got) == 55
    assert got[rows[3]["fact_key"]] == rows[3]


def test_a_column_left_out_gets_the_tables_default(facts):
    row = fact(1)
    del row["renewals"]
    with facts.begin() as c:
        assert write_circulation_facts(c, [row]) == 1
    assert stored(facts)[row["fact_key"]]["renewals"] == 0


def test_two_batches_in_one_transaction_and_a_rolled_back_one_leave_nothing_behind(facts):
    with facts.begin() as c:
        assert write_circulation_facts(c, [fact(1), fact(2)]) == 2
        assert write_circulation_facts(c, [fact(2), fact(3)]) == 1
    with pytest.raises(RuntimeError, match="after the batch"), facts.begin() as c:
        assert write_circulation_facts(c, [fact(4)]) == 1
        raise RuntimeError("something failed after the batch")
    assert sorted(stored(facts)) == [fact(i)["fact_key"] for i in (1, 2, 3)]
    with facts.connect() as c:
        left = c.execute(text("SELECT count(*) FROM pg_class WHERE relname LIKE 'pp_copy_%'"))
        assert left.scalar_one() == 0


@pytest.mark.parametrize(
    ("bad", "where", "meaning"),
    [
        ({"branch": CANARY + "-" * 40}, "at row 3 in column branch", "too long"),
        ({"source": None}, "in column source", "required"),
    ],
)
def test_a_refused_batch_is_described_without_its_values(facts, bad, where, meaning):
    rows = [fact(1), fact(2), fact(3, patron_category=CANARY[:30], **bad)]
    with pytest.raises(BatchNotWritten) as caught, facts.begin() as c:
        write_circulation_facts(c, rows)
    message = str(caught.value)
    assert "circulation_facts" in message and where in message and meaning in message
    told = "".join(traceback.format_exception(caught.value))
    assert "zqx" not in told and "Failing row" not in told
    assert stored(facts) == {}, "nothing of a refused batch is written"


def test_a_write_that_fails_for_another_reason_says_so_without_values(facts):
    with facts.connect() as c:
        c.exec_driver_sql("SET statement_timeout = 1")  # this session's writes are cancelled
        rows = [fact(i, patron_category=CANARY[:30]) for i in range(20_000)]
        with pytest.raises(BatchNotWritten) as caught:
            write_circulation_facts(c, rows)
        c.rollback()
    message = str(caught.value)
    assert "did not take a batch of 20000 rows" in message and "SQLSTATE 57014" in message
    assert "zqx" not in "".join(traceback.format_exception(caught.value))
    assert stored(facts) == {}


# Text as a source may hold it: COPY's separators and escapes, quotes, any letter.
awkward = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.one_of(st.none(), awkward), min_size=1, max_size=8))
def test_every_text_value_arrives_exactly_as_sent(pg, values):
    table = Table(
        "copy_roundtrip",
        MetaData(),
        Column("k", Integer, primary_key=True),
        Column("v", String(40)),
    )
    with pg.begin() as c:
        table.drop(c, checkfirst=True)
        table.create(c)
        rows = [{"k": i, "v": v} for i, v in enumerate(values)]
        assert copy_ignoring_duplicates(c, table, rows) == len(rows)
        got = dict(c.execute(select(table.c.k, table.c.v)).all())
    assert got == {i: v for i, v in enumerate(values)}
