"""A run told from its audit rows: what changed, what was kept and why, and whether
verification passed. Reads only the warehouse, so it works for any past run."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from patron_privacy import connections
from patron_privacy.warehouse import create_warehouse, retention_audit

VERBS = {"anonymize": "anonymized", "delete": "deleted", "strip": "stripped"}


def summary(run_id: str | None = None) -> tuple[str, bool]:
    engine = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(engine)
    a = retention_audit
    with engine.connect() as conn:
        if run_id is None:
            run_id = conn.execute(
                select(a.c.run_id).where(a.c.id == select(func.max(a.c.id)).scalar_subquery())
            ).scalar()
        if run_id is None:
            return "no runs recorded yet", False
        rows = conn.execute(select(a).where(a.c.run_id == run_id).order_by(a.c.id)).mappings().all()
    if not rows:
        return f"no audit rows for run {run_id}", False
    first = rows[0]
    lines = [
        f"Run {run_id} — as of {first['as_of']} — policy {first['policy_version']}",
        "",
        f"{'category':34} {'done':>10} {'':12} {'kept':>8}  why kept",
    ]
    # The engine's own post-run classification is the verification of an
    # enforce run; a separate verify step, when present, is the later word.
    checks = [r for r in rows if r["mode"] == "verify"] or [
        r for r in rows if r["mode"] == "enforce"
    ]
    for r in rows:
        if r["mode"] not in ("enforce", "dry_run"):
            continue
        kept = json.loads(r["kept_by_blocker"])
        verb = VERBS.get(r["action"], r["action"])
        if r["mode"] == "dry_run":
            verb = f"would be {verb}"
        why = ", ".join(f"{k} {v}" for k, v in kept.items()) or "-"
        if r["data_errors"]:
            why += f"; {r['data_errors']} with a missing or impossible date (data error)"
        done = r["changed"] if r["mode"] == "enforce" else r["remaining"]
        name = f"{r['source']}.{r['category']}"
        lines.append(f"{name:34} {done:>10} {verb:12} {sum(kept.values()):>8}  {why}")
    errors = [r for r in rows if r["error"]]
    if errors:
        lines.append("")
        for r in errors:
            lines.append(f"error: {r['source']}.{r['category']}: {r['error']}")
    ok = not errors
    if checks:
        bad = [
            f"{r['source']}.{r['category']} ({r['remaining']})" for r in checks if r["remaining"]
        ]
        lines.append("")
        if errors:
            lines.append("verification: NOT COMPLETE — the run failed (see errors above)")
        elif bad:
            lines.append("verification: FAILED — still identifying past window: " + ", ".join(bad))
        else:
            lines.append("verification: PASSED — nothing past its window still identifies a patron")
        ok = ok and not bad
    return "\n".join(lines), ok
