"""Run the nightly DAG end to end the way ``make demo`` does, in a private tmp world.

Each test gets its own AIRFLOW_HOME (SQLite metadata DB copied from one migrated
template), PATRON_PRIVACY_HOME (embedded Koha file, warehouse, pseudonym keys) and a
clean environment: no ``AIRFLOW_CONN_*`` or ``AIRFLOW__*`` from the developer's shell.
Airflow runs as ``airflow dags test`` in a subprocess, so nothing it configures
(logging, ORM, settings) touches the pytest process.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from patron_privacy.connections import engine_for_url
from patron_privacy.facts import new_key_file

REPO = Path(__file__).resolve().parents[1]
# The venv running pytest; not resolved, so a symlinked python still finds its bin/.
BIN = Path(sys.executable).parent
DAG_ID = "koha_nightly_retention"
LOGICAL_DATE = "2026-11-30"
RUN_TIMEOUT = 300

# ``airflow dags test`` with every task's retries forced to 0. The DAG retries failed
# tasks after 5 minutes and ``dags test`` waits for that; a test of a failing run
# needs the failure to be final. Everything else is the real CLI on the real DAG file.
_NO_RETRIES = """
import sys
import patron_privacy.dag_defaults as d
_real = d.default_args
d.default_args = lambda *a, **k: {**_real(*a, **k), "retries": 0}
from airflow.__main__ import main
sys.argv = ["airflow", *sys.argv[1:]]
sys.exit(main())
"""


def airflow_bin() -> str:
    found = BIN / "airflow"
    if found.exists():
        return str(found)
    which = shutil.which("airflow")
    if which is None:
        raise RuntimeError("no airflow executable next to the test interpreter or on PATH")
    return which


def clean_env(airflow_home: Path, pp_home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PATRON_PRIVACY_", "_AIRFLOW", "PYTEST_"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "PATRON_PRIVACY_HOME": str(pp_home),
            "PYTHONPATH": str(REPO / "include"),
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def migrate_template(where: Path) -> Path:
    """``airflow db migrate`` once into ``where``; returns the migrated SQLite file."""
    home = where / "airflow"
    home.mkdir(parents=True)
    proc = subprocess.run(
        [airflow_bin(), "db", "migrate"],
        env=clean_env(home, where / "unused"),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return home / "airflow.db"


@dataclass
class Stack:
    """One test's world: where Airflow and the pipeline keep their state."""

    root: Path
    airflow_home: Path
    pp_home: Path

    @property
    def env(self) -> dict[str, str]:
        return clean_env(self.airflow_home, self.pp_home)

    @property
    def airflow_db(self) -> Path:
        return self.airflow_home / "airflow.db"

    @property
    def koha_db(self) -> Path:
        # connections._embedded_default for koha_db
        return self.pp_home / "sources" / "koha.db"

    @property
    def warehouse_db(self) -> Path:
        return self.pp_home / "warehouse.db"


def new_stack(root: Path, template_db: Path) -> Stack:
    stack = Stack(root, root / "airflow", root / "pp")
    stack.airflow_home.mkdir(parents=True)
    (stack.pp_home / "sources").mkdir(parents=True)
    shutil.copyfile(template_db, stack.airflow_db)
    return stack


@dataclass
class DagRunResult:
    returncode: int
    stdout: str
    stderr: str
    run_id: str | None
    state: str | None
    conf: dict | None
    task_states: dict[str, str]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"rc={self.returncode} state={self.state} tasks={self.task_states}\n"
            f"--- output (tail) ---\n{self.output[-6000:]}"
        )


def run_nightly(
    stack: Stack, conf: dict | None, *, retries: bool = True, dag_id: str = DAG_ID
) -> DagRunResult:
    """``airflow dags test`` of one nightly DAG (Koha's unless ``dag_id`` says another)."""
    args = ["dags", "test", dag_id, LOGICAL_DATE]
    if conf is not None:
        args += ["-c", json.dumps(conf)]
    cmd = [airflow_bin(), *args] if retries else [sys.executable, "-c", _NO_RETRIES, *args]
    proc = subprocess.run(
        cmd,
        env=stack.env,
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    run_id = state = conf_seen = None
    task_states: dict[str, str] = {}
    with closing(sqlite3.connect(stack.airflow_db)) as c:
        row = c.execute(
            "SELECT run_id, state, conf FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (dag_id,),
        ).fetchone()
        if row is not None:
            run_id, state, raw_conf = row
            conf_seen = json.loads(raw_conf) if isinstance(raw_conf, str) and raw_conf else None
            task_states = dict(
                c.execute(
                    "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                    (dag_id, run_id),
                ).fetchall()
            )
    return DagRunResult(
        proc.returncode, proc.stdout, proc.stderr, run_id, state, conf_seen, task_states
    )


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """``python -m patron_privacy ARGS`` against the stack's state."""
    return subprocess.run(
        [sys.executable, "-m", "patron_privacy", *args],
        env=stack.env,
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, order-independent: for 'nothing changed' assertions."""
    with closing(sqlite3.connect(db)) as c:
        tables = [
            r[0]
            for r in c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: sorted(c.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


def koha_engine(stack: Stack):
    """An engine on the stack's embedded Koha file, configured as the pipeline's own."""
    return engine_for_url(f"sqlite:///{stack.koha_db}")


def write_keys(stack: Stack, periods=("2025", "2026", "2027")) -> None:
    """The pseudonym key file the embedded ``pseudonym_keys`` connection reads."""
    new_key_file(stack.pp_home / "pseudonym_keys.json", periods)


def warehouse_rows(stack: Stack, table: str) -> list[dict]:
    with closing(sqlite3.connect(stack.warehouse_db)) as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute(f'SELECT * FROM "{table}"')]
