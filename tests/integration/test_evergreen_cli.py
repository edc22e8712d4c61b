"""The Evergreen connector through the CLI on a real PostgreSQL: enforce, verify, dry run,
audit and facts; Evergreen's own aging verified only; bad input stopping the run before any
change; and a canary patron whose personal values must reach no warehouse table, no CLI
output, and no longer be in Evergreen once the retention rules have run."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from evergreen_builders import (
    AS_OF,
    add_activity,
    add_bill,
    add_chain,
    add_circ,
    add_hold,
    add_patron,
    airflow_uri,
    clear_activity,
    engine_for,
    make_evergreen,
    pg_database,
    register_validation_suite,
)
from leak_scan import digit_forms, scan_sqlite, scan_text
from patron_privacy import connections
from patron_privacy.cli import main
from patron_privacy.facts import new_key_file
from patron_privacy.policy import load_policy
from patron_privacy.sources.evergreen import schema as S
from patron_privacy.warehouse import circulation_facts, retention_audit
from sqlalchemy import func, select, text

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("evergreen_pg")]

DAY = timedelta(days=1)
CATEGORIES = {
    "finished_circulations",
    "hold_requests",
    "settled_bills",
    "expired_patrons",
    "user_activity",
}


@pytest.fixture(scope="module")
def eg_url():
    with pg_database() as url:
        eng = engine_for(url)
        make_evergreen(eng)
        eng.dispose()
        yield url


@pytest.fixture
def eg(eg_url, home, monkeypatch):
    """The module's Evergreen database, emptied of activity, as evergreen_db."""
    register_validation_suite(monkeypatch)
    eng = engine_for(eg_url)
    clear_activity(eng)
    monkeypatch.setenv("AIRFLOW_CONN_EVERGREEN_DB", airflow_uri(eg_url))
    new_key_file(home / "pseudonym_keys.json", [str(y) for y in range(2015, 2028)])
    yield eng
    eng.dispose()


def _fresh_loan(c, cid: int, uid: int) -> None:
    """A loan checked out yesterday: a library where things happen (validation freshness)."""
    add_circ(c, cid, uid, None, start=AS_OF - DAY, returned=False, copy=150)


def _circs(eng) -> list[int]:
    with eng.connect() as c:
        return sorted(c.execute(select(S.circulation.c.id)).scalars())


def _results(out: str) -> dict[str, dict]:
    payload = json.loads(out.strip().splitlines()[-1])
    return {r["category"]: r for r in payload["results"]}


