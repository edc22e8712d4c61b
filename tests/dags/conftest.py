"""The DAG tests' shared DagBag: one private AIRFLOW_HOME per module, no connection leaking in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("AIRFLOW_CONN_"):
                mp.delenv(key)
        mp.setenv("AIRFLOW_HOME", str(home))
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
        # Airflow 3.3.2 moved DagBag here (airflow.models.dagbag is a deprecated alias), and
        # its DagBag no longer takes include_examples: the example DAGs are their own bundle,
        # so a DagBag over dags/ holds only this project's DAGs (LOAD_EXAMPLES=False as well).
        from airflow.dag_processing.dagbag import DagBag  # noqa: PLC0415 - after the env

        yield DagBag(dag_folder=str(DAGS))
