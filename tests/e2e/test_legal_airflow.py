"""The legal DAGs against a real Airflow (API server, scheduler, DAG processor; see
``airflow_server``): the CEO's approval answered through the REST API, exactly as the
UI's Required Actions page answers it.

- approve: the package holds exactly what the hold covers, files are private, the
  register records who approved and when; a user not named as approver is refused;
  nothing of the patron reaches Airflow's logs, metadata DB or XCom;
- reject: nothing is built, and the rejection is recorded; a dry run asks nothing;
- intake: the trigger form refuses a patron identifier before a run exists, and
  records a request;
- board report: the month comes from the run's data interval.

One Airflow for the module (about 30 s to start); each test uses its own request.
"""

from __future__ import annotations

import json
import stat
from datetime import date, datetime

import pytest
from airflow_server import AirflowServer
from koha_builders import add_old_issue, add_patron
from leak_scan import files_scanned, scan_sqlite, scan_text, scan_tree
from legal_builders import CANARY, CANARY_BN, add_canary, canary_needles, koha_home, new_request
from patron_privacy import legal_holds, requests_register

pytestmark = [pytest.mark.airflow, pytest.mark.xdist_group("airflow_server")]

DISCLOSURE = "law_enforcement_disclosure"
INTAKE = "law_enforcement_request_intake"
BOARD = "law_enforcement_board_report"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("legal_airflow")
    pp_home = root / "pp"
    server = AirflowServer(
        root, pp_home, extra_env={"PATRON_PRIVACY_DISCLOSURE_APPROVERS": "admin"}
    )
    with pytest.MonkeyPatch.context() as mp:
        # This process writes the register and holds the tasks read: same home.
        for key in [k for k in __import__("os").environ if k.startswith("AIRFLOW_CONN_")]:
            mp.delenv(key)
        mp.setenv("PATRON_PRIVACY_HOME", str(pp_home))
        koha = koha_home(pp_home)
        with koha.begin() as c:
            add_canary(c)
            add_patron(c, 10)
            add_old_issue(c, 1, CANARY_BN, datetime(2026, 8, 20))  # before the range
            add_old_issue(c, 2, CANARY_BN, datetime(2026, 9, 14), item=2)
            add_old_issue(c, 3, CANARY_BN, datetime(2026, 10, 2), item=3)
            add_old_issue(c, 4, 10, datetime(2026, 9, 20), item=4)  # not held
        koha.dispose()
        server.start()
        try:
            for dag_id in (DISCLOSURE, INTAKE, BOARD):
                server.wait_for_dag(dag_id)
            yield server
        finally:
            server.stop()


def hold_for(ref: str) -> int:
    return legal_holds.place(
        requests_register.warehouse_engine(),
        legal_holds.validate_hold(
            source="koha",
            patron_ids=[str(CANARY_BN)],
            request_ref=ref,
            categories=["returned_loans"],
            date_from=date(2026, 9, 1),
            date_to=date(2026, 10, 31),
        ),
        placed_at=datetime(2026, 11, 6, 9, 0),
    )


def reviews(ref: str) -> list[dict]:
    with requests_register.warehouse_engine().connect() as c:
        return requests_register.reviews(c, ref)


def start_disclosure(airflow: AirflowServer, ref: str) -> str:
    r = airflow.trigger(DISCLOSURE, {"request": ref, "dry_run": False})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]
    airflow.wait_for_task_state(DISCLOSURE, run_id, "ask_the_ceo_to_approve", "awaiting_input")
    airflow.wait_for_workload_end(DISCLOSURE, run_id, "ask_the_ceo_to_approve")
    return run_id


def test_approval_builds_exactly_the_order_and_records_who(airflow):
    ref = new_request()
    hold_for(ref)
    run_id = start_disclosure(airflow, ref)
    path = airflow.hitl_path(DISCLOSURE, run_id, "ask_the_ceo_to_approve")

    detail = airflow.api("GET", path).json()
    assert detail["subject"] == f"Release patron records for request {ref}?"
    assert "**2 records**" in detail["body"] and "koha.returned_loans: 2" in detail["body"]
    assert detail["assigned_users"] == [{"id": "admin", "name": "admin"}]
    assert not (airflow.pp_home / "exports" / "disclosures" / ref).exists(), "not before approval"

    refused = airflow.api("PATCH", path, user="clerk", json={"chosen_options": ["Approve"]})
    assert refused.status_code == 403, "only the named approvers may answer"
    answer = airflow.api("PATCH", path, json={"chosen_options": ["Approve"]})
    assert answer.status_code == 200, answer.text
    finished = airflow.wait_for_run(DISCLOSURE, run_id)
    assert finished == "success", airflow.explain(DISCLOSURE, run_id)

    folder = airflow.pp_home / "exports" / "disclosures" / ref
    package = json.loads((folder / "package.json").read_text())
    records = package["categories"]["koha.returned_loans"]["records"]
    assert [(r["issue_id"], r["borrowernumber"]) for r in records] == [
        (2, CANARY_BN),
        (3, CANARY_BN),
    ]
    assert package["total_records"] == 2 and package["approved_by"] == "admin"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()} == {0o600}

    (review,) = reviews(ref)
    assert (review["outcome"], review["reviewed_by"], review["package_records"]) == (
        "approved",
        "admin",
        2,
    )
    assert review["dag_run_id"] == run_id
    assert abs((review["reviewed_at"] - datetime.now()).total_seconds()) < 6 * 3600

    # Nothing of the patron in anything Airflow keeps: task logs, the metadata DB
    # (XCom, HITL details, rendered fields), the processes' own logs.
    needles = canary_needles()
    findings = scan_tree(airflow.home, needles) + scan_sqlite(airflow.home / "airflow.db", needles)
    for name in ("api-server", "scheduler", "dag-processor"):
        log = airflow.root / f"{name}.log"
        findings += scan_text(log.read_text(errors="replace"), needles, str(log))
    assert not findings, "\n".join(map(str, findings))
    assert files_scanned(airflow.home / "logs") >= 4


