"""Benchmark: a statistics release over 10 million facts against its own GROUP BY queries.

``run()`` creates a PostgreSQL database of its own (dropped at the end unless
``keep=True``), builds ``circulation_facts`` set-based with ``generate_series``
— ``facts`` rows in the release's month and ``small_facts`` rows in the month
before, so memory can be compared at two sizes — plus a Koha source of a large
library's patrons (a million names) for the PII gate, then measures, in the same
run and alternating:

* **raw**: the exact ``GROUP BY`` statements the release runs (its
  ``Counted.queries``), executed through the driver and fetched;
* **release**: ``publish("month", ...)`` end to end — counting, suppression,
  the LP audit, CSV/Parquet, charts, HTML, PDF, the PII gate, the atomic swap.

It reports the median of each, their ratio (the target is at most 2), and the
peak Python heap (tracemalloc) and resident-set growth of a release over the
small month and over the large one: memory that does not grow with the
number of facts; and the peak resident set of a release in fresh interpreters:
once whole, as the command line makes it, and as the monthly DAG's two tasks
(``build_release``, then ``publish_release``), each in a process of its own.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import tempfile
import time
import tracemalloc
import uuid
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from patron_privacy import bench_memory

PG_ROOT = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@contextmanager
def environment(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _build_facts(url: str, facts: int, small_facts: int, month: date, branches: int) -> float:
    from patron_privacy.warehouse import create_warehouse  # noqa: PLC0415

    eng = create_engine(url)
    create_warehouse(eng)
    t0 = time.perf_counter()
    prev = date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)
    item_types = [
        "BK",
        "DVD",
        "AUD",
        "MAG",
        "EBK",
        "CD",
        "GAME",
        "KIT",
        "MAP",
        "TOOL",
        "SEED",
        "LAPTOP",
    ]
    cats = ["ADULT", "CHILD", "YA", "SENIOR", "STAFF", "HOMEBOUND", "TEACHER", "NONRES"]
    bands = ["0-11", "12-18", "19-64", "65+", "unknown"]
    ccodes = ["FIC", "NFIC", "JUV", "YA", "MEDIA", "AUDIO", "PER", "EBOOK"]

    def arr(xs):
        return "ARRAY[" + ",".join(f"'{x}'" for x in xs) + "]"

    with eng.begin() as c:
        c.execute(text("ALTER TABLE circulation_facts SET UNLOGGED"))
        for start, n, tag in ((month, facts, "m"), (prev, small_facts, "p")):
            # Skewed, deterministic attributes: a few rare combinations give small cells.
            c.execute(
                text(f"""
                INSERT INTO circulation_facts (fact_key, source, loan_date, return_date, branch,
                    item_type, collection, patron_category, category_type, age_band,
                    patron_pseudonym, renewals, reporting_period)
                SELECT md5('{tag}' || i), 'koha',
                       DATE '{start.isoformat()}' + (i % 28),
                       DATE '{start.isoformat()}' + (i % 28) + 14,
                       'BR' || lpad(((i * 7) % {branches})::text, 2, '0'),
                       ({arr(item_types)})[1 + floor(power((i * 13 % 1000) / 1000.0, 3) * 12)::int],
                       ({arr(ccodes)})[1 + (i * 5 % 8)],
                       ({arr(cats)})[1 + floor(power((i * 17 % 997) / 997.0, 4) * 8)::int],
                       'A',
                       ({arr(bands)})[1 + (i * 11 % 5)],
                       CASE WHEN i % 50 = 0 THEN NULL
                            ELSE md5('p' || (i % {max(facts // 12, 1)})) END,
                       i % 3,
                       '{start.year}'
                FROM generate_series(1, {n}) AS i
            """)
            )
            # A rare patron category scattered thinly: small cells to suppress and audit.
            c.execute(
                text(f"""
                INSERT INTO circulation_facts (fact_key, source, loan_date, branch, item_type,
                    collection, patron_category, category_type, age_band, patron_pseudonym,
                    renewals, reporting_period)
                SELECT md5('{tag}rare' || i), 'koha', DATE '{start.isoformat()}' + (i % 28),
                       'BR' || lpad(((i * 3) % {branches})::text, 2, '0'),
                       ({arr(item_types)})[1 + (i % 4)], 'FIC', 'BOOKMOBILE', 'A',
                       ({arr(bands)})[1 + (i % 3)], md5('rare' || (i % 40)), 0, '{start.year}'
                FROM generate_series(1, 150) AS i
            """)
            )
        c.execute(text("ANALYZE circulation_facts"))
    eng.dispose()
    return time.perf_counter() - t0


def _build_koha(path: Path, patrons: int) -> None:
    """The PII gate's source: a borrowers table of ``patrons`` names, every full name
    different (the gate reads only these, and holds every full name)."""
    import sqlite3  # noqa: PLC0415

    with sqlite3.connect(path) as c:
        c.execute(
            "CREATE TABLE borrowers (borrowernumber INTEGER PRIMARY KEY, surname TEXT, "
            "firstname TEXT)"
        )
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO borrowers SELECT i, 'Benchmarkson' || i, 'Bench' || i FROM n",
            (patrons,),
        )


def _release_task(period: str, as_of: date, out: str) -> dict:
    """One release in this (fresh) process, as the command line makes it: time and peak memory."""
    seconds, _, _ = timed_release(period, as_of, Path(out))
    return {"release_s": round(seconds, 3), "peak_rss_kb": bench_memory.peak_rss_kb()}


def build_task(period: str, as_of: date, out: str) -> dict:
    """The monthly DAG's ``build_release`` in this (fresh) process: time, memory, folder."""
    from patron_privacy.release.build import build  # noqa: PLC0415

    t0 = time.perf_counter()
    staged = build("month", period, as_of=as_of, base_dir=out)
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_kb": bench_memory.peak_rss_kb(),
        "staged": str(staged.path),
    }


def publish_task(staged: str) -> dict:
    """The monthly DAG's ``publish_release`` in this (fresh) process: time, memory, result."""
    from patron_privacy.release.publish import publish_staged  # noqa: PLC0415

    t0 = time.perf_counter()
    manifest = publish_staged(staged).manifest
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_kb": bench_memory.peak_rss_kb(),
        "facts_counted": manifest.get("facts_counted"),
        "audit_passed": manifest.get("audit", {}).get("passed"),
    }


def release_as_tasks(period: str, as_of: date, out: str, run=None) -> dict:
    """The release as the DAG runs it: ``build_release`` then ``publish_release``, each in
    a fresh process (``run(fn, *args)``; spawned by default). Returns both tasks' figures."""
    run = run or bench_memory.in_fresh_process
    built = run(build_task, period, as_of, out)
    published = run(publish_task, built["staged"])
    return {
        "release_s": round(built["seconds"] + published["seconds"], 3),
        "build_s": built["seconds"],
        "publish_s": published["seconds"],
        "build_peak_rss_kb": built["peak_rss_kb"],
        "publish_peak_rss_kb": published["peak_rss_kb"],
        "facts_counted": published["facts_counted"],
        "audit_passed": published["audit_passed"],
    }


def release_queries(url: str, period) -> list[str]:
    """The GROUP BY statements a monthly release runs: the floor it is compared with."""
    from patron_privacy.release import tables  # noqa: PLC0415

    eng = create_engine(url)
    try:
        with eng.connect() as c:
            counted = tables.count_monthly(c, period)
            tables.count_planned(c, period, counted)
    finally:
        eng.dispose()
    return counted.queries


def raw_group_by(url: str, queries: list[str]) -> float:
    eng = create_engine(url)
    t0 = time.perf_counter()
    with eng.connect() as c:
        for q in queries:
            c.exec_driver_sql(q).fetchall()
    dt = time.perf_counter() - t0
    eng.dispose()
    return dt


def timed_release(period: str, as_of: date, out: Path, *, trace: bool = False):
    """One release; timed without tracing, or traced (tracemalloc slows Python code)."""
    from patron_privacy.release.publish import publish  # noqa: PLC0415

    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = publish("month", period, as_of=as_of, base_dir=out)
    dt = time.perf_counter() - t0
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return dt, result.manifest, peak


def run(
    *,
    facts: int = 10_000_000,
    small_facts: int = 1_000_000,
    month: str = "2026-03",
    branches: int = 20,
    patrons: int = 1_000_000,
    repeats: int = 2,
    root_url: str = PG_ROOT,
    keep: bool = False,
    out: str | None = None,
) -> dict:
    """Build, measure, report (and write ``out`` as JSON when given)."""
    from patron_privacy.release import tables  # noqa: PLC0415
    from patron_privacy.release.publish import publish  # noqa: PLC0415

    name = f"pp_release_bench_{uuid.uuid4().hex[:8]}"
    root = create_engine(root_url, isolation_level="AUTOCOMMIT")
    with root.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(root_url).set(database=name).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="pp-release-bench-"))
    period = tables.month_period(month)
    prev = tables.previous_month(period.start)
    as_of = date(period.end.year, period.end.month, 2)
    report: dict = {
        "facts": facts,
        "small_facts": small_facts,
        "month": month,
        "branches": branches,
        "patrons_in_koha": patrons,
        "database": "PostgreSQL (127.0.0.1:5432)",
    }
    try:
        report["build_s"] = round(_build_facts(url, facts, small_facts, period.start, branches), 2)
        _build_koha(work / "koha.db", patrons)
        conn_env = {
            "AIRFLOW_CONN_WAREHOUSE_DB": url.replace("postgresql+psycopg2", "postgres"),
            "AIRFLOW_CONN_KOHA_DB": json.dumps(
                {"conn_type": "sqlite", "host": str(work / "koha.db")}
            ),
            "PATRON_PRIVACY_HOME": str(work),
        }
        with environment(**conn_env):
            # Warm-up: caches, imports, the font cache; learn the statements the release runs.
            publish("month", period.label, as_of=as_of, base_dir=work / "exports")
            queries = release_queries(url, period)
            raw_times, rel_times = [], []
            manifest = {}
            for _ in range(repeats):
                raw_times.append(raw_group_by(url, queries))
                dt, manifest, _ = timed_release(period.label, as_of, work / "exports")
                rel_times.append(dt)
            _, _, peak_small = timed_release(prev.label, as_of, work / "exports", trace=True)
            _, _, peak_large = timed_release(period.label, as_of, work / "exports", trace=True)
            fresh = bench_memory.in_fresh_process(
                _release_task, period.label, as_of, str(work / "exports")
            )
            tasks = release_as_tasks(period.label, as_of, str(work / "exports"))
        raw_med, rel_med = statistics.median(raw_times), statistics.median(rel_times)
        report.update(
            {
                "queries": len(queries),
                "raw_group_by_s": [round(x, 3) for x in raw_times],
                "release_s": [round(x, 3) for x in rel_times],
                "raw_median_s": round(raw_med, 3),
                "release_median_s": round(rel_med, 3),
                "ratio_release_to_raw": round(rel_med / raw_med, 3),
                "target_ratio": 2.0,
                "facts_counted": manifest.get("facts_counted"),
                "suppressed_cells": manifest.get("suppression", {}).get("suppressed_cells"),
                "audit_passed": manifest.get("audit", {}).get("passed"),
                "memory": {
                    f"python_heap_peak_bytes_{small_facts}_facts": peak_small,
                    f"python_heap_peak_bytes_{facts}_facts": peak_large,
                    "heap_growth_ratio": round(peak_large / max(peak_small, 1), 3),
                    "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                    * 1024,
                    "release_one_process_peak_rss_mb": round(fresh["peak_rss_kb"] / 1024, 1),
                    "release_one_process_s": fresh["release_s"],
                    "build_release_task_peak_rss_mb": round(tasks["build_peak_rss_kb"] / 1024, 1),
                    "build_release_task_s": tasks["build_s"],
                    "publish_release_task_peak_rss_mb": round(
                        tasks["publish_peak_rss_kb"] / 1024, 1
                    ),
                    "publish_release_task_s": tasks["publish_s"],
                    "note": "tracemalloc peak of one release; the grouped rows are bounded by the "
                    "codes (branches x item types x categories x bands), not the facts",
                },
            }
        )
    finally:
        with root.connect() as c:
            if not keep:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        root.dispose()
        import shutil  # noqa: PLC0415

        shutil.rmtree(work, ignore_errors=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facts", type=int, default=10_000_000)
    ap.add_argument("--small-facts", type=int, default=1_000_000)
    ap.add_argument("--patrons", type=int, default=1_000_000, help="names for the PII gate")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench-results/bench_release.json")
    a = ap.parse_args()
    print(
        json.dumps(
            run(
                facts=a.facts,
                small_facts=a.small_facts,
                patrons=a.patrons,
                repeats=a.repeats,
                out=a.out,
            ),
            indent=2,
        )
    )
