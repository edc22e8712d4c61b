"""The engine's source-neutral capabilities that a second ILS needed, on SQLite: anonymizing
by moving rows (copy without the patron, then delete), newest-first batches for rows that
refer to earlier rows of their own table, a source that enforces a category itself (verify
only), and missing tables named with their schema."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from dateutil.relativedelta import relativedelta
from patron_privacy import connections
from patron_privacy.engine import (
    Anonymize,
    Category,
    Context,
    Rule,
    SourceSchemaError,
    batch_workers,
    check_schema,
    enforce_rule,
    inspect_rule,
)
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    event,
    exc,
    func,
    insert,
    select,
    true,
)

AS_OF = datetime(2026, 11, 30)
md = MetaData()
loans = Table(
    "loans",
    md,
    Column("id", Integer, primary_key=True),
    Column("code", String(8), nullable=False, unique=True),
    Column("patron", Integer, nullable=False),
    Column("renews", Integer, ForeignKey("loans.id")),
    Column("done", DateTime),
)
archive = Table(
    "archive",
    md,
    Column("id", Integer, primary_key=True),
    Column("renews", Integer),
    Column("done", DateTime),
    schema="arch",
)


def _move(ctx, where):
    cols = ["id", "renews", "done"]
    return [
        insert(archive).from_select(cols, select(*(loans.c[c] for c in cols)).where(where)),
        delete(loans).where(where),
    ]


def category(*, newest_first=True, key=loans.c.id, by_source=False, count=None) -> Category:
    return Category(
        name="loans",
        source="test",
        table=loans,
        key=key,
        clock=loans.c.done,
        patron=loans.c.patron,
        description="loans",
        scope=lambda ctx: loans.c.done.isnot(None),
        anonymize=Anonymize(identifying=lambda ctx: true(), statements=_move, count=count),
        deletable=False,
        newest_first=newest_first,
        enforced_by_source=lambda ctx: by_source,
    )


def rule(cat: Category) -> Rule:
    return Rule(cat, "P30D", relativedelta(days=30), "anonymize", ("legal_hold",))


@pytest.fixture
def db(tmp_path):
    eng = connections.engine_for_url(f"sqlite:///{tmp_path}/main.db")

    @event.listens_for(eng, "connect")
    def attach(dbapi_conn, _record):
        dbapi_conn.execute(f"ATTACH DATABASE '{tmp_path}/arch.db' AS arch")

    md.create_all(eng)
    with eng.begin() as c:
        rows = []
        for n in range(1, 13):
            # Chains of three: n renews n - 1 unless n starts a chain.
            renews = None if n % 3 == 1 else n - 1
            done = AS_OF - timedelta(days=100 - n) if n <= 9 else AS_OF - timedelta(days=2)
            rows.append({"id": n, "code": f"L{n:03d}", "patron": n % 2, "renews": renews,
                         "done": done})  # fmt: skip
        c.execute(insert(loans), rows)
    return eng


def _left(eng) -> list[int]:
    with eng.connect() as c:
        return sorted(c.execute(select(loans.c.id)).scalars())


def _archived(eng) -> list[int]:
    with eng.connect() as c:
        return sorted(c.execute(select(archive.c.id)).scalars())


@pytest.mark.parametrize("batch", [1, 2, 4, 100])
def test_moves_newest_first_never_strand_a_reference(db, batch):
    ctx = Context(as_of=AS_OF)
    res = enforce_rule(db, rule(category()), ctx, batch_size=batch)
    assert (res.changed, res.remaining, res.matched) == (9, 0, 9)
    assert _left(db) == [10, 11, 12] and _archived(db) == list(range(1, 10))


def test_oldest_first_would_delete_a_row_still_referred_to(db):
    with pytest.raises(exc.IntegrityError):
        enforce_rule(db, rule(category(newest_first=False)), Context(as_of=AS_OF), batch_size=1)
    assert _left(db) == list(range(1, 13)), "the failed batch rolled back"


def test_keyset_walk_downwards_for_keys_that_cannot_be_stepped(db):
    cat = category(key=loans.c.code)
    res = enforce_rule(db, rule(cat), Context(as_of=AS_OF), batch_size=2)
    assert (res.changed, res.remaining) == (9, 0)
    assert _left(db) == [10, 11, 12]


def test_count_query_overrides_the_last_rowcount(db):
    cat = category(count=lambda ctx, where: select(func.count() * 10).where(where))
    res = enforce_rule(db, rule(cat), Context(as_of=AS_OF), batch_size=100)
    assert res.changed == 90 and _archived(db) == list(range(1, 10))


def test_source_enforced_category_is_only_verified(db):
    ctx = Context(as_of=AS_OF)
    res = enforce_rule(db, rule(category(by_source=True)), ctx, batch_size=2)
    assert (res.mode, res.enforced_by, res.changed, res.batches) == ("enforce", "source", 0, 0)
    assert res.remaining == 9 and _left(db) == list(range(1, 13))
    assert res.remaining == inspect_rule(db, rule(category()), ctx, "verify").remaining


def test_missing_schema_qualified_table_is_named(db):
    ctx = Context(as_of=AS_OF)
    with db.connect() as c:
        check_schema(c, [rule(category())], ctx)
    with db.begin() as c:
        c.exec_driver_sql("DROP TABLE arch.archive")
    with db.connect() as c, pytest.raises(SourceSchemaError, match=r"table arch\.archive"):
        check_schema(c, [rule(category())], ctx)
    assert _left(db) == list(range(1, 13))


def test_anonymize_needs_exactly_one_way():
    with pytest.raises(ValueError, match="exactly one"):
        Anonymize(identifying=lambda ctx: true())
    with pytest.raises(ValueError, match="exactly one"):
        Anonymize(identifying=lambda ctx: true(), values=lambda ctx: {}, statements=_move)


def test_one_worker_where_order_or_the_database_forbids_more(db, tmp_path):
    mariadb = connections.engine_for_url("mysql+pymysql://root@127.0.0.1:3306/x")
    assert batch_workers(mariadb, rule(category(newest_first=False)), 4) == 4
    # Newest-first batches must run in order; SQLite takes one writer at a time.
    assert batch_workers(mariadb, rule(category(newest_first=True)), 4) == 1
    assert batch_workers(db, rule(category(newest_first=False)), 4) == 1
    res = enforce_rule(db, rule(category()), Context(as_of=AS_OF), batch_size=1, workers=4)
    assert (res.changed, res.batches) == (9, 9)
    assert _left(db) == [10, 11, 12] and _archived(db) == list(range(1, 10))
