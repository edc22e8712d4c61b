"""Faults on a real MariaDB Koha: the enforcement process killed with SIGKILL in the
middle of its batches, and its database connection killed by the server. Each time the
rerun (what Airflow's retry does) must reach exactly the end state of an uninterrupted
run on an identical library, record every fact once, and leave every record inside its
window as it was.

Two identical libraries are built from one seed: ``interrupted`` suffers the fault and
is rerun, ``reference`` runs once. The CLI runs as a subprocess, as a task would.

Both carry the same canaries (``koha_canaries``): nothing a faulted run prints, not
even a killed run's partial output or a dropped connection's error, and nothing it
leaves in its warehouse or home may contain one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from koha_canaries import PAST, canary_needles, plant_canaries
from leak_scan import scan_sqlite, scan_text, scan_tree
from patron_privacy import connections
from patron_privacy.facts import new_key_file
from patron_privacy.sources.koha import synthetic
from sqlalchemy import create_engine, inspect, text

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("koha_faults")]

REPO = Path(__file__).resolve().parents[2]
MARIADB = "mysql+pymysql://root@127.0.0.1:3306"
AS_OF = "2026-11-30"
SEED = 23
BATCH = 40  # many small batches, so a fault lands in the middle
RUN_TIMEOUT = 600
# Koha's ON UPDATE columns carry the wall clock of whichever run touched a row.
WALL_CLOCK_COLUMNS = {"timestamp", "updated_on", "lastseen"}


def _policy(tmp: Path) -> Path:
    """The shipped policy with Koha's batches made small."""
    shipped = (REPO / "include" / "config" / "retention_policy.yaml").read_text()
    koha = "    anonymous_patron: preference\n    batch_size: 10000\n"
    assert koha in shipped
    out = tmp / "policy.yaml"
    out.write_text(shipped.replace(koha, koha.replace("10000", str(BATCH)), 1))
    return out


