"""The LibCal step end to end against a local LibCal-shaped server: program facts (audience,
delivery mode, counts), compliance findings at the vendor as audit rows (legal holds and
data errors included), refreshes inside the window only, and bad answers that fail only
what they touch — nothing written from what could not be read, the rest goes on."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from patron_privacy import connections, locks
from patron_privacy.cli import main
from patron_privacy.facts import new_key_file
from patron_privacy.sources.libcal.client import LibCalError
from patron_privacy.sources.libcal.connector import audience_band, delivery_mode, run_libcal
from patron_privacy.sources.libcal.fixture import Fixture, LibCalFixtureServer
from patron_privacy.warehouse import create_warehouse, place_hold, program_facts, retention_audit
from sqlalchemy import select

AS_OF = datetime(2026, 11, 30)
SECRET = "zqx-libcal-secret"
POLICY = """
library: {name: Test Library, timezone: America/New_York}
sources:
  libcal: {lookback: P90D}
rules:
  - category: program_registrations
    source: libcal
    window: P30D
    action: delete
    blockers: []
    basis: test
    why: test
"""


def person(n: int, attended: str = "Attended", barcode: str | None = None) -> dict:
    return {
        "booking_id": 7000 + n,
        "registration_type": "in-person",
        "first_name": f"Zqxfirst{n}",
        "last_name": f"Zqxlast{n}",
        "email": f"zqx.person{n}@example.org",
        "phone": f"(860) 555-{n:04d}",
        "barcode": barcode if barcode is not None else f"2997000000{n:04d}",
        "registered_date": "2026-08-01T09:00:00-04:00",
        "attendance": attended,
    }


def ev(eid: int, day: str, **kw) -> dict:
    out = {
        "id": eid,
        "title": f"Event {eid}",
        "start": f"{day}T10:00:00-05:00",
        "end": f"{day}T11:00:00-05:00",
        "calendar": {"id": 77, "name": "Programs"},
        "campus": {"id": 1, "name": "Central Library"},
        "location": {"id": 501, "type": 1, "name": "Room A"},
        "category": [{"id": 1, "name": "Storytime"}],
        "audience": [{"id": 1, "name": "Kids (6-11)"}],
        "registration": True,
        "physical_seats": 20,
        "online_seats": 0,
        "seats_taken": 0,
    }
    out.update(kw)
    return out


def make_fixture() -> Fixture:
    return Fixture(
        client_id="cid",
        client_secret=SECRET,
        events=[
            ev(201, "2026-11-20"),
            ev(
                202,
                "2026-10-01",
                category=[{"id": 2, "name": "Gaming"}],
                audience=[{"id": 2, "name": "Teens (12-18)"}],
                campus={"id": 2, "name": "North Branch Library"},
            ),
            ev(
                203,
                "2026-11-25",
                physical_seats=0,
                online_seats=30,
                location={"id": 902, "type": 0, "name": ""},
                audience=[{"id": 3, "name": "Adults"}],
            ),
            ev(204, "2026-09-01", online_seats=20, seats_taken=12, audience=[{"name": "Adults"}]),
            ev(205, "2026-11-10", registration=False, location={"id": 901, "name": "School"}),
            ev(206, "2026-12-05"),  # ahead of the as-of: not read
            {**ev(207, "2026-11-12"), "start": "2026-11-12Tsoon", "end": None},
        ],
        registrations={
            "201": [person(1), person(2), person(3, "Not Attended")],
            "202": [person(4), person(5, "", barcode="")],
            "203": [person(6)],
            "207": [person(7)],
        },
        extra={"calendars": [77], "offsite_location_ids": [901]},
    )


@pytest.fixture
def world(home, tmp_path, monkeypatch):
    fx = make_fixture()
    with LibCalFixtureServer(fx) as server:
        conn = {
            "conn_type": "http",
            "host": server.url,
            "login": "cid",
            "password": SECRET,
            "extra": fx.extra,
        }
        monkeypatch.setenv("AIRFLOW_CONN_LIBCAL_API", json.dumps(conn))
        new_key_file(home / "pseudonym_keys.json", ["2025", "2026"])
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        yield server, str(policy)


def _facts() -> dict[date, dict]:
    w = connections.engine_for(connections.WAREHOUSE_DB)
    with w.connect() as c:
        return {r["event_date"]: dict(r) for r in c.execute(select(program_facts)).mappings()}


def _audit(run_id: str) -> list[dict]:
    w = connections.engine_for(connections.WAREHOUSE_DB)
    with w.connect() as c:
        return [
            dict(r)
            for r in c.execute(
                select(retention_audit).where(retention_audit.c.run_id == run_id)
            ).mappings()
        ]


def _warehouse_text() -> str:
    w = connections.engine_for(connections.WAREHOUSE_DB)
    with w.connect() as c:
        return " ".join(
            str(v)
            for t in (program_facts, retention_audit)
            for row in c.execute(select(t))
            for v in row
        )


def test_facts_findings_and_audit(world):
    server, policy = world
    w = connections.engine_for(connections.WAREHOUSE_DB)
    from patron_privacy.warehouse import create_warehouse

    create_warehouse(w)
    with w.begin() as c:  # a legal hold names one registrant of the old event by card
        place_hold(
            c,
            source="libcal",
            patron_ids=["29970000000004"],
            request_ref="LE-2026-001",
            placed_at=AS_OF,
        )
    out = run_libcal(AS_OF, "lc1", policy=policy)
    assert out["events"] == 6  # 206 lies ahead
    assert out["facts_recorded"] == 5 and out["facts_skipped"] == 1  # 207: no readable date
    assert out["findings"] == 1 and out["data_errors"] == 1 and not out["passed"]
    assert out["errors"] == []
    facts = _facts()
    assert facts[date(2026, 11, 20)] | {"fact_key": None} == {
        "fact_key": None,
        "source": "libcal",
        "event_date": date(2026, 11, 20),
        "branch": "Central Library",
        "category": "Storytime",
        "audience": "children",
        "delivery_mode": "onsite",
        "registration_required": True,
        "registered": 3,
        "attended": 2,
        "reporting_period": "2026",
    }
    assert facts[date(2026, 10, 1)]["audience"] == "young_adult"
    assert facts[date(2026, 10, 1)]["branch"] == "North Branch Library"
    assert (facts[date(2026, 10, 1)]["registered"], facts[date(2026, 10, 1)]["attended"]) == (2, 1)
    assert facts[date(2026, 11, 25)]["delivery_mode"] == "virtual"
    # Hybrid counts once, in person; purged registrations fall back on seats taken.
    hybrid = facts[date(2026, 9, 1)]
    assert (hybrid["delivery_mode"], hybrid["registered"], hybrid["attended"]) == (
        "onsite",
        12,
        None,
    )
    drop_in = facts[date(2026, 11, 10)]
    assert drop_in["delivery_mode"] == "offsite" and drop_in["registered"] is None

    (row,) = _audit("lc1")
    assert (row["mode"], row["category"], row["remaining"], row["data_errors"]) == (
        "verify",
        "program_registrations",
        1,
        1,
    )
    assert json.loads(row["kept_by_blocker"]) == {"legal_hold": 1} and row["error"] is None
    # Registrant data is nowhere in the warehouse.
    text = _warehouse_text().lower()
    assert "zqx" not in text and "2997000000" not in text and "555-" not in text


def test_facts_are_refreshed_inside_the_window_and_never_zeroed_after(world):
    server, policy = world
    run_libcal(AS_OF, "lc1", policy=policy)
    regs = server.fixture.registrations
    regs["201"][2]["attendance"] = "Attended"  # attendance marked late: inside the window
    regs["202"] = []  # the vendor purged the old event: past the window
    out = run_libcal(AS_OF, "lc2", policy=policy)
    facts = _facts()
    assert facts[date(2026, 11, 20)]["attended"] == 3
    assert facts[date(2026, 10, 1)]["registered"] == 2  # kept, not overwritten with 0
    assert out["findings"] == 0 and out["data_errors"] == 1  # 207's dates stay unreadable
    assert out["passed"] is True  # data errors are reported, as for every source
    assert len(facts) == 5


def test_garbage_registrations_of_one_event_skip_that_event_only(world):
    server, policy = world
    garbage = b'[{"event_id": 202, "registrants": [{"first_name": "Zqxbroken'
    server.fail("/events/201,202", body=garbage)
    server.fail("/events/202/registrations", body=garbage)
    out = run_libcal(AS_OF, "lc3", policy=policy)
    assert out["request_errors"] == 1
    assert out["errors"][0].startswith("LibCal GET /1.1/events/202/registrations: answer is not")
    facts = _facts()
    assert date(2026, 10, 1) not in facts  # nothing written from what could not be read
    assert date(2026, 11, 20) in facts and len(facts) == 4
    (row,) = _audit("lc3")
    assert row["remaining"] == 0  # 202's registrations could not be counted ...
    assert row["error"].startswith("incomplete: 1 LibCal request(s) failed")  # ... and it says so
    assert "zqxbroken" not in json.dumps(out, default=str).lower()


def test_an_unreadable_events_window_contributes_nothing_and_the_rest_goes_on(world):
    server, policy = world
    server.fail(
        "date=2026-11-03", body=b"<html>Springshare is down</html>", content_type="text/html"
    )
    out = run_libcal(AS_OF, "lc4", policy=policy)
    assert out["request_errors"] == 1 and "answered with HTML" in out["errors"][0]
    facts = _facts()
    assert set(facts) == {date(2026, 10, 1), date(2026, 9, 1)}  # Aug-Oct windows read
    assert _audit("lc4")[0]["error"].startswith("incomplete")


def test_429_and_500_are_ridden_out(world, monkeypatch):
    server, policy = world
    server.fail("/1.1/events?", status=429, headers={"Retry-After": "0"})
    server.fail("/registrations", status=500)
    monkeypatch.setattr("time.sleep", lambda s: None)
    out = run_libcal(AS_OF, "lc5", policy=policy)
    assert out["errors"] == [] and out["retries"] == 2 and out["facts_recorded"] == 5


def test_refused_credentials_stop_the_run_with_audit_rows_saying_so(world, monkeypatch, capsys):
    server, policy = world
    conn = json.loads(__import__("os").environ["AIRFLOW_CONN_LIBCAL_API"])
    conn["password"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_LIBCAL_API", json.dumps(conn))
    with pytest.raises(LibCalError, match="oauth/token: HTTP 401"):
        run_libcal(AS_OF, "lc6", policy=policy)
    (row,) = _audit("lc6")
    assert row["error"] == "did not run: LibCal POST /1.1/oauth/token: HTTP 401"
    assert main(["libcal", "--as-of", "2026-11-30", "--policy", policy]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: LibCal POST /1.1/oauth/token: HTTP 401"
    assert SECRET not in err


def test_the_cli_exits_1_on_findings_and_names_them(world, capsys):
    _, policy = world
    argv = ["--as-of", "2026-11-30", "--policy", policy]
    assert main(["libcal", *argv, "--run-id", "c1", "--json"]) == 1
    cap = capsys.readouterr()
    assert "libcal.program_registrations" in cap.out
    assert "LibCal still holds 2 registration(s) past their window" in cap.err
    assert "zqx" not in (cap.out + cap.err).lower()
    assert main(["verify", "--source", "libcal", *argv]) == 1  # same step, by its usual name


def test_audience_and_delivery_rules():
    assert audience_band({"audience": [{"name": "Toddlers (1-3)"}]}) == "children"
    assert audience_band({"audience": [{"name": "Teens"}, {"name": "Adults"}]}) == "general"
    assert audience_band({"audience": [], "category": [{"name": "Seniors"}]}) == "adult"
    assert audience_band({"audience": [{"name": "Makers"}]}) == "unknown"
    assert audience_band({"audience": [{"name": "Makers"}]}, {"makers": "young_adult"}) == (
        "young_adult"
    )
    assert delivery_mode({"physical_seats": 0, "online_seats": 5}) == "virtual"
    assert delivery_mode({"physical_seats": 5, "online_seats": 5}) == "onsite"
    assert delivery_mode({"location": {"id": 9, "name": "Park"}}, offsite_ids=[9]) == "offsite"
    assert delivery_mode({"location": {"id": 9, "name": "Park"}}, offsite_names=["Park"]) == (
        "offsite"
    )


def test_a_dry_run_writes_no_fact_but_still_verifies(world):
    _, policy = world
    out = run_libcal(AS_OF, "dry", policy=policy, dry_run=True)
    assert out["facts_recorded"] == 5 and _facts() == {}
    assert [r["remaining"] for r in _audit("dry")] == [2]


def test_a_second_run_while_one_holds_the_lock_refuses_having_written_nothing(world, monkeypatch):
    _, policy = world
    monkeypatch.setenv("PATRON_PRIVACY_LOCK_WAIT_S", "0.2")
    w = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(w)
    with locks.warehouse_lock(w, locks.run_lock_name("libcal"), wait_s=0):
        with pytest.raises(locks.LockBusy):
            run_libcal(AS_OF, "second", policy=policy)
        assert _facts() == {} and _audit("second") == []
        assert run_libcal(AS_OF, "dry", policy=policy, dry_run=True)["facts_recorded"] == 5
    w.dispose()
    assert run_libcal(AS_OF, "after", policy=policy)["facts_recorded"] == 5
