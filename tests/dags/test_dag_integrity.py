"""DAG integrity: every file in ``dags/`` parses, follows the project's conventions, and
does no work at parse time (fast, no database, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from patron_privacy.dag_defaults import Tag

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
PARSE_BUDGET_S = 0.5
UNREACHABLE = "mysql://root@127.0.0.1:1/none"


def test_there_are_dag_files():
    assert DAG_FILES, f"no DAG files in {DAGS}"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "the DagBag is empty"
    parsed = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert parsed == {p.name for p in DAG_FILES}


def _dags(dagbag):
    return sorted(dagbag.dags.values(), key=lambda d: d.dag_id)


# Each check lists every offending DAG at once, so one run shows all there is to fix.


def test_every_dag_has_owner_retries_and_doc(dagbag):
    problems = []
    for dag in _dags(dagbag):
        args = dag.default_args or {}
        if not args.get("owner") or args["owner"] == "airflow":
            problems.append(f"{dag.dag_id}: no owner in default_args")
        if int(args.get("retries", 0)) < 1:
            problems.append(f"{dag.dag_id}: default_args retries={args.get('retries', 0)}")
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag.dag_id}: empty doc_md")
    assert not problems, "\n".join(problems)


def test_tags_come_from_the_vocabulary(dagbag):
    allowed = {t.value for t in Tag}
    problems = []
    for dag in _dags(dagbag):
        if not dag.tags:
            problems.append(f"{dag.dag_id}: no tags")
        unknown = sorted(set(dag.tags) - allowed)
        if unknown:
            problems.append(f"{dag.dag_id}: tags outside dag_defaults.Tag: {unknown}")
    assert not problems, "\n".join(problems)


def test_retention_dags_run_one_at_a_time(dagbag):
    retention = [d for d in _dags(dagbag) if Tag.RETENTION.value in d.tags]
    assert retention, "no DAG is tagged retention"
    problems = [
        f"{d.dag_id}: max_active_runs={d.max_active_runs}"
        for d in retention
        if d.max_active_runs != 1
    ]
    assert not problems, "\n".join(problems)


def test_dry_run_param_is_boolean_and_defaults_to_true(dagbag):
    """DAGs that delete (tagged retention) must offer a dry run, on by default for manual
    runs; any other DAG that offers one must offer it the same way."""
    problems = []
    for dag in _dags(dagbag):
        if "dry_run" not in dag.params:
            if Tag.RETENTION.value in dag.tags:
                problems.append(f"{dag.dag_id}: no dry_run param")
            continue
        param = dag.params.get_param("dry_run")
        if param.schema.get("type") != "boolean":
            problems.append(f"{dag.dag_id}: dry_run type is {param.schema.get('type')!r}")
        if param.value is not True:
            problems.append(f"{dag.dag_id}: dry_run defaults to {param.value!r}")
    assert not problems, "\n".join(problems)


def test_every_source_has_a_nightly_retention_dag_from_the_factory(dagbag):
    """One nightly DAG per source, each from the shared factory (same task ids, the
    source's own facts and audit assets, named without a URI scheme)."""
    from patron_privacy import nightly_dag, nightly_steps  # noqa: PLC0415
    from patron_privacy.sources import SOURCES  # noqa: PLC0415

    assert nightly_dag.KINDS == nightly_steps.KINDS
    common = {
        nightly_dag.VALIDATE,
        nightly_dag.FACTS,
        nightly_dag.VERIFY,
        nightly_dag.AUDIT,
        nightly_dag.INVENTORY,
        nightly_dag.FAIL_RUN,
    }
    problems = []
    for source in SOURCES:
        dag = dagbag.dags.get(f"{source}_nightly_retention")
        if dag is None:
            problems.append(f"{source}: no {source}_nightly_retention DAG")
            continue
        tasks = {t.task_id for t in dag.tasks}
        kind = nightly_steps.kind_of(source)
        want = common if kind == nightly_steps.VENDOR else common | {nightly_dag.ENFORCE}
        if kind == nightly_steps.ENGINE:
            want = want | {nightly_dag.CATEGORIES, nightly_dag.ENFORCE_CATEGORY}
        if tasks != want:
            problems.append(f"{source}: tasks {sorted(tasks)}, expected {sorted(want)}")
        if not {Tag.RETENTION.value, Tag.NIGHTLY.value} <= set(dag.tags):
            problems.append(f"{source}: tags {dag.tags}")
        if not any(t.startswith("source:") for t in dag.tags):
            problems.append(f"{source}: no source:* tag")
        outlets = {
            getattr(o, "name", None) for t in dag.tasks for o in (getattr(t, "outlets", []) or [])
        }
        for name in (f"patron_privacy.facts.{source}", f"patron_privacy.retention_audit.{source}"):
            if name not in outlets:
                problems.append(f"{source}: no asset {name} (has {sorted(map(str, outlets))})")
        for o in (o for t in dag.tasks for o in (getattr(t, "outlets", []) or [])):
            if "://" in (getattr(o, "uri", "") or ""):
                problems.append(f"{source}: asset {o.uri} has a URI scheme (slow parsing)")
        audit = dag.get_task(nightly_dag.AUDIT)
        if audit.trigger_rule != "all_done":
            problems.append(f"{source}: audit trigger_rule {audit.trigger_rule}")
        if dag.get_task(nightly_dag.FAIL_RUN).trigger_rule != "one_failed":
            problems.append(f"{source}: fail_run does not fire on one_failed")
        if "how to rerun safely" not in (dag.doc_md or "").lower():
            problems.append(f"{source}: doc_md is not a runbook (no 'How to rerun safely')")
    assert not problems, "\n".join(problems)


def test_vendor_dag_has_no_enforce_step_and_files_run_in_order(dagbag):
    from patron_privacy import nightly_dag  # noqa: PLC0415

    libcal = dagbag.dags["libcal_nightly_retention"]
    assert libcal.get_task(nightly_dag.FACTS).downstream_task_ids >= {nightly_dag.VERIFY}
    for source in ("signups", "programs", "squid", "libki"):
        dag = dagbag.dags[f"{source}_nightly_retention"]
        assert nightly_dag.FACTS in dag.get_task(nightly_dag.VALIDATE).downstream_task_ids
        assert nightly_dag.ENFORCE in dag.get_task(nightly_dag.FACTS).downstream_task_ids
        assert nightly_dag.VERIFY in dag.get_task(nightly_dag.ENFORCE).downstream_task_ids


# One interpreter starts Airflow, then forks a child per DAG file, so every file is
# imported from the same state and alone. ``import airflow.sdk`` comes first and is not
# timed: it is Airflow's own start-up, paid once per parsing process whatever the DAGs
# do. airflow.sdk loads its names lazily, so "done" includes resolving its public names
# (``from airflow.sdk import dag`` would otherwise bill Airflow's loading to the first DAG
# file). Only the import of the DAG file's module is timed. Then every way to reach a
# database or the network is replaced by a function that records the attempt and
# raises, so an attempt swallowed by a try/except in the DAG file still shows.
PROBE = textwrap.dedent(
    """
    import importlib.util, json, os, socket, sqlite3, sys, time

    import airflow.sdk  # Airflow's start-up: done before timing starts

    for name in airflow.sdk.__all__:
        try:
            getattr(airflow.sdk, name)
        except Exception:
            pass
    import sqlalchemy, sqlalchemy.engine, sqlalchemy.engine.create

    attempts = []

    def refuse(what):
        def _refuse(*args, **kwargs):
            attempts.append(what)
            raise RuntimeError("parse time must not use " + what)
        return _refuse

    socket.socket.connect = refuse("socket.connect")
    socket.socket.connect_ex = refuse("socket.connect_ex")
    socket.create_connection = refuse("socket.create_connection")
    socket.getaddrinfo = refuse("socket.getaddrinfo")
    for mod in (sqlalchemy, sqlalchemy.engine, sqlalchemy.engine.create):
        mod.create_engine = refuse("sqlalchemy.create_engine")
    sqlite3.connect = refuse("sqlite3.connect")

    def probe(path):
        spec = importlib.util.spec_from_file_location("dag_file_under_test", path)
        module = importlib.util.module_from_spec(spec)
        error = None
        started = time.perf_counter()
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            error = type(exc).__name__ + ": " + str(exc)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "attempts": attempts, "error": error}

    # One forked child per DAG file, from this started process, as Airflow's DAG
    # processor parses: each file's import is timed from the same state, alone.
    results = {}
    for path in sys.argv[1:]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, json.dumps(probe(path)).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        results[path] = json.loads(data) if data else {"error": "the probe's child died"}
    print("PROBE " + json.dumps(results))
    """
)


def probe_all(paths: list[Path], tmp_path: Path) -> dict[str, dict]:
    """Each DAG file's parse: seconds, database or network attempts, error; by path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(paths[0].parent),
            "AIRFLOW_CONN_KOHA_DB": UNREACHABLE,
            "AIRFLOW_CONN_WAREHOUSE_DB": UNREACHABLE,
            "PATRON_PRIVACY_HOME": str(tmp_path / "pp"),
            "PYTHONPATH": str(REPO / "include"),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, f"probe crashed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1].removeprefix("PROBE "))


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict[str, dict]:
    return probe_all(DAG_FILES, tmp_path_factory.mktemp("probe"))


def probe_parse(path: Path, tmp_path: Path) -> dict:
    return probe_all([path], tmp_path)[str(path)]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_database_or_network(path, parsed):
    result = parsed[str(path)]
    assert result["error"] is None, result
    assert result["attempts"] == [], f"{path.name} touched a database or the network: {result}"
    assert result["seconds"] < PARSE_BUDGET_S, f"{path.name} took {result['seconds']:.3f}s"


def test_parse_probe_catches_database_and_network_at_parse_time(tmp_path):
    """The probe itself can fail: a DAG file that connects at parse time is caught,
    even when it swallows the error."""
    bad = tmp_path / "dags" / "bad_dag.py"
    bad.parent.mkdir()
    bad.write_text(
        textwrap.dedent(
            """
            import socket
            from patron_privacy import connections

            try:
                connections.engine_for(connections.KOHA_DB)
            except Exception:
                pass
            try:
                socket.create_connection(("127.0.0.1", 1), timeout=0.1)
            except Exception:
                pass
            """
        )
    )
    result = probe_parse(bad, tmp_path)
    assert "sqlalchemy.create_engine" in result["attempts"]
    assert "socket.create_connection" in result["attempts"]


def test_database_sources_fan_out_one_mapped_task_per_category_before_the_whole_pass(dagbag):
    from patron_privacy import nightly_dag  # noqa: PLC0415

    for source in ("koha", "evergreen", "libki"):
        dag = dagbag.dags[f"{source}_nightly_retention"]
        chooser = dag.get_task(nightly_dag.CATEGORIES)
        mapped = dag.get_task(nightly_dag.ENFORCE_CATEGORY)
        whole = dag.get_task(nightly_dag.ENFORCE)
        assert nightly_dag.CATEGORIES in dag.get_task(nightly_dag.FACTS).downstream_task_ids
        assert chooser.downstream_task_ids == {nightly_dag.ENFORCE_CATEGORY}
        assert type(mapped).__name__.endswith("MappedOperator"), source
        assert nightly_dag.ENFORCE in mapped.downstream_task_ids
        # It must run when nothing fanned out (a dry run, a SQLite source: zero instances).
        assert whole.trigger_rule == "none_failed"
        assert nightly_dag.VERIFY in whole.downstream_task_ids