def test_cli_enforce_then_verify_on_postgresql(eg, capsys):
    with eg.begin() as c:
        add_patron(c, 10)
        add_patron(c, 11, expire=AS_OF - 4 * 365 * DAY)
        add_chain(c, 1, 10, [AS_OF - 100 * DAY, AS_OF - 60 * DAY], copy=2)  # aged
        add_chain(c, 3, 10, [AS_OF - 100 * DAY, AS_OF - 5 * DAY], copy=3)  # inside window
        add_circ(c, 5, 10, AS_OF - 45 * DAY, copy=4)  # aged
        add_circ(c, 6, 10, AS_OF - 3 * DAY, copy=5)
        _fresh_loan(c, 7, 10)
        add_hold(c, 1, 10, fulfilled=AS_OF - 40 * DAY)
        add_bill(c, 9001, 10, AS_OF - 400 * DAY)
        add_activity(c, 1, 10, AS_OF - 400 * DAY)
        add_activity(c, 2, 10, AS_OF - 2 * DAY)
    argv = ["--source", "evergreen", "--as-of", "2026-11-30"]

    assert main(["enforce", *argv, "--dry-run", "--json"]) == 0
    dry = _results(capsys.readouterr().out)
    assert set(dry) == CATEGORIES
    assert dry["finished_circulations"]["remaining"] == 3
    assert dry["hold_requests"]["remaining"] == 1
    assert dry["settled_bills"]["remaining"] == 1
    assert dry["expired_patrons"]["remaining"] == 1
    assert dry["expired_patrons"]["kept"] == {"staff_account": 1}
    assert dry["user_activity"]["remaining"] == 1
    assert _circs(eg) == [1, 2, 3, 4, 5, 6, 7], "a dry run changes nothing"

    assert main(["enforce", *argv, "--run-id", "r1", "--json"]) == 0
    done = _results(capsys.readouterr().out)
    assert done["finished_circulations"]["changed"] == 3
    assert done["finished_circulations"]["enforced_by"] == "engine"
    assert all(r["remaining"] == 0 for r in done.values())
    assert _circs(eg) == [3, 4, 6, 7]
    with eg.connect() as c:
        assert sorted(c.execute(select(S.aged_circulation.c.id)).scalars()) == [1, 2, 5]
        assert c.execute(select(func.count()).select_from(S.aged_hold_request)).scalar() == 1
        assert c.execute(select(S.usr.c.usrname).where(S.usr.c.id == 11)).scalar() == "11-PURGED"

    assert main(["verify", *argv]) == 0
    assert "verification passed" in capsys.readouterr().out

    w = connections.engine_for("warehouse_db")
    with w.connect() as c:
        rows = (
            c.execute(select(retention_audit).where(retention_audit.c.run_id == "r1"))
            .mappings()
            .all()
        )
        facts = c.execute(select(circulation_facts)).mappings().all()
    assert {r["category"] for r in rows} == CATEGORIES
    assert all(r["remaining"] == 0 and r["source"] == "evergreen" for r in rows)
    # One fact per loan returned before the as-of: two renewal chains (one with a renewal)
    # and the two single loans; the loan still out has none.
    assert sorted(f["renewals"] for f in facts) == [0, 0, 1, 1]
    assert all(len(f["patron_pseudonym"]) == 64 for f in facts)

    # A rerun is idempotent: nothing more to change, no duplicate facts.
    assert main(["enforce", *argv, "--run-id", "r2"]) == 0
    capsys.readouterr()
    with w.connect() as c:
        assert len(c.execute(select(circulation_facts)).all()) == len(facts)
        changed = c.execute(
            select(retention_audit.c.changed).where(retention_audit.c.run_id == "r2")
        ).scalars()
        assert set(changed) == {0}


def test_evergreen_aging_verified_not_done(eg, home, capsys, tmp_path):
    policy = load_policy()
    text_ = Path(policy.path).read_text(encoding="utf-8")
    assert "      finished_circulations: engine\n" in text_
    custom = tmp_path / "policy.yaml"
    mode = "      finished_circulations: {}\n"
    custom.write_text(
        text_.replace(mode.format("engine"), mode.format("evergreen")), encoding="utf-8"
    )
    with eg.begin() as c:
        add_patron(c, 10)
        add_chain(c, 1, 10, [AS_OF - 100 * DAY, AS_OF - 60 * DAY])
        _fresh_loan(c, 3, 10)
    argv = ["--source", "evergreen", "--as-of", "2026-11-30", "--policy", str(custom)]
    assert main(["enforce", *argv, "--json"]) == 1
    out = capsys.readouterr()
    res = _results(out.out)["finished_circulations"]
    assert (res["enforced_by"], res["changed"], res["remaining"]) == ("source", 0, 2)
    assert "evergreen.finished_circulations (2)" in out.err
    assert _circs(eg) == [1, 2, 3]
    # Evergreen's purge ran: verification passes with the same rule.
    with eg.begin() as c:
        c.execute(text("DELETE FROM action.circulation WHERE id IN (1, 2)"))
    assert main(["verify", *argv]) == 0


