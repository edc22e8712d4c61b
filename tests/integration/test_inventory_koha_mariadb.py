"""Discovery on Koha's real schema, on MariaDB: every table with a key to ``borrowers``.

CI cannot fetch Koha, and Koha's code is not ours to commit, so the full-schema check
runs twice:

* always, from ``tests/fixtures/koha_borrower_references.json``: facts read from
  ``kohastructure.sql`` (each table and column that references ``borrowers``, and the
  keyless references). The test builds exactly those tables (a primary key plus the
  referencing columns, with real foreign keys) and discovery must find exactly them;
* when ``KOHA_STRUCTURE_SQL`` names a copy of Koha's own ``kohastructure.sql``: the file
  is loaded statement by statement and discovery must find every foreign key to
  ``borrowers`` the file declares, and the keyless references.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from patron_privacy.inventory import COVERED, KEPT, build_report, discover
from patron_privacy.sources.koha.connector import INVENTORY, KEYLESS_REFERENCES
from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    text,
)

pytestmark = pytest.mark.integration

FIXTURE = json.loads(
    (
        Path(__file__).resolve().parent.parent / "fixtures" / "koha_borrower_references.json"
    ).read_text()
)
STRING_KEYLESS = {"userid", "cardnumber", "username", "librarian", "authorisedby"}


def _fk_pairs(places) -> set[tuple[str, str]]:
    return {
        (name, link.column)
        for name, place in places.items()
        for link in place.links
        if link.kind == "foreign key"
    }


def _keyless_pairs(places) -> set[tuple[str, str]]:
    return {
        (name, link.column)
        for name, place in places.items()
        for link in place.links
        if link.kind == "keyless"
    }


def _build_from_facts(engine) -> None:
    md = MetaData()
    Table("borrowers", md, Column("borrowernumber", Integer, primary_key=True))
    tables: dict[str, list[tuple[str, bool]]] = {}
    for table, cols in FIXTURE["foreign_keys"].items():
        tables.setdefault(table, []).extend((c, True) for c in cols)
    for table, cols in FIXTURE["keyless"].items():
        tables.setdefault(table, []).extend((c, False) for c in cols)
    for table, cols in tables.items():
        items = [Column("pp_row_id", Integer, primary_key=True)]
        for i, (col, keyed) in enumerate(cols):
            typ = String(60) if col in STRING_KEYLESS or col.startswith("hashed") else Integer
            items.append(Column(col, typ))
            if keyed:
                items.append(
                    ForeignKeyConstraint(
                        [col], ["borrowers.borrowernumber"], name=f"pp_{table[:40]}_{i}"
                    )
                )
        Table(table, md, *items)
    md.create_all(engine)


def test_fixture_facts_are_the_issue_counts():
    fks = FIXTURE["foreign_keys"]
    assert len(fks) == FIXTURE["foreign_key_tables"]
    assert sum(len(v) for v in fks.values()) == FIXTURE["foreign_key_columns"]
    # The keyless list in the connector is the one place these facts live.
    connector_keyless = {(k.table, k.column) for k in KEYLESS_REFERENCES}
    fixture_keyless = {(t, c) for t, cols in FIXTURE["keyless"].items() for c in cols}
    assert fixture_keyless == connector_keyless


def test_discovery_finds_every_reference_in_kohas_schema(mariadb_url):
    engine = create_engine(mariadb_url)
    try:
        _build_from_facts(engine)
        places = discover(engine, INVENTORY)
    finally:
        engine.dispose()
    expected = {(t, c) for t, cols in FIXTURE["foreign_keys"].items() for c in cols}
    found = _fk_pairs(places)
    assert found == expected
    assert len({t for t, _ in found}) == FIXTURE["foreign_key_tables"]
    assert len(found) == FIXTURE["foreign_key_columns"]
    keyless = {(t, c) for t, cols in FIXTURE["keyless"].items() for c in cols}
    assert _keyless_pairs(places) == keyless
    for must in (
        ("statistics", "borrowernumber"),
        ("search_history", "userid"),
        ("action_logs", "object"),
    ):
        assert must in _keyless_pairs(places)
    assert places["borrowers"].links[0].kind == "patron key"


def test_shipped_policy_classifies_every_place_of_kohas_schema(mariadb_url, monkeypatch, capsys):
    """Every table of Koha's real schema that links to a patron is covered by a rule or kept
    on purpose with a reason: 100% classified, through the CLI as a person runs it."""
    from patron_privacy.cli import main
    from patron_privacy.inventory import COVERED, KEPT, build_report
    from patron_privacy.policy import load_policy

    engine = create_engine(mariadb_url)
    try:
        _build_from_facts(engine)
        report = build_report("koha", None, bind=engine)
    finally:
        engine.dispose()
    fixture_tables = set(FIXTURE["foreign_keys"]) | set(FIXTURE["keyless"]) | {"borrowers"}
    status = {c.place.table: c for c in report.places}
    assert set(status) == fixture_tables
    assert report.uncovered == [] and report.coverage_pct == 100.0
    reasons = {k.table: k.reason for k in load_policy().kept_on_purpose if k.source == "koha"}
    for table, c in status.items():
        assert c.status in (COVERED, KEPT), table
        if c.status == KEPT:
            assert c.by == [reasons[table]] and len(reasons[table]) > 40, table
    # The same figure from the command line, against the same database.
    host_url = mariadb_url.replace("mysql+pymysql://", "mysql://").split("?")[0]
    monkeypatch.setenv("AIRFLOW_CONN_KOHA_DB", host_url)
    assert main(["inventory", "--source", "koha", "--fail-on-uncovered"]) == 0
    out = capsys.readouterr().out
    assert f"{len(fixture_tables)} of {len(fixture_tables)} places classified (100.0%)" in out


# --- Koha's own kohastructure.sql, when a copy is at hand -------------------------------------


def _statements(sql: str):
    """Split a mysqldump on ``;`` at line ends, outside quotes and comments."""
    out, buf, i, n = [], [], 0, len(sql)
    quote = None
    while i < n:
        ch = sql[i]
        if quote:
            buf.append(ch)
            if ch == quote:
                if i + 1 < n and sql[i + 1] == quote:  # '' inside a string
                    buf.append(sql[i + 1])
                    i += 1
                else:
                    quote = None
            elif ch == "\\" and quote == "'" and i + 1 < n:
                buf.append(sql[i + 1])
                i += 1
        elif ch in "'`\"":
            quote = ch
            buf.append(ch)
        elif sql.startswith("-- ", i) or sql.startswith("--\n", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
        else:
            buf.append(ch)
        i += 1
    tail = "".join(buf).strip()
    if tail:
        out.append(tail)
    return out


FK_TO_BORROWERS = re.compile(
    r"FOREIGN KEY \(([^)]*)\) REFERENCES `?borrowers`? ?\(`?borrowernumber`?\)", re.I
)


def _declared_pairs(create_statements: list[str]) -> set[tuple[str, str]]:
    pairs = set()
    for stmt in create_statements:
        name = re.match(r"CREATE TABLE (?:IF NOT EXISTS )?`?(\w+)`?", stmt, re.I).group(1)
        for m in FK_TO_BORROWERS.finditer(stmt):
            pairs.add((name, m.group(1).strip("` ")))
    return pairs


@pytest.mark.skipif(
    not os.environ.get("KOHA_STRUCTURE_SQL"),
    reason="set KOHA_STRUCTURE_SQL to a copy of Koha's installer/data/mysql/kohastructure.sql "
    "to load the complete real schema (Koha's file is not part of this repository)",
)
def test_discovery_on_kohas_own_kohastructure_sql(mariadb_url):
    sql = Path(os.environ["KOHA_STRUCTURE_SQL"]).read_text(encoding="utf-8")
    engine = create_engine(mariadb_url)
    loaded, failed = [], []
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
            for stmt in _statements(sql):
                creates = re.match(r"\s*CREATE TABLE", stmt, re.I) is not None
                try:
                    conn.exec_driver_sql(stmt.replace("%", "%%"))
                except Exception as exc:  # noqa: BLE001 - recorded, then judged below
                    code = getattr(getattr(exc, "orig", None), "args", [None])[0]
                    if creates:
                        failed.append((stmt.split("(")[0].strip(), code))
                    continue
                if creates:
                    loaded.append(stmt)
            conn.commit()
            tables = conn.execute(text("SHOW TABLES")).scalars().all()
        places = discover(engine, INVENTORY)
        report = build_report("koha", None, bind=engine)
    finally:
        engine.dispose()
    declared = _declared_pairs(loaded)
    found = _fk_pairs(places)
    print(
        f"\nkohastructure.sql: {len(loaded)} tables created, {len(failed)} failed {failed}; "
        f"{len(tables)} in the database; foreign keys to borrowers: "
        f"{len({t for t, _ in found})} tables, {len(found)} columns"
    )
    print(
        f"shipped policy on it: {len(report.places)} places, {report.count(COVERED)} covered, "
        f"{report.count(KEPT)} kept on purpose, not covered: {report.uncovered}"
    )
    assert len(loaded) > 200, "that does not look like Koha's kohastructure.sql"
    assert found == declared
    # Every place of the complete schema is classified by the shipped policy.
    assert report.uncovered == [] and report.coverage_pct == 100.0
    for must in (
        ("statistics", "borrowernumber"),
        ("search_history", "userid"),
        ("action_logs", "object"),
        ("action_logs", "user"),
    ):
        assert must in _keyless_pairs(places)
    fixture = {(t, c) for t, cols in FIXTURE["foreign_keys"].items() for c in cols}
    if _declared_pairs([s for s in _statements(sql) if s.upper().startswith("CREATE")]) == fixture:
        # The same Koha version the fixture was read from: the fixture's counts hold.
        assert len({t for t, _ in found}) == FIXTURE["foreign_key_tables"]
        assert len(found) == FIXTURE["foreign_key_columns"]
