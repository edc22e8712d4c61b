"""Airflow as a large library runs it, on this machine: CeleryExecutor, PostgreSQL
metadata, a Redis broker, and two Celery workers beside the API server, scheduler and
DAG processor (``AirflowServer`` with other settings and more processes).

Each cluster has its own metadata database (created on 127.0.0.1:5432, dropped by
``stop``) and its own Celery queue on the shared Redis, so two clusters, or a cluster
and anything else using Redis, never take each other's tasks. Workers do not serve
logs (two on one machine would want one port); every process writes task logs under
the same AIRFLOW_HOME, where the API server reads them.

Which worker ran a task is Airflow's own record, the task instance's ``hostname``:
each worker's tasks report the worker's name through ``worker_hostname`` below,
Airflow's ``core.hostname_callable`` hook, which real workers on separate machines do
not need.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

from airflow_server import AirflowServer

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
WORKER_READY_TIMEOUT = 120


def worker_hostname() -> str:
    """The worker's name as the task instance's hostname (``core.hostname_callable``)."""
    return os.environ.get("PP_WORKER_NAME") or os.uname().nodename


def _pg(sql: str) -> None:
    # Imported here: Airflow's own processes import this module for worker_hostname.
    from patron_privacy.bench import admin_sql

    admin_sql(PG_SERVER, sql)


@dataclass
class CeleryCluster(AirflowServer):
    workers: int = 2
    concurrency: int = 2
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def meta_db(self) -> str:
        return f"pp_airflow_{self.tag}"

    @property
    def queue(self) -> str:
        return f"pp_{self.tag}"

    @property
    def worker_names(self) -> list[str]:
        return [f"worker{i}" for i in range(1, self.workers + 1)]

    def env(self) -> dict[str, str]:
        meta = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.meta_db}"
        return super().env() | {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
            "AIRFLOW__CELERY__BROKER_URL": REDIS,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_cluster.worker_hostname",
            "AIRFLOW__CORE__PARALLELISM": str(4 * self.workers),
            # Runs come from the test, through the API, with a fixed as-of: no scheduled
            # run of "last night" (wall-clock dependent) takes the max_active_runs slot.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # A killed worker's task is found after 30 s without a heartbeat (not 5 min)
            # and retried 5 s later, so the worker-death test finishes in a minute.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "PATRON_PRIVACY_RETRY_DELAY_S": "5",
            "PYTHONPATH": os.pathsep.join([super().env()["PYTHONPATH"], os.path.dirname(__file__)]),
        }

    def start(self) -> None:
        _pg(f'CREATE DATABASE "{self.meta_db}"')
        try:
            super().start()
            env = self.env()
            for name in self.worker_names:
                args = [
                    "celery",
                    "worker",
                    "--queues",
                    self.queue,
                    "--concurrency",
                    str(self.concurrency),
                    "--celery-hostname",
                    f"{name}@{self.tag}",
                    "--skip-serve-logs",
                ]
                self.launch(name, args, env | {"PP_WORKER_NAME": name})
            self.wait_for(self._workers_ready, WORKER_READY_TIMEOUT, "the Celery workers")
        except BaseException:
            self.stop()
            raise

    def _workers_ready(self) -> bool:
        self._healthy()  # raises if any process died
        logs = [(self.root / f"{n}.log").read_text(errors="replace") for n in self.worker_names]
        return all(" ready." in log for log in logs)

    def kill_worker(self, name: str, sig: int) -> None:
        """Send a signal to one worker's whole process group (the worker and its tasks)."""
        os.killpg(self.procs[name].pid, sig)
        self.procs[name].wait(timeout=30)
        self.dead.add(name)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            time.sleep(0.5)
            _pg(f'DROP DATABASE IF EXISTS "{self.meta_db}" WITH (FORCE)')

    def task_hosts(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {
            t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else ""): t.get(
                "hostname"
            )
            for t in self.task_instances(dag_id, run_id)
        }
