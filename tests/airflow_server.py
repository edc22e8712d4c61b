"""A real Airflow 3 for tests: API server, scheduler and DAG processor as local processes.

What ``airflow standalone`` runs, minus the triggerer (Airflow 3.3 parks
human-in-the-loop tasks in ``awaiting_input`` without one), on a free port of
127.0.0.1, with its own AIRFLOW_HOME, a SQLite metadata DB, the LocalExecutor and
the simple auth manager (users ``admin`` and ``clerk``; passwords generated into
``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``). Every wait is
bounded; ``stop`` ends each process group this harness started, by its id.

``dag.test()`` and ``airflow dags test`` wait forever on an approval step, which
is why the approval path needs the real thing.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_TIMEOUT = 120
STOP_TIMEOUT = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _airflow() -> str:
    path = BIN / "airflow"
    if not path.exists():
        raise RuntimeError(f"no airflow executable next to {sys.executable}")
    return str(path)


@dataclass
class AirflowServer:
    root: Path
    pp_home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)  # processes a test killed on purpose

    @property
    def home(self) -> Path:
        return self.root / "airflow"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "PATRON_PRIVACY_", "_AIRFLOW", "PYTEST_"))
        }
        env |= {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,clerk:op",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "PATRON_PRIVACY_HOME": str(self.pp_home),
            "PYTHONPATH": str(REPO / "include"),
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
        }
        return env | self.extra_env

    def start(self) -> None:
        self.port = self.port or free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.env()
        migrate = subprocess.run(
            [_airflow(), "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
        for name, args in self.commands().items():
            self.launch(name, args, env)
        self.wait_for(self._healthy, START_TIMEOUT, "the API server to answer")

    def commands(self) -> dict[str, list[str]]:
        """The Airflow components to run, by name (a subclass adds workers)."""
        return {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
        }

    def launch(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [_airflow(), *args],
            env=env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as one in stop()
        )
        log.close()

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None and name not in self.dead:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}\n{self.tails()}")
        try:
            return httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group (API workers, task runners)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=STOP_TIMEOUT)

    def tails(self, n: int = 3000) -> str:
        out = []
        for name in self.procs or self.commands():
            path = self.root / f"{name}.log"
            if path.exists():
                out.append(f"--- {name} (tail) ---\n{path.read_text(errors='replace')[-n:]}")
        return "\n".join(out)

    def wait_for(self, check: Callable[[], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f}s for {what}\n{self.tails()}")
            time.sleep(1)

    # --- REST API -------------------------------------------------------------

    def password(self, user: str) -> str:
        path = self.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())[user]

    def token(self, user: str = "admin") -> str:
        if user not in self.tokens:
            r = httpx.post(
                f"{self.url}/auth/token",
                json={"username": user, "password": self.password(user)},
                timeout=30,
            )
            r.raise_for_status()
            self.tokens[user] = r.json()["access_token"]
        return self.tokens[user]

    def api(self, method: str, path: str, *, user: str = "admin", **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        return httpx.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=30, **kw)

    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> None:
        """Until the DAG processor has parsed it; then unpause it."""
        self.wait_for(
            lambda: self.api("GET", f"/dags/{dag_id}").status_code == 200,
            timeout,
            f"the DAG {dag_id} to be parsed",
        )
        r = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        r.raise_for_status()

    def trigger(self, dag_id: str, conf: dict, logical_date: str | None = None) -> httpx.Response:
        return self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf}
        )

    def run_path(self, dag_id: str, run_id: str) -> str:
        return f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of the run, mapped ones one by one (the API pages at 50)."""
        r = self.api(
            "GET", f"{self.run_path(dag_id, run_id)}/taskInstances", params={"limit": 1000}
        )
        r.raise_for_status()
        return r.json()["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """State per task id (a mapped task: one of its instances' states)."""
        return {t["task_id"]: t["state"] for t in self.task_instances(dag_id, run_id)}

    def run_state(self, dag_id: str, run_id: str) -> str:
        r = self.api("GET", self.run_path(dag_id, run_id))
        r.raise_for_status()
        return r.json()["state"]

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 240
    ) -> None:
        def check():
            states = self.task_states(dag_id, run_id)
            if states.get(task_id) in ("failed", "upstream_failed"):
                raise AssertionError(f"{task_id} {states[task_id]}: {states}\n{self.tails()}")
            return states.get(task_id) == state

        self.wait_for(check, timeout, f"{dag_id}.{task_id} to be {state}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> str:
        try:
            return self.wait_for(
                lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s,
                timeout,
                f"the run {run_id} of {dag_id} to finish",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.explain(dag_id, run_id)}") from None

    def task_logs(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Every attempt's log file of one task, for a failing test's message."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        files = sorted(folder.rglob("*.log")) if folder.exists() else []
        return "\n".join(
            f"--- {f.name} ---\n{f.read_text(errors='replace')[-6000:]}" for f in files
        )

    def explain(self, dag_id: str, run_id: str) -> str:
        """The run's task states and the logs of the tasks that did not succeed."""
        states = self.task_states(dag_id, run_id)
        bad = [t for t, s in states.items() if s in ("failed", "upstream_failed", "up_for_retry")]
        return f"{states}\n" + "\n".join(self.task_logs(dag_id, run_id, t) for t in bad)

    def wait_for_workload_end(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Until the scheduler has heard that the task's process ended.

        A paused approval step's process still reports its own end for a moment after the
        task shows ``awaiting_input``; an answer that arrives inside that moment starts the
        resumed task while the old report lands, and Airflow kills the resumed one ("TI is
        no longer running"). A person never answers that fast; a test must wait for it.
        """
        needle = f"task_id='{task_id}', run_id='{run_id}'"
        log = self.root / "scheduler.log"

        def ended() -> bool:
            text = log.read_text(errors="replace") if log.exists() else ""
            return any(
                "Received executor event" in line and needle in line for line in text.splitlines()
            )

        self.wait_for(ended, 120, f"the end of {dag_id}.{task_id}'s process")

    def hitl_path(self, dag_id: str, run_id: str, task_id: str) -> str:
        return f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/-1/hitlDetails"
