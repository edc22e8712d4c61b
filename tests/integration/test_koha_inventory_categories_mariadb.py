"""The rules for the rest of Koha (issue 3) on MariaDB, where Koha's foreign keys, ENUMs and
ON UPDATE timestamps are enforced: the same cases as on SQLite, the same end state."""

from __future__ import annotations

import pytest
from koha_builders import make_koha
from koha_inventory_builders import add_inventory_rows, check_end_state, run_inventory_rules
from patron_privacy import connections
from sqlalchemy import text

pytestmark = pytest.mark.integration


def test_inventory_rules_on_mariadb(mariadb_url):
    engine = connections.engine_for_url(mariadb_url)
    try:
        make_koha(engine)
        with engine.begin() as c:
            add_inventory_rows(c)
        results = run_inventory_rules(engine)
        check_end_state(engine, results)
        with engine.connect() as c:
            # Anonymizing kept Koha's ON UPDATE timestamps (they are the clocks).
            updated = c.execute(
                text("SELECT YEAR(updated) FROM illrequests WHERE illrequest_id = 101")
            ).scalar()
            assert updated < 2026
            # Unlinking who added a list entry keeps when it was added (ON UPDATE column).
            added = c.execute(
                text("SELECT YEAR(dateadded) FROM virtualshelfcontents WHERE shelfnumber = 201")
            ).scalar()
            assert added < 2026
    finally:
        engine.dispose()


def test_patron_report_on_mariadb(mariadb_url, tmp_path):
    import json
    from pathlib import Path

    from koha_inventory_builders import P
    from patron_privacy.patron_report import make_patron_report

    engine = connections.engine_for_url(mariadb_url)
    warehouse = connections.engine_for_url(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        make_koha(engine)
        with engine.begin() as c:
            add_inventory_rows(c)
        out = make_patron_report(
            "koha", str(P), "CR-1", tmp_path / "out", bind=engine, warehouse=warehouse
        )
    finally:
        engine.dispose()
        warehouse.dispose()
    pkg = json.loads(Path(out["json"]).read_text())
    counts = {t["table"]: t["row_count"] for t in pkg["tables"]}
    assert counts["borrowers"] == 1
    assert counts["suggestions"] == 3 and counts["bookings"] == 3 and counts["issues"] == 1
    assert counts["borrower_relationships"] == 2  # P is the guarantor in both
    for t in pkg["tables"]:
        for row in t["rows"]:
            for col in ("borrowernumber", "patron_id", "suggestedby", "reporter_id"):
                assert row.get(col) in (None, P), (t["table"], col)
