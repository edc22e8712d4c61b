"""Benchmark at a large system's scale: Koha's nightly run, end to end, and a release.

The state: a Koha database in MariaDB with ``patrons`` patrons and ``loans``
returned loans of history (``past`` of them past the 30-day window, the rest
inside it), built set-based by the engine benchmark's builder (``bench``), and
a fresh PostgreSQL warehouse, migrated as production's is.

What it measures, in one run:

* **the nightly run**, task by task as the nightly DAG runs them — validate,
  inventory, facts, the categories to fan out, one mapped task per category
  (``workers`` at a time, as that many Celery workers would), the
  whole-source pass, verify, audit — each in a fresh process, as Airflow runs
  each task: its wall time and its peak resident memory. The run's wall time
  is the sum of the stages (the mapped stage counts once, for all its tasks);
* **enforcement against the raw-SQL floor**: the rows per second the mapped
  ``returned_loans`` task changed, and, on the same data reset to its
  pristine state, the floor's two forms (one ``UPDATE``; the ``UPDATE`` in
  primary-key ranges), the faster counting;
* **the release against raw GROUP BY**: the monthly release of the busiest
  month of the facts the run recorded, as the monthly DAG's two tasks
  (``build_release``, then ``publish_release``), each in a fresh process,
  against the ``GROUP BY`` statements it runs, executed and fetched.

Every end state is checked against plain SQL: the run must change exactly
the eligible loans, every floor must reach the same state, the audit must
hold a row per category. A mismatch is reported in ``errors``.

What it touches: the MariaDB database named by ``koha_url`` (rebuilt; refused
if it holds tables it did not build) and a PostgreSQL database of its own,
dropped at the end unless ``keep``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from patron_privacy import bench, bench_memory, bench_release
from patron_privacy.policy import load_policy
from patron_privacy.sources.koha import schema
from patron_privacy.sources.koha.connector import CONNECTOR

log = logging.getLogger("patron_privacy.bench_scale")

DEFAULT_KOHA_URL = "mysql+pymysql://root@127.0.0.1:3306/pp_scale"
SOURCE = "koha"
CATEGORY = "returned_loans"
ENGINE_ALONE = "engine_alone"
# Each task runs in a process of its own. Spawned by default: it starts from nothing,
# so its peak memory is its own. "forkserver" (the tests') forks each task from a server
# that has imported the package once: seconds faster per task, peak memory the same
# or higher (the server's modules are counted in every task).
START_METHODS = ("spawn", "forkserver")
_PRELOAD = ["patron_privacy.nightly_steps", "patron_privacy.pipeline", "patron_privacy.bench"]


def _context(start_method: str):
    if start_method not in START_METHODS:
        raise ValueError(f"start_method must be one of {START_METHODS}, got {start_method!r}")
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)
    return ctx


# --- one task, in its own process ---------------------------------------------------------------


def _task_env() -> dict[str, str]:
    """What a task needs from the run's environment, passed explicitly: a forkserver
    keeps the environment it started with, which may be an earlier run's."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("AIRFLOW_CONN_") or k == "PATRON_PRIVACY_HOME"
    }


def _task(step: str, run_id: str, arg, env: dict[str, str]) -> dict:
    """Run one nightly step in this (fresh) process; seconds, peak RSS and its result."""
    for k in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        del os.environ[k]
    os.environ.update(env)
    from patron_privacy import pipeline  # noqa: PLC0415
    from patron_privacy.nightly_steps import EngineSteps, RunInfo  # noqa: PLC0415

    t0 = time.perf_counter()
    policy = load_policy()
    info = RunInfo(SOURCE, bench.AS_OF, run_id, dry_run=False, policy=policy)
    steps = EngineSteps()
    if step == "validate":
        report = steps.validate(info)
        result = {"passed": report["passed"], "rows": report.get("rows", {})}
    elif step == "inventory":
        from patron_privacy.inventory import assert_all_classified  # noqa: PLC0415

        result = assert_all_classified(SOURCE)
    elif step == "facts":
        result = steps.facts(info)
    elif step == "categories":
        result = steps.categories(info)
    elif step == "enforce_category":
        result = steps.enforce_category(info, arg)
    elif step == "enforce":
        result = steps.enforce(info, arg or [])
    elif step == "verify":
        result = steps.verify(info, None)
    elif step == "audit":
        result = pipeline.record_outcome(SOURCE, info.as_of, run_id, arg, policy=policy)
    else:
        raise ValueError(f"unknown step {step}")
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "max_rss_kb": bench_memory.peak_rss_kb(),
        "result": result,
    }


