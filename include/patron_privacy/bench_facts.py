"""Benchmark: facts into a PostgreSQL warehouse, as the facts task writes them, against
the floor and against the statement the task used before.

What it measures, on one stream of generated facts (keyed and sized like real ones,
in batches of the nightly task's size), each way into a fresh migrated warehouse
database, in the same run:

* the code: ``write_circulation_facts`` (``pg_copy``: a COPY into a temporary table,
  then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per batch);
* the floor: a plain COPY of the same batches straight into the table, which skips
  nothing (it would fail on a key already there);
* the multi-row ``INSERT ... ON CONFLICT DO NOTHING`` the task used before;
* the code again over the same facts: every key is there, nothing is written.

Only the writes are timed: each batch is generated before its clock starts. Every
way must end with exactly the facts generated (and the rerun with none new), or the
report lists an error.

What it touches: PostgreSQL databases of its own (``pp_bench_facts_…``), dropped at
the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from time import perf_counter

from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from patron_privacy import bench, pg_copy
from patron_privacy.facts import write_circulation_facts
from patron_privacy.warehouse import circulation_facts, create_warehouse

log = logging.getLogger("patron_privacy.bench_facts")

DEFAULT_ROOT = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
BRANCHES = ("MAIN", "NORTH", "EAST", "WEST", "SOUTH")


def batches(facts: int, batch: int, patrons: int) -> Iterator[list[dict]]:
    """The same facts every time: HMAC-shaped keys and pseudonyms, two years of days."""
    for start in range(0, facts, batch):
        rows = []
        for i in range(start, min(start + batch, facts)):
            day = date(2025, 1, 1) + timedelta(days=i * 730 // max(facts, 1))
            rows.append(
                {
                    "fact_key": hashlib.sha256(b"fact%d" % i).hexdigest(),
                    "source": "koha",
                    "loan_date": day,
                    "return_date": day + timedelta(days=i % 28),
                    "branch": BRANCHES[i % len(BRANCHES)],
                    "item_type": ("BK", "DVD", "CD")[i % 3],
                    "collection": ("FIC", "NFIC", "JUV")[i % 3],
                    "patron_category": ("PT", "CH", "ST")[i % 3],
                    "category_type": "A",
                    "age_band": ("0-11", "12-18", "19-64", "65+")[i % 4],
                    "patron_pseudonym": hashlib.sha256(b"p%d" % (i % patrons)).hexdigest(),
                    "reporting_period": str(day.year),
                    "renewals": i % 3,
                }
            )
        yield rows


def _floor(conn: Connection, rows: list[dict]) -> int:
    pg_copy.copy_rows(conn, "circulation_facts", rows, list(rows[0]))
    return len(rows)


def _insert(conn: Connection, rows: list[dict]) -> int:
    return conn.execute(pg_insert(circulation_facts).on_conflict_do_nothing(), rows).rowcount


WAYS: dict[str, Callable[[Connection, list[dict]], int]] = {
    "code": write_circulation_facts,
    "floor_copy": _floor,
    "insert_before": _insert,
}


def measure(url: str, write, facts: int, batch: int, patrons: int, rerun: bool) -> dict:
    """One way into a migrated warehouse at ``url`` (and, with ``rerun``, the code
    again over the same facts); seconds of writing only."""
    eng = create_engine(url, hide_parameters=True)
    try:
        create_warehouse(eng)
        out = {}
        for label, fn in [("first", write), *([("rerun", write)] if rerun else [])]:
            seconds = 0.0
            written = 0
            for rows in batches(facts, batch, patrons):
                t = perf_counter()
                with eng.begin() as c:
                    written += fn(c, rows)
                seconds += perf_counter() - t
            out[label] = {
                "seconds": round(seconds, 3),
                "written": written,
                "rows_per_s": bench.rate(facts, seconds),
            }
        with eng.connect() as c:
            out["stored"] = c.execute(text("SELECT count(*) FROM circulation_facts")).scalar()
        return out
    finally:
        eng.dispose()


def run(
    *,
    root_url: str = DEFAULT_ROOT,
    facts: int = 2_000_000,
    batch: int = 10_000,
    patrons: int = 250_000,
    out: str | None = None,
) -> dict:
    report: dict = {
        "benchmark": "facts into a PostgreSQL warehouse: the code vs a plain COPY vs INSERT",
        "started_at": bench.now_iso(),
        "params": {"facts": facts, "batch": batch, "patrons": patrons},
        "machine": bench.machine_info(),
        "measurements": {},
        "errors": [],
    }
    for way, write in WAYS.items():
        name = f"pp_bench_facts_{uuid.uuid4().hex[:8]}"
        bench.admin_sql(root_url, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(root_url).set(database=name).render_as_string(hide_password=False)
            log.info("measuring %s", way)
            m = measure(url, write, facts, batch, patrons, rerun=way == "code")
            report["measurements"][way] = m
            if m["stored"] != facts or m["first"]["written"] != facts:
                report["errors"].append(f"{way}: stored {m['stored']}, expected {facts}")
            if "rerun" in m and m["rerun"]["written"] != 0:
                report["errors"].append(f"{way}: the rerun wrote {m['rerun']['written']}")
        except Exception as exc:  # noqa: BLE001 - reported; the other ways still run
            log.exception("%s failed", way)
            report["errors"].append(f"{way}: {type(exc).__name__}: {exc}")
        finally:
            bench.admin_sql(root_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    rps = {k: m["first"]["rows_per_s"] for k, m in report["measurements"].items()}
    report["summary"] = {
        "rows_per_s": rps,
        "code_vs_floor": bench.ratio(rps.get("code"), rps.get("floor_copy")),
        "code_vs_insert_before": bench.ratio(rps.get("code"), rps.get("insert_before")),
    }
    report["finished_at"] = bench.now_iso()
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m patron_privacy.bench_facts",
        description="Facts into a PostgreSQL warehouse: the code vs a plain COPY vs INSERT.",
    )
    ap.add_argument("--root-url", default=DEFAULT_ROOT)
    ap.add_argument("--facts", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--out", default="bench-results/bench_facts.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = run(root_url=args.root_url, facts=args.facts, batch=args.batch, out=args.out)
    print(json.dumps(report["summary"], indent=2))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
