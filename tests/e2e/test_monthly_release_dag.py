"""The monthly statistics DAG end to end: ``airflow dags test`` publishes the month before
the run's data interval end, from the warehouse's facts, into the exports folder, and
none of a canary patron's values (whose name the PII gate reads) reaches anything its
two tasks leave: the release, XCom, the metadata DB, the task logs."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
from contextlib import closing
from datetime import date
from pathlib import Path

import pytest
from koha_builders import add_patron, make_koha
from leak_scan import digit_forms, scan_sqlite, scan_text, scan_tree
from nightly_harness import REPO, RUN_TIMEOUT, airflow_bin, koha_engine, migrate_template, new_stack
from patron_privacy.connections import engine_for_url
from patron_privacy.dag_defaults import Tag
from patron_privacy.facts import write_circulation_facts
from patron_privacy.warehouse import create_warehouse

pytestmark = [pytest.mark.airflow, pytest.mark.xdist_group("airflow_e2e")]

DAG_ID = "monthly_statistics_release"
DAG_FILE = REPO / "dags" / "monthly_statistics_release.py"
CANARY = {
    "surname": "Zqxreleasecanarysurname",
    "firstname": "Zqxreleasecanaryfirst",
    "email": "zqx.release.canary@example.org",
    "cardnumber": "29977100000917",
    "phone": "860-555-0917",
}


def needles() -> list[str]:
    out = [CANARY["surname"], CANARY["firstname"], CANARY["email"], "zqxrelease"]
    return out + digit_forms(CANARY["cardnumber"]) + digit_forms(CANARY["phone"])


def test_dag_file_is_thin_wiring_with_the_project_vocabulary():
    spec = importlib.util.spec_from_file_location("monthly_dag", DAG_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dag = mod.monthly_statistics_release()  # the @dag factory builds the DAG object
    assert set(dag.tags) <= {t.value for t in Tag}
    assert dag.catchup is False and dag.max_active_runs == 1
    assert "0 6 2 * *" in repr(dag.timetable)
    assert {t.task_id for t in dag.tasks} == {
        "check_release_inputs",
        "build_release",
        "publish_release",
    }
    assert dag.doc_md and "How to rerun safely" in dag.doc_md


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return migrate_template(tmp_path_factory.mktemp("airflow-template"))


def _facts() -> list[dict]:
    rows = []
    for i in range(300):
        day = date(2026, 10, 1 + i % 28)
        rows.append(
            {
                "fact_key": f"{i:064x}",
                "source": "koha",
                "loan_date": day,
                "return_date": day,
                "branch": ("MAIN", "NORTH")[i % 2],
                "item_type": ("BK", "DVD", "BK")[i % 3],
                "collection": "FIC",
                "patron_category": "ADULT" if i % 10 else "CHILD",
                "category_type": "A",
                "age_band": "19-64",
                "patron_pseudonym": f"{i % 40:064x}",
                "renewals": 0,
                "reporting_period": "2026",
            }
        )
    return rows


def test_a_scheduled_run_publishes_the_previous_month(tmp_path, template):
    stack = new_stack(tmp_path, template)
    engine = koha_engine(stack)
    make_koha(engine)
    with engine.begin() as c:
        for bn in range(10, 20):
            add_patron(c, bn)
        add_patron(c, 99, **CANARY)
    engine.dispose()
    assert {f.needle for f in scan_sqlite(stack.koha_db, needles())} >= {CANARY["email"]}
    wh = engine_for_url(f"sqlite:///{stack.warehouse_db}")
    create_warehouse(wh)
    with wh.begin() as c:
        write_circulation_facts(c, _facts())
    wh.dispose()
    proc = subprocess.run(
        [airflow_bin(), "dags", "test", DAG_ID, "2026-11-02T11:00:00+00:00"],
        env=stack.env,
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    with closing(sqlite3.connect(stack.airflow_db)) as c:
        states = dict(
            c.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)
            ).fetchall()
        )
    assert states == {
        "check_release_inputs": "success",
        "build_release": "success",
        "publish_release": "success",
    }, proc.stdout[-4000:] + proc.stderr[-4000:]
    folder = Path(stack.pp_home) / "exports" / "2026-10"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["period"] == "2026-10" and manifest["audit"]["passed"] is True
    assert manifest["facts_counted"]["circulation_facts"] == 300
    assert (folder / "report.pdf").exists()
    assert (folder / "circulation_by_branch_item_type_age_band.parquet").exists()
    # The staging folder the first task built was swapped in: nothing is left beside it.
    assert not list(folder.parent.glob(".2026-10.tmp-*"))
    with closing(sqlite3.connect(stack.airflow_db)) as c:
        staged = c.execute(
            "SELECT count(*) FROM xcom WHERE dag_id = ? AND task_id = 'build_release'", (DAG_ID,)
        ).fetchone()[0]
    assert staged > 0  # what the scan below covers includes the staging task's XCom
    found = scan_sqlite(stack.airflow_db, needles())  # XCom, rendered fields, run conf
    found += scan_tree(stack.airflow_home, needles())  # task logs, config, raw DB bytes
    found += scan_tree(stack.pp_home, needles(), skip=[stack.koha_db.parent])
    found += scan_text(proc.stdout + proc.stderr, needles(), "airflow dags test output")
    assert not found, "personal values leaked:\n" + "\n".join(str(f) for f in found)