def _in_process(step: str, run_id: str, arg=None, *, start_method: str = "spawn") -> dict:
    return bench_memory.in_fresh_process(
        _task, step, run_id, arg, _task_env(), mp_context=_context(start_method)
    )


def _mapped(
    run_id: str, categories: list[str], workers: int, start_method: str
) -> tuple[float, dict[str, dict]]:
    """The mapped tasks, ``workers`` at a time, each in a process of its own."""
    t0 = time.perf_counter()
    ctx = _context(start_method)
    with ProcessPoolExecutor(workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        env = _task_env()
        futures = {c: pool.submit(_task, "enforce_category", run_id, c, env) for c in categories}
        done = {c: f.result() for c, f in futures.items()}
    return time.perf_counter() - t0, done


def _engine_alone(run_id: str, start_method: str) -> dict:
    """The nightly's ``returned_loans`` task once more, in a fresh process with the machine
    to itself: rows per second as the task reports its own duration (verification
    included), and its peak memory."""
    out = _in_process("enforce_category", run_id, CATEGORY, start_method=start_method)
    result = out["result"]
    return {
        "seconds": result["duration_s"],
        "rows_changed": result["changed"],
        "rows_per_s": bench.rate(result["changed"], result["duration_s"]),
        "task_seconds": out["seconds"],
        "max_rss_kb": out["max_rss_kb"],
    }


def nightly(
    run_id: str, workers: int, start_method: str = "spawn", progress: dict | None = None
) -> dict:
    """The nightly DAG's tasks in its order; per task: seconds and peak RSS.

    ``progress`` receives the stages and tasks as they finish, so a run stopped part
    way still reports them.
    """
    tasks: dict[str, dict] = {}
    stages: dict[str, float] = {}
    if progress is not None:
        progress.update(stages_s=stages, tasks=tasks, finished=False)

    def stage(name: str, step: str, arg=None) -> dict:
        t = time.perf_counter()
        out = _in_process(step, run_id, arg, start_method=start_method)
        stages[name] = round(time.perf_counter() - t, 3)
        tasks[name] = {"seconds": out["seconds"], "max_rss_kb": out["max_rss_kb"]}
        log.info("%s: %.1fs", name, stages[name])
        return out["result"]

    validated = stage("validate", "validate")
    if not validated["passed"]:
        raise RuntimeError("validation failed on the benchmark's data: nothing enforced")
    stage("inventory", "inventory")
    facts = stage("record_facts", "facts")
    chosen = stage("categories", "categories")
    wall, mapped = _mapped(run_id, chosen, workers, start_method)
    stages["enforce_one_category"] = round(wall, 3)
    for c, out in mapped.items():
        tasks[f"enforce_one_category[{c}]"] = {
            "seconds": out["seconds"],
            "max_rss_kb": out["max_rss_kb"],
        }
    fanned = [out["result"] for out in mapped.values()]
    enforced = stage("enforce_retention_policy", "enforce", fanned)
    verified = stage("verify", "verify")
    stage("audit", "audit", [*enforced, *verified])
    return {
        "wall_s": round(sum(stages.values()), 3),
        "stages_s": stages,
        "tasks": tasks,
        "facts_recorded": facts.get("facts_recorded"),
        "categories_fanned_out": len(chosen),
        "workers": workers,
        "mapped": {c: out["result"] for c, out in mapped.items()},
        "enforced": enforced,
        "verified": verified,
    }


# --- the run --------------------------------------------------------------------------------------


def _warehouse(root_url: str) -> tuple[str, str]:
    name = f"pp_scale_wh_{uuid.uuid4().hex[:8]}"
    bench.admin_sql(root_url, f'CREATE DATABASE "{name}"')
    return name, make_url(root_url).set(database=name).render_as_string(hide_password=False)


def _drop_warehouse(root_url: str, name: str) -> None:
    bench.admin_sql(root_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _airflow_uri(url: str, scheme: str) -> str:
    """``mysql+pymysql://…`` as an ``AIRFLOW_CONN_*`` URI (``mysql://…``)."""
    u = make_url(url)
    return u.set(drivername=scheme).render_as_string(hide_password=False)


def _busiest_month(wh_url: str) -> str:
    eng = create_engine(wh_url)
    try:
        with eng.connect() as c:
            row = c.execute(
                text(
                    "SELECT to_char(loan_date, 'YYYY-MM') AS m, COUNT(*) FROM circulation_facts "
                    "GROUP BY m ORDER BY COUNT(*) DESC, m LIMIT 1"
                )
            ).one()
    finally:
        eng.dispose()
    return row[0]


def _audit_rows(wh_url: str, run_id: str) -> int:
    eng = create_engine(wh_url)
    try:
        with eng.connect() as c:
            return c.execute(
                text("SELECT COUNT(*) FROM retention_audit WHERE run_id = :r"), {"r": run_id}
            ).scalar_one()
    finally:
        eng.dispose()


def _with_env(env: dict[str, str], fn, *args):
    """``fn(*args)`` with the run's connections, in a process that may have started
    with an earlier run's (a forkserver)."""
    for k in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        del os.environ[k]
    os.environ.update(env)
    return fn(*args)


def _release_vs_raw(wh_url: str, work: Path, repeats: int, start_method: str) -> dict:
    """The monthly DAG's two release tasks, each in a process of its own, against the
    release's own GROUP BY statements."""
    from patron_privacy.release import tables  # noqa: PLC0415

    def run(fn, *args):
        return bench_memory.in_fresh_process(
            _with_env, _task_env(), fn, *args, mp_context=_context(start_method)
        )

    month = _busiest_month(wh_url)
    period = tables.month_period(month)
    nxt = period.end
    as_of = date(nxt.year, nxt.month, 2) if nxt.day == 1 else nxt
    out = str(work / "exports")
    # Warm-up: imports, the font cache, the database's caches.
    bench_release.release_as_tasks(period.label, as_of, out, run=run)
    queries = bench_release.release_queries(wh_url, period)
    raw, rel, build_rss, publish_rss = [], [], [], []
    for _ in range(repeats):
        raw.append(bench_release.raw_group_by(wh_url, queries))
        done = bench_release.release_as_tasks(period.label, as_of, out, run=run)
        rel.append(done["release_s"])
        build_rss.append(done["build_peak_rss_kb"])
        publish_rss.append(done["publish_peak_rss_kb"])
    raw_med, rel_med = statistics.median(raw), statistics.median(rel)
    return {
        "month": month,
        "facts_counted": done["facts_counted"],
        "audit_passed": done["audit_passed"],
        "queries": len(queries),
        "raw_group_by_s": [round(x, 3) for x in raw],
        "release_s": [round(x, 3) for x in rel],
        "ratio_release_to_raw": round(rel_med / raw_med, 3) if raw_med else None,
        "target_ratio": 2.0,
        "build_release_task_max_rss_kb": max(build_rss),
        "publish_release_task_max_rss_kb": max(publish_rss),
    }


def _pseudonym_keys(db) -> dict:
    with db.connect() as c:
        lo, hi = c.execute(
            text("SELECT YEAR(MIN(issuedate)), YEAR(MAX(issuedate)) FROM old_issues")
        ).one()
    pseudo, years = bench.bench_pseudonymizer(lo, hi)
    return {y: pseudo.key(y).decode() for y in years}


def _check(report: dict, expected: dict, run: dict, audit_rows: int, policy_rules: int) -> None:
    errors = report["errors"]
    loans = run["mapped"].get(CATEGORY)
    want = expected["counts"]["eligible"]
    if loans is None:
        errors.append(f"{CATEGORY} was not fanned out")
    elif loans["changed"] != want:
        errors.append(f"{CATEGORY}: the run changed {loans['changed']}, plain SQL expects {want}")
    still = {r["category"]: r.get("remaining") for r in run["verified"] if r.get("remaining")}
    if still:
        errors.append(f"verification not clean: {still}")
    if audit_rows < policy_rules:
        errors.append(f"audit holds {audit_rows} rows for {policy_rules} rules")
    if run["facts_recorded"] != report["data"]["loans_before_as_of"]:
        errors.append(
            f"facts recorded {run['facts_recorded']}, loans returned before as-of "
            f"{report['data']['loans_before_as_of']}"
        )


def _enforcement(
    out: dict,
    db,
    p: bench.Params,
    pristine: dict,
    expected: dict,
    run_id: str,
    loans_task: dict,
    workers: int,
    start_method: str,
    errors: list[str],
) -> None:
    """The engine's ``returned_loans`` task alone, then the floors, each on the rows in
    their pristine state (reset after each), into ``out``.

    Alone, as the floors run: in the night the task shares the machine with another
    category's task, which the floors never do; that figure is kept beside it."""
    seconds = loans_task.get("duration_s")
    nightly_rps = bench.rate(loans_task.get("changed", 0), seconds) if seconds else None
    floors: dict[str, dict] = {}
    alone: dict[str, dict] = {}
    loop: dict[str, dict] = {}
    out.update(
        category=CATEGORY,
        rows_changed=loans_task.get("changed"),
        engine_in_nightly_seconds=seconds,
        engine_in_nightly_rows_per_s=nightly_rps,
        engine_alone=alone,
        floors=floors,
        loop=loop,
        note="the engine's time includes its verification of the category; in the "
        f"night it ran beside {workers - 1} other category task(s), alone it ran as "
        "the floors do",
    )
    rss: dict[str, int] = {}
    for plan, into in (
        ([(ENGINE_ALONE, lambda: _engine_alone(f"{run_id}-alone", start_method))], alone),
        (list(bench.loan_floors(db, p).items()), floors),
        # Koha's per-patron loop on a sample of patrons, extrapolated (all of them would
        # take hours at this size); the rest is completed untimed to check the end state.
        (
            [
                (
                    "loop",
                    lambda: bench.measure_koha_loop(
                        db, p, expected, bench.LOOP_FULL_MAX, bench.LOOP_SAMPLE
                    ),
                )
            ],
            loop,
        ),
    ):
        bench.run_plan(
            plan,
            into,
            state=lambda: bench.loan_state(db, p),
            expected=expected,
            reset=lambda: bench.reset_loans(db, p, pristine),
            errors=errors,
            rss=rss,
            settle=lambda m: bench.add_purge_time(m, bench.wait_for_purge(db)),
        )
    floor_rps = max((m.get("rows_per_s") or 0) for m in floors.values()) or None
    engine_rps = alone.get(ENGINE_ALONE, {}).get("rows_per_s")
    if out["rows_changed"] is None:
        out["rows_changed"] = alone.get(ENGINE_ALONE, {}).get("rows_changed")
    out["floor_rows_per_s"] = floor_rps
    out["engine_vs_floor"] = bench.ratio(engine_rps, floor_rps)
    out["engine_in_nightly_vs_floor"] = bench.ratio(nightly_rps, floor_rps)
    out["engine_vs_loop"] = bench.ratio(engine_rps, loop.get("loop", {}).get("rows_per_s"))


def run(
    *,
    koha_url: str = DEFAULT_KOHA_URL,
    patrons: int = 1_000_000,
    loans: int = 10_000_000,
    past: int = 1_000_000,
    workers: int = 2,
    repeats: int = 2,
    root_url: str = bench_release.PG_ROOT,
    keep: bool = False,
    out: str | None = None,
    start_method: str = "spawn",
    enforcement_only: bool = False,
) -> dict:
    """Build, run the nightly, measure floors and release; write and return the JSON.

    ``enforcement_only``: no nightly and no release, only the engine's loans task
    against the floors on the freshly built state (about an hour less)."""
    bench.check_sizes(loans, past, patrons)
    _context(start_method)  # an unknown method fails before anything is built
    rule, opts, policy_version = bench.policy_rule(SOURCE, CATEGORY, CONNECTOR.default_options)
    p = bench.Params(rows=loans, past=past, patrons=patrons, cutoff=bench.AS_OF - rule.cutoff_delta)
    errors: list[str] = []
    report: dict = {
        "benchmark": "koha nightly run at scale: wall time, per-task memory, floor, release",
        "started_at": bench.now_iso(),
        "machine": bench.machine_info(),
        "params": {
            "patrons": patrons,
            "loans": loans,
            "past": past,
            "workers": workers,
            "task_start_method": start_method,
            "as_of": bench.AS_OF.isoformat(),
            "policy_version": policy_version,
            "batch_size": int(opts.get("batch_size", 10_000)),
            # Sessions each category task applies its batches with (the policy's workers).
            "batch_sessions": int(opts.get("workers", 1)),
            "enforcement_only": enforcement_only,
        },
        "errors": errors,
    }
    name = bench.ensure_database(koha_url)
    db = create_engine(koha_url, pool_pre_ping=True)
    wh_name, wh_url = _warehouse(root_url)
    work = Path(tempfile.mkdtemp(prefix="pp-scale-bench-"))
    restore = ExitStack()  # the environment, as it was before the run's connections
    try:
        report["mariadb"] = bench.server_info(db)
        t = time.perf_counter()
        bench.drop_tables(db, name)
        schema.create_schema(db)
        bench.mark(db, f"`{bench.MARKER}`", p, "patron_privacy.bench_scale")
        report["build_steps_s"] = bench.build_old_issues(db, p)
        report["build_s"] = round(time.perf_counter() - t, 2)
        pristine = bench.loan_state(db, p)
        expected = bench.expected_outcome(db, p, pristine)
        with db.connect() as c:
            before = c.execute(
                text("SELECT COUNT(*) FROM old_issues WHERE returndate < :a"), {"a": bench.AS_OF}
            ).scalar_one()
        report["data"] = {
            "counts": bench.data_counts(db),
            **expected["counts"],
            "loans_before_as_of": before,
        }
        bench.wait_for_purge(db)

        restore.enter_context(
            bench_release.environment(
                AIRFLOW_CONN_KOHA_DB=_airflow_uri(koha_url, "mysql"),
                AIRFLOW_CONN_WAREHOUSE_DB=_airflow_uri(wh_url, "postgres"),
                AIRFLOW_CONN_PSEUDONYM_KEYS=json.dumps(
                    {"conn_type": "generic", "extra": {"keys": _pseudonym_keys(db)}}
                ),
                PATRON_PRIVACY_HOME=str(work),
            )
        )
        from patron_privacy.warehouse import create_warehouse  # noqa: PLC0415

        wh = create_engine(wh_url)
        create_warehouse(wh)
        wh.dispose()

        run_id = f"scale-{uuid.uuid4().hex[:8]}"
        loans_task: dict = {}
        result = None
        if not enforcement_only:
            report["nightly"] = progress = {}
            result = nightly(run_id, workers, start_method, progress)
            report["nightly"] = result | {"finished": True}
            loans_task = result["mapped"].get(CATEGORY) or {}
            rules = len(load_policy().rules_for(SOURCE))
            _check(report, expected, result, _audit_rows(wh_url, run_id), rules)
            bench.reset_loans(db, p, pristine)
        report["enforcement"] = enforcement = {}
        # Filled in as each part is measured, so an interrupted run still reports them.
        _enforcement(
            enforcement,
            db,
            p,
            pristine,
            expected,
            run_id,
            loans_task,
            workers,
            start_method,
            errors,
        )
        if result is None:
            report["summary"] = _enforcement_summary(enforcement)
        else:
            report["release"] = _release_vs_raw(wh_url, work, repeats, start_method)
            report["memory"] = _memory(result["tasks"], report["release"])
            report["summary"] = _nightly_summary(report, result)
    except Exception as exc:
        errors.append(f"fatal: {type(exc).__name__}: {exc}")
        raise
    finally:
        restore.close()
        db.dispose()
        if not keep:
            _drop_warehouse(root_url, wh_name)
        shutil.rmtree(work, ignore_errors=True)
        report["machine"]["loadavg_at_end"] = bench.loadavg()
        report["finished_at"] = bench.now_iso()
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _enforcement_summary(enforcement: dict) -> dict:
    return {
        "engine_vs_floor": enforcement["engine_vs_floor"],
        "engine_rows_per_s": enforcement["engine_alone"].get(ENGINE_ALONE, {}).get("rows_per_s"),
        "floor_rows_per_s": enforcement["floor_rows_per_s"],
        "engine_vs_loop": enforcement["engine_vs_loop"],
    }


def _memory(tasks: dict, release: dict) -> dict:
    """Peak RSS of every task of the night and of the release's two tasks."""
    return {
        "peak_rss_kb_by_task": {k: v["max_rss_kb"] for k, v in tasks.items()},
        "max_task_rss_kb": max(
            [v["max_rss_kb"] for v in tasks.values()]
            + [release["build_release_task_max_rss_kb"], release["publish_release_task_max_rss_kb"]]
        ),
        "goal_kb": 300 * 1024,
    }


def _nightly_summary(report: dict, result: dict) -> dict:
    return {
        "nightly_wall_s": result["wall_s"],
        "engine_vs_floor": report["enforcement"]["engine_vs_floor"],
        "engine_in_nightly_vs_floor": report["enforcement"]["engine_in_nightly_vs_floor"],
        "engine_vs_loop": report["enforcement"]["engine_vs_loop"],
        "release_vs_raw_group_by": report["release"]["ratio_release_to_raw"],
        "max_task_rss_mb": round(report["memory"]["max_task_rss_kb"] / 1024, 1),
    }


def main(argv: list[str] | None = None, *, run_fn: Callable[..., dict] = run) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m patron_privacy.bench_scale",
        description="Koha's nightly run at a large system's scale (MariaDB + PostgreSQL).",
    )
    ap.add_argument("--koha-url", default=DEFAULT_KOHA_URL)
    ap.add_argument("--patrons", type=int, default=1_000_000)
    ap.add_argument("--loans", type=int, default=10_000_000)
    ap.add_argument("--past", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--start-method", choices=START_METHODS, default="spawn")
    ap.add_argument("--keep", action="store_true", help="keep the warehouse database")
    ap.add_argument(
        "--enforcement-only",
        action="store_true",
        help="only the loans task against the raw-SQL floor: no nightly, no release",
    )
    ap.add_argument("--out", default="bench-results/bench_scale.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = run_fn(
        koha_url=args.koha_url,
        patrons=args.patrons,
        loans=args.loans,
        past=args.past,
        workers=args.workers,
        keep=args.keep,
        out=args.out,
        start_method=args.start_method,
        enforcement_only=args.enforcement_only,
    )
    print(json.dumps(report.get("summary", {}), indent=2))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
