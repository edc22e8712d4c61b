"""The operator's experience of every DAG: its doc_md is a runbook, its task ids read
as sentences in the grid, a manual run of a DAG that deletes is a dry run unless
unticked while its scheduled runs enforce, and the nightly DAGs are tied to the
statistics release by assets so the UI's asset graph shows the flow."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from patron_privacy.dag_defaults import Tag, effective_dry_run

pytestmark = pytest.mark.airflow

DAGS = Path(__file__).resolve().parents[2] / "dags"

# A runbook answers these four questions (the style guide's habit 3).
RUNBOOK = {
    "what it does": "what it does",
    "what it touches": "what it touches",
    "how it fails": "how it fails",
    "how to rerun it safely": "rerun",
}
# A task id reads as an instruction: a verb first, then what it acts on.
VERBS = {
    "ask", "build", "check", "count", "enforce", "fail", "publish", "read", "record",
    "release", "send", "validate", "verify", "write",
}  # fmt: skip
SNAKE = re.compile(r"^[a-z]+(_[a-z0-9]+)+$")


def _dags(dagbag):
    assert dagbag.import_errors == {}
    return sorted(dagbag.dags.values(), key=lambda d: d.dag_id)


def test_every_doc_md_is_a_runbook(dagbag):
    problems = []
    for dag in _dags(dagbag):
        doc = " ".join((dag.doc_md or "").lower().split())
        missing = [q for q, phrase in RUNBOOK.items() if phrase not in doc]
        if missing:
            problems.append(f"{dag.dag_id}: doc_md does not say {', '.join(missing)}")
    assert not problems, "\n".join(problems)


def test_task_ids_read_as_sentences(dagbag):
    problems = []
    for dag in _dags(dagbag):
        for t in dag.tasks:
            if not SNAKE.match(t.task_id):
                problems.append(f"{dag.dag_id}.{t.task_id}: not two or more snake_case words")
            elif t.task_id.split("_")[0] not in VERBS:
                problems.append(f"{dag.dag_id}.{t.task_id}: does not start with a verb")
    assert not problems, "\n".join(problems)


def _context(run_type: str, params: dict) -> dict:
    return {"dag_run": SimpleNamespace(run_type=run_type), "params": params}


def test_manual_runs_of_deleting_dags_are_dry_runs_and_scheduled_runs_enforce(dagbag):
    """What the trigger form offers, run through the rule every deleting task applies."""
    retention = [d for d in _dags(dagbag) if Tag.RETENTION.value in d.tags]
    assert retention
    problems = []
    for dag in retention:
        form = {k: dag.params[k] for k in dag.params}  # the form's defaults, resolved
        if effective_dry_run(_context("manual", form)) is not True:
            problems.append(f"{dag.dag_id}: a manual run with the form's defaults enforces")
        if effective_dry_run(_context("manual", form | {"dry_run": False})) is not False:
            problems.append(f"{dag.dag_id}: unticking dry_run does not enforce")
        if effective_dry_run(_context("scheduled", form)) is not False:
            problems.append(f"{dag.dag_id}: a scheduled run does not enforce")
        # Only time-scheduled runs enforce: a DAG that deletes must not be scheduled on
        # assets, whose runs would count as manual ones and silently never enforce.
        if type(dag.timetable).__name__ not in (
            "CronTriggerTimetable",
            "CronDataIntervalTimetable",
        ):
            problems.append(f"{dag.dag_id}: scheduled by {type(dag.timetable).__name__}")
    assert not problems, "\n".join(problems)


def test_effective_dry_run_defaults_to_dry_when_unsure():
    assert effective_dry_run({}) is True
    assert effective_dry_run(_context("manual", {})) is True
    assert effective_dry_run(_context("DagRunType.SCHEDULED", {"dry_run": True})) is False
    assert effective_dry_run(_context("backfill", {"dry_run": False})) is False


def _assets(objs) -> set[str]:
    return {a.name for a in objs or [] if hasattr(a, "name")}


def test_nightly_dags_flow_into_the_release_through_assets(dagbag):
    nightly = [d for d in _dags(dagbag) if Tag.NIGHTLY.value in d.tags]
    assert nightly
    facts, problems = set(), []
    for dag in nightly:
        produced = set().union(*(_assets(t.outlets) for t in dag.tasks))
        source = dag.dag_id.removesuffix("_nightly_retention")
        expected = {f"patron_privacy.facts.{source}", f"patron_privacy.retention_audit.{source}"}
        if not expected <= produced:
            problems.append(f"{dag.dag_id}: emits {sorted(produced)}, not {sorted(expected)}")
        facts |= {a for a in produced if a.startswith("patron_privacy.facts.")}
    release = dagbag.dags["monthly_statistics_release"]
    stage = release.get_task("build_release")
    publish = release.get_task("publish_release")
    missing = facts - _assets(stage.inlets)
    if missing:
        problems.append(f"build_release does not read {sorted(missing)}")
    if "patron_privacy.statistics_release" not in _assets(publish.outlets):
        problems.append("publish_release emits no release asset")
    assert not problems, "\n".join(problems)
