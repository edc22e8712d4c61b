"""The Koha connector on a real MariaDB: the whole CLI pipeline, zero dates, and the
same invariants as on SQLite."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from koha_builders import AS_OF, T, add_fine, add_old_issue, add_patron, make_koha
from patron_privacy import connections
from patron_privacy.cli import main
from patron_privacy.warehouse import circulation_facts, retention_audit
from sqlalchemy import select, text

pytestmark = pytest.mark.integration


@pytest.fixture
def koha_maria(mariadb_url, home, monkeypatch):
    eng = connections.engine_for_url(mariadb_url)
    make_koha(eng)
    monkeypatch.setenv("AIRFLOW_CONN_KOHA_DB", mariadb_url.replace("mysql+pymysql", "mysql"))
    from patron_privacy.facts import new_key_file

    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2018, 2028)])
    return eng


def _loans(eng):
    with eng.connect() as c:
        return dict(
            c.execute(select(T["old_issues"].c.issue_id, T["old_issues"].c.borrowernumber)).all()
        )


def test_cli_enforce_then_verify_on_mariadb(koha_maria, home, capsys):
    eng = koha_maria
    with eng.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11, privacy=0)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=40))
        add_old_issue(c, 2, 10, AS_OF - timedelta(days=5))
        add_old_issue(c, 3, 11, AS_OF - timedelta(days=40))
        add_old_issue(c, 4, 10, AS_OF - timedelta(days=90))
        add_fine(c, 1, 10, 4, 3.0, AS_OF - timedelta(days=80))
        # MariaDB zero dates: data errors, never "very old".
        c.execute(text("SET SESSION sql_mode=''"))
        c.execute(
            text(
                "INSERT INTO old_issues (issue_id, borrowernumber, itemnumber, issuedate, "
                "returndate) VALUES (5, 10, 1, '2020-01-01', '0000-00-00 00:00:00')"
            )
        )
        c.execute(
            text(
                "INSERT INTO search_history (userid, sessionid, query_desc, query_cgi, "
                "total, time) VALUES (10, 's', 'q', 'q', 0, '0000-00-00 00:00:00')"
            )
        )

    # Zero dates fail validation (issue 5): the dry run still previews, but exits 1...
    assert (
        main(["enforce", "--source", "koha", "--as-of", "2026-11-30", "--dry-run", "--json"]) == 1
    )
    captured = capsys.readouterr()
    assert "koha.old_issues.returndate: expect_column_values_to_not_be_zero_dates" in captured.err
    assert "koha.search_history.time: expect_column_values_to_not_be_zero_dates" in captured.err
    dry = {r["category"]: r for r in json.loads(captured.out.strip().splitlines()[-1])["results"]}
    assert dry["returned_loans"]["remaining"] == 1
    assert dry["returned_loans"]["kept"] == {"keep_history": 1, "outstanding_balance": 1}
    assert dry["returned_loans"]["data_errors"] == 1
    assert dry["opac_search_history"]["data_errors"] == 1
    assert _loans(eng) == {1: 10, 2: 10, 3: 11, 4: 10, 5: 10}

    # ...and enforcement refuses to change anything until they are repaired.
    assert main(["enforce", "--source", "koha", "--as-of", "2026-11-30", "--run-id", "r0"]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert _loans(eng) == {1: 10, 2: 10, 3: 11, 4: 10, 5: 10}
    with eng.begin() as c:
        # The repair a librarian would make: no return date known; the search's real time.
        c.execute(text("UPDATE old_issues SET returndate = NULL WHERE issue_id = 5"))
        c.execute(text("UPDATE search_history SET time = '2026-11-29 12:00:00'"))

    assert main(["enforce", "--source", "koha", "--as-of", "2026-11-30", "--run-id", "r1"]) == 0
    assert _loans(eng) == {1: 1, 2: 10, 3: 11, 4: 10, 5: 10}
    with eng.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM search_history")).scalar() == 1
    assert main(["verify", "--source", "koha", "--as-of", "2026-11-30"]) == 0
    assert "verification passed" in capsys.readouterr().out

    w = connections.engine_for("warehouse_db")
    with w.connect() as c:
        rows = (
            c.execute(select(retention_audit).where(retention_audit.c.run_id == "r1"))
            .mappings()
            .all()
        )
        # The foundation's categories, and every later one of the policy (issue 3 added more).
        assert {r["category"] for r in rows} >= set(
            [
                "returned_loans",
                "hold_history",
                "settled_fines",
                "circulation_statistics",
                "opac_search_history",
                "notices",
                "patron_action_logs",
                "expired_patrons",
            ]
        )
        assert all(r["remaining"] == 0 for r in rows)
        facts = c.execute(select(circulation_facts)).mappings().all()
    # Loans returned before the as-of got facts (4 valid return dates, the zero date too
    # has a real issue date but no valid return: its fact carries no return date).
    assert len(facts) >= 1
    assert all(f["patron_pseudonym"] is None or len(f["patron_pseudonym"]) == 64 for f in facts)

    # A rerun is idempotent: nothing more to change, no duplicate facts.
    assert main(["enforce", "--source", "koha", "--as-of", "2026-11-30", "--run-id", "r2"]) == 0
    with w.connect() as c:
        assert len(c.execute(select(circulation_facts)).all()) == len(facts)
        changed = (
            c.execute(select(retention_audit.c.changed).where(retention_audit.c.run_id == "r2"))
            .scalars()
            .all()
        )
    assert set(changed) == {0}


def test_missing_anonymous_patron_stops_before_any_change(koha_maria, capsys):
    eng = koha_maria
    with eng.begin() as c:
        add_patron(c, 10)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=40))
        c.execute(
            text("UPDATE systempreferences SET value='4242' WHERE variable='AnonymousPatron'")
        )
    assert main(["enforce", "--source", "koha", "--as-of", "2026-11-30"]) == 2
    assert "4242 does not exist" in capsys.readouterr().err
    assert _loans(eng) == {1: 10}


def test_missing_table_named_before_any_change(koha_maria, capsys):
    eng = koha_maria
    with eng.begin() as c:
        add_patron(c, 10)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=40))
        c.execute(text("DROP TABLE message_queue"))
    assert main(["enforce", "--source", "koha", "--as-of", "2026-11-30"]) == 2
    assert "table message_queue" in capsys.readouterr().err
    assert _loans(eng) == {1: 10}
