"""``keys status``: which yearly pseudonym keys are held or missing, facts per year,
and never a key's value in its output."""

from __future__ import annotations

import json
from datetime import date

import pytest
from legal_builders import cli
from patron_privacy import connections
from patron_privacy.facts import new_key_file
from patron_privacy.keys_cli import missing_keys
from patron_privacy.warehouse import circulation_facts, create_warehouse


@pytest.mark.parametrize(
    ("periods", "on", "missing"),
    [
        (["2026"], date(2026, 6, 1), []),
        (["2026"], date(2026, 11, 30), []),
        (["2026"], date(2026, 12, 1), ["2027"]),
        (["2026", "2027"], date(2026, 12, 1), []),
        (["2025"], date(2026, 1, 2), ["2026"]),
        ([], date(2026, 12, 31), ["2026", "2027"]),
    ],
)
def test_missing_keys(periods, on, missing):
    assert [line.split(":")[0] for line in missing_keys(periods, on)] == missing


def _fact(key: str, period: str, pseudonym: str | None) -> dict:
    return {
        "fact_key": key,
        "source": "koha",
        "loan_date": date(int(period), 3, 1),
        "patron_pseudonym": pseudonym,
        "renewals": 0,
        "reporting_period": period,
    }


def test_status_lists_years_and_facts_and_never_a_key(warehouse_db, home, capsys):
    new_key_file(home / "pseudonym_keys.json", ["2026"])
    keys = json.loads((home / "pseudonym_keys.json").read_text())["keys"]
    eng = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(eng)
    with eng.begin() as c:
        c.execute(
            circulation_facts.insert(),
            [_fact("a", "2025", "p1"), _fact("b", "2025", None), _fact("c", "2026", "p2")],
        )
    eng.dispose()
    rc, out, err = cli(capsys, "keys", "status", "--as-of", "2026-06-01")
    assert (rc, err) == (0, "")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows == [["2025", "gone", "1"], ["2026", "held", "1"]]
    rc, out, _ = cli(capsys, "keys", "status", "--as-of", "2026-12-20")
    assert rc == 1 and "missing: 2027: no key yet, needed from 2027-01-01" in out
    assert keys["2026"] not in out