class Library:
    """One Koha database, its own warehouse home, and the CLI pointed at both."""

    def __init__(self, root: Path, name: str, keys: Path, policy: Path):
        self.db = f"pp_fault_{name}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        self.home = root / name
        self.home.mkdir()
        shutil.copy(keys, self.home / "pseudonym_keys.json")
        self.policy = policy
        server = create_engine(MARIADB)
        with server.begin() as c:
            c.execute(text(f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4"))
        server.dispose()
        # pre_ping: the dropped-connection test kills this test's own connections too.
        self.engine = create_engine(f"{MARIADB}/{self.db}?charset=utf8mb4", pool_pre_ping=True)
        synthetic.build_koha(
            self.engine, patrons=90, years=1, seed=SEED, as_of=date.fromisoformat(AS_OF)
        )
        self.canaries = plant_canaries(f"{MARIADB}/{self.db}?charset=utf8mb4")
        self.outputs: list[tuple[str, str]] = []  # (which run, what it printed)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        return env | {
            "PATRON_PRIVACY_HOME": str(self.home),
            "AIRFLOW_CONN_KOHA_DB": f"mysql://root@127.0.0.1:3306/{self.db}",
            "PYTHONPATH": str(REPO / "include"),
            "GX_ANALYTICS_ENABLED": "False",
        }

    def command(self, run_id: str) -> list[str]:
        return [
            sys.executable, "-m", "patron_privacy", "enforce", "--source", "koha",
            "--as-of", AS_OF, "--policy", str(self.policy), "--run-id", run_id,
        ]  # fmt: skip

    def enforce(self, run_id: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            self.command(run_id),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        self.outputs.append((run_id, done.stdout + done.stderr))
        return done

    def surname(self, borrowernumber: int) -> str | None:
        with self.engine.connect() as c:
            return c.execute(
                text("SELECT surname FROM borrowers WHERE borrowernumber = :b"),
                {"b": borrowernumber},
            ).scalar_one()

    def leaks(self) -> list:
        """Canaries in anything the runs printed or left in this library's home."""
        needles = canary_needles()
        found = [f for run_id, out in self.outputs for f in scan_text(out, needles, run_id)]
        found += scan_sqlite(self.home / "warehouse.db", needles)
        return found + scan_tree(self.home, needles)

    def start(self, run_id: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(run_id),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def anonymized_loans(self) -> int:
        with self.engine.connect() as c:
            anon = c.execute(
                text("SELECT value FROM systempreferences WHERE variable = 'AnonymousPatron'")
            ).scalar_one()
            return c.execute(
                text("SELECT COUNT(*) FROM old_issues WHERE borrowernumber = :a"), {"a": anon}
            ).scalar_one()

    def state(self) -> dict[str, str]:
        """Every table's rows (wall-clock columns aside), as one digest per table."""
        out = {}
        with self.engine.connect() as c:
            for table in sorted(inspect(self.engine).get_table_names()):
                cols = [
                    col["name"]
                    for col in inspect(self.engine).get_columns(table)
                    if col["name"] not in WALL_CLOCK_COLUMNS
                ]
                listed = ", ".join(f"`{n}`" for n in cols)
                rows = c.execute(text(f"SELECT {listed} FROM `{table}`")).all()
                digest = hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()
                out[table] = f"{len(rows)}:{digest[:16]}"
        return out

    def in_window_loans(self) -> list[tuple]:
        cutoff = datetime.fromisoformat(AS_OF) - timedelta(days=30)
        with self.engine.connect() as c:
            return c.execute(
                text(
                    "SELECT issue_id, borrowernumber FROM old_issues "
                    "WHERE returndate >= :cutoff ORDER BY issue_id"
                ),
                {"cutoff": cutoff},
            ).all()

    def facts(self) -> set[str]:
        wh = connections.engine_for_url(f"sqlite:///{self.home / 'warehouse.db'}")
        try:
            with wh.connect() as c:
                return set(c.execute(text("SELECT fact_key FROM circulation_facts")).scalars())
        finally:
            wh.dispose()

    def connection_ids(self) -> list[int]:
        server = create_engine(MARIADB)
        try:
            with server.connect() as c:
                return list(
                    c.execute(
                        text(
                            "SELECT id FROM information_schema.processlist "
                            "WHERE db = :db AND id <> CONNECTION_ID()"
                        ),
                        {"db": self.db},
                    ).scalars()
                )
        finally:
            server.dispose()

    def drop(self) -> None:
        self.engine.dispose()
        server = create_engine(MARIADB)
        with server.begin() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS `{self.db}`"))
        server.dispose()


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    keys = root / "keys.json"
    new_key_file(keys, [str(y) for y in range(2022, 2028)])
    policy = _policy(root)
    made: dict[str, Library] = {}
    try:
        made["reference"] = Library(root, "reference", keys, policy)
        done = made["reference"].enforce("reference")
        assert done.returncode == 0, done.stderr[-3000:]
        # The run worked on the canaries: the expired one is anonymized.
        ref = made["reference"]
        assert ref.surname(ref.canaries["past"]) != PAST["surname"]
        assert not ref.leaks(), "\n".join(map(str, ref.leaks()))
        made["reference_state"] = made["reference"].state()
        yield root, keys, policy, made
    finally:
        for lib in made.values():
            if isinstance(lib, Library):
                lib.drop()


def _wait_for_progress(lib: Library, proc: subprocess.Popen, at_least: int) -> int:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the fault could be injected: {proc.stderr.read()}")
        done = lib.anonymized_loans()
        if done >= at_least:
            return done
        time.sleep(0.05)
    pytest.fail("the run made no progress")


def _check_converged(lib: Library, reference: Library, ref_state: dict, in_window: list) -> None:
    assert lib.in_window_loans() == in_window, "a loan inside its window was touched"
    assert lib.state() == ref_state
    assert lib.facts() == reference.facts(), "facts differ from the uninterrupted run's"
    assert not lib.leaks(), "\n".join(map(str, lib.leaks()))


def test_sigkill_mid_batch_then_rerun_equals_an_uninterrupted_run(libraries):
    root, keys, policy, made = libraries
    lib = made["killed"] = Library(root, "killed", keys, policy)
    pristine_in_window = lib.in_window_loans()
    total = made["reference"].anonymized_loans()
    proc = lib.start("killed-1")
    done = _wait_for_progress(lib, proc, at_least=BATCH * 2)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    lib.outputs.append(("killed-1", out + err))
    assert proc.returncode == -signal.SIGKILL
    assert done < total, "killed after the work was finished: not a mid-run fault"
    rerun = lib.enforce("killed-2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _check_converged(lib, made["reference"], made["reference_state"], pristine_in_window)


def test_a_dropped_connection_fails_the_run_and_the_retry_finishes_it(libraries):
    root, keys, policy, made = libraries
    lib = made["dropped"] = Library(root, "dropped", keys, policy)
    pristine_in_window = lib.in_window_loans()
    proc = lib.start("dropped-1")
    _wait_for_progress(lib, proc, at_least=BATCH * 2)
    server = create_engine(MARIADB)
    with server.connect() as c:
        for cid in lib.connection_ids():
            c.execute(text(f"KILL CONNECTION {int(cid)}"))
    server.dispose()
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    lib.outputs.append(("dropped-1", out + err))
    if proc.returncode == 0:
        # The kill landed between two statements and the pool reconnected: still a
        # fault the run survived; the end state below must be right all the same.
        pass
    else:
        assert "Traceback" not in err, err[-3000:]
    retry = lib.enforce("dropped-2")
    assert retry.returncode == 0, retry.stderr[-3000:]
    _check_converged(lib, made["reference"], made["reference_state"], pristine_in_window)


def test_categories_side_by_side_then_the_whole_pass_equal_one_whole_source_run(
    libraries, monkeypatch
):
    """The nightly DAG's fan-out on a real MariaDB: every category enforced at once, four
    at a time as Celery workers would, then the whole-source pass; the end state and the
    facts are exactly those of one uninterrupted whole-source run."""
    from concurrent.futures import ThreadPoolExecutor

    from patron_privacy import pipeline
    from patron_privacy.policy import load_policy
    from patron_privacy.timebase import as_of_from_date
    from sqlalchemy.exc import OperationalError

    root, keys, policy, made = libraries
    lib = made["fanned"] = Library(root, "fanned", keys, policy)
    pristine_in_window = lib.in_window_loans()
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        monkeypatch.delenv(key)
    for key in ("PATRON_PRIVACY_HOME", "AIRFLOW_CONN_KOHA_DB"):
        monkeypatch.setenv(key, lib.env()[key])
    as_of = as_of_from_date(date.fromisoformat(AS_OF), load_policy(str(policy)).timezone)
    first = pipeline.open_run("koha", as_of, str(policy))
    pipeline.extract_facts(first)
    categories = pipeline.fan_out_categories(first)
    assert len(categories) == len(first.rules) > 10
    retried: list[str] = []

    def task(category: str) -> dict:
        for attempt in range(3):
            run = pipeline.open_run("koha", as_of, str(policy))
            try:
                return pipeline.enforce_category(run, category)
            except OperationalError as exc:
                # InnoDB may end one of two conflicting transactions (1213 deadlock, 1205
                # lock wait): the batch rolled back whole, and Airflow retries the task.
                if exc.orig.args[0] not in (1213, 1205) or attempt == 2:
                    raise
                retried.append(category)
            finally:
                run.source_engine.dispose()
                run.warehouse.dispose()
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(max_workers=4) as pool:
        fanned = list(pool.map(task, categories))
    whole = pipeline.enforce(first, dry_run=False)
    merged = pipeline.merge_fanned(fanned, whole)
    first.source_engine.dispose()
    first.warehouse.dispose()
    print(
        f"\nfan-out: {len(categories)} categories, {sum(f['changed'] for f in fanned)} rows "
        f"changed side by side, {sum(r['changed'] for r in whole)} by the whole pass, "
        f"retried after a lock conflict: {retried}"
    )
    assert sum(f["changed"] for f in fanned) > 0, "the work happened side by side"
    assert not pipeline.failed_categories(merged)
    _check_converged(lib, made["reference"], made["reference_state"], pristine_in_window)
