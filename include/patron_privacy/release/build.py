"""Build a release into a staging folder: count, protect, audit, render.

The first half of publishing (``publish`` holds the second: the PII gate and
the swap). It is a module of its own because it is the half that needs
pandas, SciPy's LP solver, Parquet and matplotlib, and the gate needs none of
them: the monthly DAG runs the two halves as two tasks, so neither task's
process carries the other's libraries.

Nothing here is public until ``publish`` has scanned it: every file is written
into a staging folder beside the destination (``folder``), and a build that
fails removes its folder.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from patron_privacy import connections
from patron_privacy.release import folder, report, sdc, tables
from patron_privacy.release.folder import MANIFEST
from patron_privacy.release.plan import Plan, plan
from patron_privacy.release.tables import Period

log = logging.getLogger("patron_privacy.release")

TREND_MONTHS = 12


class AuditFailed(RuntimeError):
    """A suppressed cell can be recovered or narrowly bounded: nothing was published."""


@dataclass(frozen=True)
class Staged:
    """A built release waiting for the PII gate: its staging folder and manifest."""

    path: Path
    manifest: dict


def build(kind: str, when: str, **options) -> Staged:
    """Check the input (``plan.plan``), then build the release into a staging folder."""
    return stage(plan(kind, when, **options))


def stage(p: Plan) -> Staged:
    """Count, protect, audit and render ``p`` into a new staging folder, under the
    period's lock. Raises :class:`AuditFailed` when a suppressed cell can be recovered;
    any failure leaves no folder behind."""
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    try:
        with folder.lock(p.cfg.base_dir, p.period.label):
            return _stage(p, warehouse)
    finally:
        warehouse.dispose()


def _stage(p: Plan, warehouse) -> Staged:
    kind, period, cfg, policy, as_of = p.kind, p.period, p.cfg, p.policy, p.as_of
    budget_before, generated_at = p.budget_before, p.generated_at
    counter = None
    if cfg.dp_enabled:
        from patron_privacy.release import dp as dpmod  # noqa: PLC0415

        counter = dpmod.DpCounter(cfg.epsilon, cfg.max_loans_per_patron)
    with warehouse.connect() as conn:
        if kind == "month":
            counted = tables.count_monthly(conn, period, dp=counter)
            tables.count_planned(conn, period, counted)
        else:
            counted = tables.count_annual(conn, period, cfg, dp=counter)
            counted.tables[0].rows.append((("REGBOR", sdc.TOTAL), {}))
    if counter is None:
        protection = sdc.protect(counted.values, counted.relations, cfg.threshold)
        shown = protection.shown(counted.values)
        audit = protection.audit.as_dict()
        if not protection.audit.passed:
            log.error(
                "release %s: audit failed for %d cells", period.label, len(protection.audit.failing)
            )
            raise AuditFailed(
                f"audit failed for release {period.label}: "
                f"{len(protection.audit.failing)} suppressed cell(s) can be recovered or "
                f"narrowly bounded"
                + (
                    f" ({'; '.join(protection.audit.problems)})"
                    if protection.audit.problems
                    else ""
                )
                + "; nothing was published"
            )
        suppressed = protection.suppressed
    else:
        shown = dict(counted.values)
        suppressed = set()
        audit = {
            "passed": True,
            "method": "not applicable: in differential-privacy mode no cell is suppressed; "
            "every count carries calibrated noise",
            "suppressed_cells": 0,
            "cells": [],
        }
    base = cfg.base_dir
    tmp = folder.new_staging(base, period.label)
    try:
        frames: list[tuple[tables.Table, pd.DataFrame]] = []
        files: list[str] = []
        table_entries = []
        for t in counted.tables:
            df = _frame(t, shown)
            frames.append((t, df))
            files += _write_table(df, tmp, t.name)
            table_entries.append(
                {
                    "name": t.name,
                    "title": t.title,
                    "available": True,
                    "definition": t.definition,
                    "source": t.source,
                    "files": {"csv": f"{t.name}.csv", "parquet": f"{t.name}.parquet"},
                    "columns": [*t.label_columns, *t.value_columns, "status"],
                    "rows": len(df),
                    "suppressed_cells": sum(1 for k in t.cells() if k in suppressed),
                }
            )
        table_entries += counted.unavailable
        generated = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
        trend, trend_note = (None, "")
        if kind == "month":
            current = next(
                df
                for t, df in frames
                if t.name == "circulation_by_branch_item_type_patron_category"
            )
            trend, trend_note = _trend(base, period, current)
        dp_info = None
        if counter is not None:
            dp_info = {
                "epsilon": counter.epsilon_spent,
                "epsilon_configured": cfg.epsilon,
                "mechanism": "OpenDP discrete Laplace; each patron's loans capped at "
                f"{cfg.max_loans_per_patron} per release",
                "parts": counter.parts,
                "reporting_year": period.year,
                "annual_budget": cfg.annual_budget,
                "spent_before": round(budget_before, 6),
                "spent_after": round(budget_before + counter.epsilon_spent, 6),
                "ledger": "warehouse table dp_budget_ledger",
            }
        empty = counted.empty
        note = (
            f"no circulation facts for {period.label}: this release is empty on purpose"
            if empty
            else ""
        )
        view = report.View(
            kind=kind,
            period=period,
            library=policy.library_name,
            tables=frames,
            unavailable=counted.unavailable,
            rule=cfg.rule_text(),
            mode=cfg.mode,
            audit=audit,
            dp=dp_info,
            empty=empty,
            generated_at=generated,
            policy_version=policy.version,
            trend=trend,
            trend_note=trend_note,
            definitions=counted.definitions,
        )
        charts = report.render_charts(view, tmp / "charts")
        view.files = [*files, "report.pdf", MANIFEST]
        report.render_html(view, charts, tmp / "report.html")
        pages = report.render_pdf(view, charts, tmp / "charts", tmp / "report.pdf")
        manifest = {
            "release": "monthly" if kind == "month" else "annual",
            "period": period.label,
            "period_start": period.start.isoformat(),
            "period_end_exclusive": period.end.isoformat(),
            "as_of": as_of.isoformat(),
            "library": policy.library_name,
            "generated_at": generated,
            "policy_version": policy.version,
            "disclosure_config": {"file": str(cfg.path), "version": cfg.version},
            "empty": empty,
            "note": note,
            "facts_counted": counted.facts,
            "tables": table_entries,
            "row_counts": {t.name: len(df) for t, df in frames},
            "suppression": {
                "mode": cfg.mode,
                "preset": cfg.preset,
                "threshold": cfg.threshold,
                "suppressed_range": list(cfg.suppressed_range) if counter is None else None,
                "zero_shown": True,
                "complementary": counter is None,
                "rule": cfg.rule_text() if counter is None else "none: differential privacy",
                "marker": "empty value with status 'suppressed'",
                "suppressed_cells": len(suppressed),
            },
            "audit": audit,
            "differential_privacy": dp_info,
            "elements": counted.definitions or None,
            "report": {
                "html": "report.html",
                "pdf": "report.pdf",
                "pdf_pages": pages,
                "charts": [f"charts/{c}.png" for c in charts],
            },
            "pii_gate": {"passed": None},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Staged(tmp, manifest)


def _frame(t: tables.Table, shown: dict) -> pd.DataFrame:
    data: dict[str, list] = {c: [] for c in (*t.label_columns, *t.value_columns, "status")}
    for labels, cells in t.rows:
        for c, v in zip(t.label_columns, labels, strict=True):
            data[c].append(v)
        hidden = False
        for c in t.value_columns:
            k = cells.get(c)
            v = shown.get(k) if k is not None else None
            hidden |= k is not None and v is None
            data[c].append(v)
        data["status"].append("not available" if not cells else ("suppressed" if hidden else ""))
    df = pd.DataFrame(data)
    for c in t.label_columns + ("status",):
        df[c] = df[c].astype("string")
    for c in t.value_columns:
        df[c] = pd.array(df[c].tolist(), dtype="Int64")
    return df


def _write_table(df: pd.DataFrame, folder: Path, name: str) -> list[str]:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    df.to_csv(folder / f"{name}.csv", index=False)
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None),
        folder / f"{name}.parquet",
        compression="none",
    )
    return [f"{name}.csv", f"{name}.parquet"]


def _trend(base: Path, period: Period, current: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """Branch totals by month as they were published: earlier releases, then this one."""
    rows = []
    found = 0
    y, m = period.start.year, period.start.month
    months = []
    for _ in range(TREND_MONTHS - 1):
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        months.append(f"{y:04d}-{m:02d}")
    name = "circulation_by_branch_item_type_patron_category"
    for label in reversed(months):
        f = base / label / f"{name}.csv"
        if not (base / label / MANIFEST).exists() or not f.exists():
            continue
        d = pd.read_csv(f, dtype={"loans": "Int64"}, keep_default_na=False, na_values=[""])
        d = d[(d["item_type"] == sdc.TOTAL) & (d["patron_category"] == sdc.TOTAL)]
        found += 1
        rows += [(label, b, v) for b, v in d[["branch", "loans"]].itertuples(index=False)]
    if current is not None:
        d = current[(current["item_type"] == sdc.TOTAL) & (current["patron_category"] == sdc.TOTAL)]
        rows += [(period.label, b, v) for b, v in d[["branch", "loans"]].itertuples(index=False)]
    df = pd.DataFrame(rows, columns=["month", "branch", "value"])
    note = (
        f"Earlier months are drawn exactly as their own releases published them "
        f"({found} of the previous {TREND_MONTHS - 1} months have a release)."
    )
    return df, note
