"""The nightly DAGs on the production executor: CeleryExecutor with two workers, a
PostgreSQL metadata database and warehouse, and a Redis broker, all real processes on
this machine (``celery_cluster``), driven through the REST API as an operator would.

Every run must succeed, every task must have run on one of the two workers, and the
work must have spread over both. Then the warehouse must hold what a run on the
embedded default holds: an audit row per category and the facts. In the middle of the
night one worker dies (SIGKILL to its whole process group while it runs a Koha
category): Airflow finds the task without a heartbeat and retries it on the other
worker, and the night still ends with every category verified clean.

The canary leak test, on this deployment: known personal values are planted in the
MariaDB Koha before the night (a patron past every window, one inside them, and free
text in their activity), and none may turn up in what the distributed run leaves: the
PostgreSQL warehouse and Airflow metadata database (every cell: XCom, rendered
fields, run conf), the Redis broker (every key and value), and every file under the
cluster's root (task logs from both workers, each process's own log, config).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date

import pytest
from celery_cluster import REDIS, CeleryCluster
from koha_canaries import INSIDE, PAST, canary_needles, plant_canaries
from leak_scan import files_scanned, scan_database, scan_redis, scan_tree
from patron_privacy.sources.koha.synthetic import build_koha_from_url
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.airflow, pytest.mark.xdist_group("celery_cluster")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306"
AS_OF = "2026-11-30"
# Sources the demo library does not have (Evergreen is another ILS) or that need a
# vendor's server (LibCal's API): their DAGs are tested elsewhere.
NOT_IN_DEMO = {"evergreen_nightly_retention", "libcal_nightly_retention"}


def _mariadb(sql: str) -> None:
    engine = create_engine(MARIADB)
    try:
        with engine.begin() as c:
            c.execute(text(sql))
    finally:
        engine.dispose()


def _admin(sql: str) -> None:
    engine = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("celery")
    pp_home = root / "pp"
    warehouse_db = f"pp_wh_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{warehouse_db}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env |= {"PATRON_PRIVACY_HOME": str(pp_home), "PYTHONPATH": os.path.join(REPO, "include")}
    subprocess.run(
        [sys.executable, "-m", "patron_privacy", "demo-data", "--patrons", "200", "--years",
         "1", "--seed", "5", "--as-of", AS_OF],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # Koha on MariaDB, as a large library runs it: its categories fan out over the workers
    # (on the demo's SQLite, one writer at a time, they would not).
    koha_db = f"pp_celery_koha_{uuid.uuid4().hex[:10]}"
    koha = f"{MARIADB}/{koha_db}?charset=utf8mb4"
    _mariadb(f"CREATE DATABASE `{koha_db}` CHARACTER SET utf8mb4")
    build_koha_from_url(
        koha, patrons=200, years=1, seed=5, as_of=date.fromisoformat(AS_OF)
    )  # fmt: skip
    canaries = plant_canaries(koha)
    warehouse = f"{PG}/{warehouse_db}".replace("postgresql+psycopg2", "postgresql")
    server = CeleryCluster(
        root,
        pp_home,
        extra_env={
            "AIRFLOW_CONN_WAREHOUSE_DB": warehouse,
            "AIRFLOW_CONN_KOHA_DB": f"mysql://root@127.0.0.1:3306/{koha_db}",
        },
    )
    try:
        server.start()
        yield server, f"{PG}/{warehouse_db}", koha, canaries
    finally:
        server.stop()
        _admin(f'DROP DATABASE IF EXISTS "{warehouse_db}" WITH (FORCE)')
        _mariadb(f"DROP DATABASE IF EXISTS `{koha_db}`")


def nightly_dags(server: CeleryCluster) -> list[str]:
    r = server.api("GET", "/dags", params={"tags": "nightly", "limit": 100})
    r.raise_for_status()
    return sorted(d["dag_id"] for d in r.json()["dags"] if d["dag_id"] not in NOT_IN_DEMO)


KOHA_DAG = "koha_nightly_retention"
ENFORCING = ("enforce_one_category", "enforce_retention_policy")


def _mid_category_on_a_worker_that_finished_one(server: CeleryCluster, run_id: str):
    """A Koha enforcement task running on a worker that has already finished a category
    (so that worker's finished work stays on record after it dies), or None yet."""
    if server.run_state(KOHA_DAG, run_id) in ("success", "failed"):
        raise AssertionError(f"finished before the kill: {server.explain(KOHA_DAG, run_id)}")
    tis = server.task_instances(KOHA_DAG, run_id)
    finished_one = {
        t["hostname"] for t in tis if t["task_id"] in ENFORCING and t["state"] == "success"
    }
    for t in tis:
        if t["task_id"] in ENFORCING and t["state"] == "running" and t["hostname"] in finished_one:
            return t
    return None


@pytest.fixture(scope="module")
def night(cluster) -> dict:
    """Every nightly DAG triggered at once through the API (the workers share the
    night's work), and one worker killed with SIGKILL in the middle of a Koha category,
    as a machine dies mid-night; waits for each run to end.

    Returns the run ids, the task instance that was running when its worker died, and
    how long the night took after the death.
    """
    server = cluster[0]
    server.wait_for_dag(KOHA_DAG)
    dags = nightly_dags(server)
    assert KOHA_DAG in dags
    for dag_id in dags:
        server.wait_for_dag(dag_id)
    runs = {}
    for dag_id in dags:
        r = server.trigger(dag_id, {"dry_run": False, "as_of": AS_OF})
        assert r.status_code == 200, r.text
        runs[dag_id] = r.json()["dag_run_id"]
    hit = server.wait_for(
        lambda: _mid_category_on_a_worker_that_finished_one(server, runs[KOHA_DAG]),
        300,
        "a worker in the middle of its second Koha category",
    )
    server.kill_worker(hit["hostname"], signal.SIGKILL)
    killed_at = time.monotonic()
    for dag_id, run_id in runs.items():
        server.wait_for_run(dag_id, run_id, timeout=600)
    return {"runs": runs, "hit": hit, "after_kill_s": time.monotonic() - killed_at}


def test_the_nightly_dags_run_on_two_celery_workers(cluster, night):
    server, warehouse, _, _ = cluster
    runs = night["runs"]
    hosts: dict[str, str | None] = {}
    for dag_id, run_id in runs.items():
        state = server.wait_for_run(dag_id, run_id, timeout=600)
        assert state == "success", server.explain(dag_id, run_id)
        states = server.task_states(dag_id, run_id)
        ran = {t: s for t, s in states.items() if s != "skipped"}
        assert ran and set(ran.values()) == {"success"}, states
        for task, host in server.task_hosts(dag_id, run_id).items():
            if states.get(task.split("[")[0]) != "skipped":
                hosts[f"{dag_id}.{task}"] = host

    assert set(hosts.values()) <= set(server.worker_names), hosts
    assert set(hosts.values()) == set(server.worker_names), (
        f"all {len(hosts)} tasks ran on one worker: {hosts}"
    )
    # Koha's categories fanned out: one mapped task each, all succeeded, on both workers.
    fanned = [
        t
        for t in server.task_instances(KOHA_DAG, runs[KOHA_DAG])
        if t["task_id"] == "enforce_one_category"
    ]
    assert len(fanned) > 10 and {t["state"] for t in fanned} == {"success"}, fanned
    assert {t["hostname"] for t in fanned} == set(server.worker_names), fanned
    assert all(t["rendered_map_index"] for t in fanned), "each named by its category"

    engine = create_engine(warehouse)
    try:
        with engine.connect() as c:
            audited = c.execute(
                text("SELECT COUNT(DISTINCT category) FROM retention_audit WHERE source = 'koha'")
            ).scalar_one()
            facts = c.execute(text("SELECT COUNT(*) FROM circulation_facts")).scalar_one()
    finally:
        engine.dispose()
    assert audited >= 10 and facts > 0


def test_no_canary_reaches_any_artifact_of_the_distributed_run(cluster, night):
    server, warehouse, koha, canaries = cluster
    assert server.wait_for_run(KOHA_DAG, night["runs"][KOHA_DAG]) == "success"
    # The night really worked on the canaries: the past patron is anonymized, the one
    # inside its windows is not (a run that did nothing leaks nothing).
    engine = create_engine(koha)
    try:
        with engine.connect() as c:
            names = dict(
                c.execute(
                    text("SELECT borrowernumber, surname FROM borrowers WHERE borrowernumber IN "
                         "(:p, :i)"),
                    {"p": canaries["past"], "i": canaries["inside"]},
                ).all()
            )  # fmt: skip
    finally:
        engine.dispose()
    assert names[canaries["past"]] != PAST["surname"]
    assert names[canaries["inside"]] == INSIDE["surname"]

    needles = canary_needles()
    meta = f"{PG}/{server.meta_db}"
    findings = [
        *scan_database(warehouse, needles, "warehouse"),
        *scan_database(meta, needles, "airflow metadata"),
        *scan_tree(server.root, needles),
    ]
    redis_findings, keys = scan_redis(REDIS, needles)
    findings += redis_findings
    # The scans read something: the night's task logs are among the files, and the
    # broker holds this cluster's keys.
    assert files_scanned(server.home / "logs") > 20
    assert keys > 0
    assert not findings, "\n".join(map(str, findings))


def test_a_worker_killed_mid_task_is_retried_on_the_other_and_the_result_is_right(cluster, night):
    server, warehouse, _, _ = cluster
    run_id, hit = night["runs"][KOHA_DAG], night["hit"]
    assert server.wait_for_run(KOHA_DAG, run_id) == "success", server.explain(KOHA_DAG, run_id)
    victim = hit["hostname"]
    survivor = next(w for w in server.worker_names if w != victim)
    after = next(
        t
        for t in server.task_instances(KOHA_DAG, run_id)
        if (t["task_id"], t["map_index"]) == (hit["task_id"], hit["map_index"])
    )
    assert after["state"] == "success", after
    assert after["hostname"] == survivor and after["try_number"] >= 2, after
    assert night["after_kill_s"] < 600

    engine = create_engine(warehouse)
    try:
        with engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT category, remaining, error FROM retention_audit "
                    "WHERE run_id = :r AND source = 'koha' AND mode = 'enforce'"
                ),
                {"r": run_id},
            ).all()
    finally:
        engine.dispose()
    assert rows, "the run with the retried task wrote no audit"
    assert all(remaining == 0 and error is None for _, remaining, error in rows), rows
