"""What each task of the nightly DAG does, for each kind of source.

The DAG factory (``nightly_dag``) builds one shape for every source —
validate → facts → enforce → verify → audit (always) — and each task calls
the step of its source's kind here, at run time (never at parse time):

* ``engine`` — a database the retention engine changes in place (Koha,
  Evergreen, Libki): ``pipeline``'s steps, as the CLI runs them;
* ``files`` — exports in drop folders and Squid logs (``files.runner``): the
  files are validated as the run will read them; a file or line the reader
  refuses is set aside (named by file and line, left exactly as it is) while
  the rest goes on, and the run then ends failed naming it;
* ``vendor`` — LibCal, hosted, whose API cannot delete: no enforce step; the
  facts step reads the API once, validates that same answer, records facts
  and counts what the vendor still holds past its window.

Every step returns counts only: what it returns travels through XCom.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from patron_privacy.alerts import input_problems
from patron_privacy.policy import Policy

ENGINE, FILES, VENDOR = "engine", "files", "vendor"
# Kept in step with ``nightly_dag.KINDS`` (that module may not import this one at parse
# time); a test checks the two agree.
KINDS = {"signups": FILES, "programs": FILES, "squid": FILES, "libcal": VENDOR}


def kind_of(source: str) -> str:
    return KINDS.get(source, ENGINE)


class InputSetAside(RuntimeError):
    """Some input could not be read and was left exactly as it is; the rest was enforced.
    The message names each file and line (never a value)."""


@dataclass(frozen=True)
class RunInfo:
    source: str
    as_of: datetime
    run_id: str
    dry_run: bool
    policy: Policy


class EngineSteps:
    """A database source: each step opens the run again (a task may run on any worker)."""

    self_audited = False
    has_enforce = True

    def _run(self, r: RunInfo):
        from patron_privacy import pipeline  # noqa: PLC0415

        return pipeline.open_run(r.source, r.as_of, r.policy)

    def validate(self, r: RunInfo) -> dict:
        from patron_privacy import pipeline  # noqa: PLC0415

        return pipeline.validate(self._run(r), run_id=r.run_id)

    def facts(self, r: RunInfo) -> dict:
        from patron_privacy import pipeline  # noqa: PLC0415

        run = self._run(r)  # opened in a dry run too: a broken source fails here, not later
        if r.dry_run:
            return {"facts_recorded": 0, "dry_run": True}
        return pipeline.extract_facts(run)

    def categories(self, r: RunInfo) -> list[str]:
        from patron_privacy import pipeline  # noqa: PLC0415

        if r.dry_run:  # a preview is one read of every category: nothing to spread
            return []
        return pipeline.fan_out_categories(self._run(r))

    def enforce_category(self, r: RunInfo, category: str) -> dict:
        from patron_privacy import pipeline  # noqa: PLC0415

        return pipeline.enforce_category(self._run(r), category)

    def enforce(self, r: RunInfo, fanned: list[dict] = ()) -> list[dict]:
        from patron_privacy import pipeline  # noqa: PLC0415

        results = pipeline.enforce(self._run(r), dry_run=r.dry_run)
        return pipeline.merge_fanned(list(fanned), results) if fanned else results

    def verify(self, r: RunInfo, upstream) -> list[dict]:
        from patron_privacy import pipeline  # noqa: PLC0415

        return pipeline.verify(self._run(r))

    def problems(self, results: list[dict]) -> list[str]:
        # Impossible dates are counted as data_errors and left alone by the engine;
        # validation has already refused a source with bad data.
        return []


class FileSteps:
    """Drop folders and Squid logs: the runner writes its own audit rows (enforce, verify)."""

    self_audited = True
    has_enforce = True

    def validate(self, r: RunInfo) -> dict:
        from patron_privacy.files import runner  # noqa: PLC0415

        return runner.validate_source(r.source, r.as_of, r.run_id, policy=r.policy)

    def facts(self, r: RunInfo) -> dict:
        from patron_privacy.files import runner  # noqa: PLC0415

        if r.dry_run:
            return {"facts_recorded": 0, "dry_run": True}
        return runner.record_facts(r.source, r.as_of, policy=r.policy)

    def categories(self, r: RunInfo) -> list[str]:
        return []  # one read of a file serves every category: nothing to spread

    def enforce(self, r: RunInfo, fanned: list[dict] = ()) -> list[dict]:
        from patron_privacy.files import runner  # noqa: PLC0415

        return runner.run_source(r.source, r.as_of, r.run_id, r.dry_run, policy=r.policy)

    def verify(self, r: RunInfo, upstream) -> list[dict]:
        from patron_privacy.files import runner  # noqa: PLC0415

        return runner.verify_source(r.source, r.as_of, r.run_id, policy=r.policy)

    def problems(self, results: list[dict]) -> list[str]:
        return input_problems(results)


class VendorSteps:
    """LibCal: one read per step; the facts step validates, records and verifies that read."""

    self_audited = True
    has_enforce = False

    def validate(self, r: RunInfo) -> dict:
        from patron_privacy.sources.libcal.connector import validate_libcal  # noqa: PLC0415

        return validate_libcal(r.as_of, r.run_id, policy=r.policy)

    def facts(self, r: RunInfo) -> dict:
        from patron_privacy.sources.libcal.connector import run_libcal  # noqa: PLC0415

        out = run_libcal(r.as_of, r.run_id, policy=r.policy, dry_run=r.dry_run)
        return {k: v for k, v in out.items() if k != "alert"}

    def categories(self, r: RunInfo) -> list[str]:
        return []

    def enforce(self, r: RunInfo, fanned: list[dict] = ()) -> list[dict]:
        raise NotImplementedError("LibCal's API cannot delete: the run verifies the vendor")

    def verify(self, r: RunInfo, upstream) -> list[dict]:
        # What the facts step counted at the vendor, from the same read.
        return list((upstream or {}).get("results") or [])

    def problems(self, results: list[dict]) -> list[str]:
        return input_problems(results)


STEPS = {ENGINE: EngineSteps, FILES: FileSteps, VENDOR: VendorSteps}


def steps_for(source: str):
    return STEPS[kind_of(source)]()


def already_audited(source: str, run_id: str) -> bool:
    """Whether a self-auditing step already wrote this run's rows for the source."""
    from sqlalchemy import func, select  # noqa: PLC0415

    from patron_privacy import connections  # noqa: PLC0415
    from patron_privacy.warehouse import create_warehouse, retention_audit  # noqa: PLC0415

    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(warehouse)
    with warehouse.connect() as w:
        n = w.execute(
            select(func.count())
            .select_from(retention_audit)
            .where(retention_audit.c.run_id == run_id, retention_audit.c.source == source)
        ).scalar()
    return bool(n)