def test_impossible_date_fails_validation_and_changes_nothing(eg, capsys):
    with eg.begin() as c:
        add_patron(c, 10)
        add_circ(c, 1, 10, AS_OF - 90 * DAY)
        _fresh_loan(c, 2, 10)
        c.execute(
            text(
                "INSERT INTO actor.usr_activity (id, usr, etype, event_time) "
                "VALUES (1, 10, 1, '1850-01-01')"
            )
        )
    argv = ["--source", "evergreen", "--as-of", "2026-11-30"]
    # The dry run still previews, counting the impossible date as a data error ...
    assert main(["enforce", *argv, "--dry-run", "--json"]) == 1
    out = capsys.readouterr()
    assert _results(out.out)["user_activity"]["data_errors"] == 1
    assert "actor.usr_activity.event_time" in out.err
    # ... and a real run changes nothing at all: bad data never drives a change.
    assert main(["enforce", *argv]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert _circs(eg) == [1, 2]


def test_missing_table_named_before_any_change(eg_url, home, monkeypatch, capsys):
    with pg_database() as url:
        eng = engine_for(url)
        make_evergreen(eng)
        with eng.begin() as c:
            add_patron(c, 10)
            add_circ(c, 1, 10, AS_OF - 90 * DAY)
            c.execute(text("DROP TABLE action.aged_hold_request"))
        monkeypatch.setenv("AIRFLOW_CONN_EVERGREEN_DB", airflow_uri(url))
        assert main(["enforce", "--source", "evergreen", "--as-of", "2026-11-30"]) == 2
        assert "table action.aged_hold_request" in capsys.readouterr().err
        assert _circs(eng) == [1]
        eng.dispose()


# --- the canary -------------------------------------------------------------------------------

CANARY = {
    "first_given_name": "Zebulonia",
    "family_name": "Quaxtonbury",
    "usrname": "zquaxtonbury77",
    "email": "zebulonia.quaxtonbury@canary.example",
    "day_phone": "860-555-7391",
    "dob": date(1971, 3, 14),
}
CANARY_BARCODE = "29999000731917"
CANARY_STREET = "4417 Marrowbone Lane"
CANARY_HOLD_PHONE = "860-555-2864"


VALUES = [
    CANARY["first_given_name"],
    CANARY["family_name"],
    CANARY["usrname"],
    CANARY["email"],
    CANARY_STREET,
    CANARY["dob"].isoformat(),
    CANARY["day_phone"],
    CANARY_HOLD_PHONE,
    CANARY_BARCODE,
]


def _needles() -> list[str]:
    """Each value, and phones and card numbers also as bare digits."""
    return [form for v in VALUES for form in digit_forms(v)]


def _source_rows_text(eng) -> str:
    """Every row of every Evergreen table, as PostgreSQL renders it."""
    parts = []
    with eng.connect() as c:
        for t in S.metadata.sorted_tables:
            parts += [r[0] for r in c.execute(text(f"SELECT x::text FROM {t.fullname} x"))]
    return "\n".join(parts)


def test_canary_values_reach_no_warehouse_table_or_output(eg, home, capsys):
    uid = 42
    old = AS_OF - 4 * 365 * DAY
    with eg.begin() as c:
        add_patron(c, 10)
        _fresh_loan(c, 90, 10)
        add_patron(c, uid, expire=old, **CANARY)
        c.execute(
            text("UPDATE actor.card SET barcode = :b WHERE usr = :u"),
            {"b": CANARY_BARCODE, "u": uid},
        )
        c.execute(
            text("UPDATE actor.usr_address SET street1 = :s WHERE usr = :u"),
            {"s": CANARY_STREET, "u": uid},
        )
        add_chain(c, 1, uid, [old - 200 * DAY, old - 180 * DAY], copy=2)
        add_circ(c, 3, uid, old - 100 * DAY, copy=3)
        add_hold(c, 1, uid, fulfilled=old - 50 * DAY, phone=CANARY_HOLD_PHONE)
        add_bill(c, 9001, uid, old - 300 * DAY, note=f"card for {CANARY['family_name']}")
        add_activity(c, 1, uid, old - 10 * DAY)
    needles = _needles()
    # The canary is really there before the run: the scan can see every value.
    assert len(scan_text(_source_rows_text(eg), VALUES)) == len(VALUES)

    argv = ["--source", "evergreen", "--as-of", "2026-11-30"]
    codes = [
        main(["enforce", *argv, "--dry-run", "--json"]),
        main(["enforce", *argv, "--json", "--run-id", "canary"]),
        main(["verify", *argv]),
        main(["summary", "--run-id", "canary"]),
    ]
    out = capsys.readouterr()
    assert codes == [0, 0, 0, 0]

    findings = scan_text(out.out, needles, "stdout") + scan_text(out.err, needles, "stderr")
    findings += scan_sqlite(home / "warehouse.db", needles)
    assert not findings, "\n".join(map(str, findings))
    with connections.engine_for("warehouse_db").connect() as c:
        # Two loans (one renewed) returned before the as-of: two facts, no names.
        assert c.execute(select(func.count()).select_from(circulation_facts)).scalar() == 2
    # And Evergreen no longer holds them either: aged, purged, deleted.
    left = scan_text(_source_rows_text(eg), needles, "evergreen_db")
    assert not left, "\n".join(map(str, left))