def test_rejection_builds_nothing(airflow):
    ref = new_request(agency="Connecticut State Police")
    hold_for(ref)
    run_id = start_disclosure(airflow, ref)
    answer = airflow.api(
        "PATCH",
        airflow.hitl_path(DISCLOSURE, run_id, "ask_the_ceo_to_approve"),
        json={"chosen_options": ["Reject"]},
    )
    assert answer.status_code == 200, answer.text
    assert airflow.wait_for_run(DISCLOSURE, run_id) == "success", airflow.explain(
        DISCLOSURE, run_id
    )
    states = airflow.task_states(DISCLOSURE, run_id)
    assert states["build_disclosure_package"] == "skipped", states
    assert states["record_rejection"] == "success", states
    assert not (airflow.pp_home / "exports" / "disclosures" / ref).exists()
    assert [(r["outcome"], r["reviewed_by"], r["package_path"]) for r in reviews(ref)] == [
        ("rejected", "admin", None)
    ]


def test_dry_run_asks_no_approval_and_builds_nothing(airflow):
    ref = new_request(agency="Wethersfield Police Department")
    hold_for(ref)
    r = airflow.trigger(DISCLOSURE, {"request": ref})  # dry_run defaults to true
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]
    assert airflow.wait_for_run(DISCLOSURE, run_id) == "success", airflow.explain(
        DISCLOSURE, run_id
    )
    states = airflow.task_states(DISCLOSURE, run_id)
    assert states["check_request"] == "success", states
    assert {
        states[t]
        for t in ("ask_the_ceo_to_approve", "build_disclosure_package", "record_rejection")
    } == {"skipped"}, states
    assert not (airflow.pp_home / "exports" / "disclosures" / ref).exists()
    assert reviews(ref) == []


def test_intake_form_refuses_identifiers_and_records_a_request(airflow):
    before = airflow.api("GET", f"/dags/{INTAKE}/dagRuns").json()["total_entries"]
    conf = {
        "dry_run": False,
        "received_on": "2026-11-20",
        "agency": "Hartford Police Department",
        "kind": "court_order",
        "asks_for": "loan records of two patrons named in the order, 2026",
        "referred_to": "CEO",
    }
    for bad in (
        {"asks_for": f"everything on card {CANARY['cardnumber']}"},
        {"agency": CANARY["email"]},
        {"kind": None},
    ):
        r = airflow.trigger(INTAKE, {k: v for k, v in (conf | bad).items() if v is not None})
        assert r.status_code == 400, r.text
    after = airflow.api("GET", f"/dags/{INTAKE}/dagRuns").json()["total_entries"]
    assert after == before, "a refused form creates no run (its conf is never stored)"

    r = airflow.trigger(INTAKE, conf)
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]
    assert airflow.wait_for_run(INTAKE, run_id) == "success", airflow.explain(INTAKE, run_id)
    with requests_register.warehouse_engine().connect() as c:
        found = [
            x
            for x in requests_register.list_requests(c)
            if x["asks_for"] == conf["asks_for"] and x["received_on"] == date(2026, 11, 20)
        ]
    assert len(found) == 1 and found[0]["kind"] == "court_order"
    assert found[0]["decision"] == "pending" and found[0]["referred_to"] == "CEO"


def test_board_report_month_comes_from_the_data_interval(airflow):
    ref = new_request(received_on=date(2026, 5, 12), counsel_reviewed_on=None)
    # Logical date 1 June 2026 07:00 in Hartford: the report is May's.
    r = airflow.trigger(BOARD, {"dry_run": False}, logical_date="2026-06-01T11:00:00Z")
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]
    assert airflow.wait_for_run(BOARD, run_id) == "success", airflow.explain(BOARD, run_id)
    out = airflow.pp_home / "exports" / "board_reports"
    html = (out / "law-enforcement-requests-2026-05.html").read_text()
    assert ref in html and "May 2026" in html
    assert (out / "law-enforcement-requests-2026-05.pdf").read_bytes().startswith(b"%PDF")
