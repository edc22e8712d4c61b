"""Publish a release: scan a built release for personal data, then swap it in atomically.

The second half of publishing (``build`` holds the first: counting,
protection, audit, rendering). Order matters:

1. refuse bad input before anything is read (period, settings, budget, the
   fact table: ``plan.plan``);
2. open the PII gate — patron names are read into memory from every system of
   the library that holds them (the ILS, Libki); if one cannot be read,
   nothing is published;
3. build the release into a staging folder beside the destination
   (``build.stage``): count with ``GROUP BY`` in the warehouse, protect
   (suppression with complements, or differential privacy), audit (a failed
   audit publishes nothing), write every table as CSV and Parquet, the charts,
   the HTML report, the PDF and the manifest;
4. scan every one of those files; any finding blocks the release, alerts, and
   removes the staging folder;
5. fsync, record the privacy budget spent (differential-privacy mode), then
   swap the folder into ``<base>/<period>`` in one rename — a rerun replaces a
   release whole, and a reader sees the old release or the new, never a mix.

:func:`publish` runs all of it in one process (the command line). The monthly
DAG runs steps 1 and 3 in one task and :func:`publish_staged` (steps 2, 4, 5)
in the next, so that the gate's process never loads pandas, SciPy or
matplotlib, nor the build's the gate's names and Presidio. This module
therefore imports none of the build's libraries until :func:`publish` needs
them.
"""

from __future__ import annotations

import calendar
import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from patron_privacy import connections
from patron_privacy.release import folder, pii_gate
from patron_privacy.release.folder import MANIFEST

log = logging.getLogger("patron_privacy.release")


@dataclass
class Published:
    path: Path
    manifest: dict

    def summary(self) -> str:
        m = self.manifest
        lines = [f"release {m['period']} ({m['release']}) published to {self.path}"]
        if m.get("empty"):
            lines.append(f"  empty: {m['note']}")
        for t in m["tables"]:
            if t["available"]:
                lines.append(
                    f"  {t['name']:52} {t['rows']:>6} rows  {t['suppressed_cells']:>4} suppressed"
                )
            else:
                lines.append(f"  {t['name']:52} not available")
        a = m["audit"]
        lines.append(
            f"  audit: {'passed' if a['passed'] else 'FAILED'} "
            f"({a.get('suppressed_cells', 0)} suppressed cells checked)"
        )
        if m.get("differential_privacy"):
            d = m["differential_privacy"]
            lines.append(
                f"  differential privacy: epsilon {d['epsilon']:g}, {d['spent_after']:g} of "
                f"{d['annual_budget']:g} spent for {d['reporting_year']}"
            )
        lines.append(f"  PII gate: passed, {m['pii_gate']['files_scanned']} files scanned")
        return "\n".join(lines)


def vocabulary() -> set[str]:
    """Ordinary words of the release itself: every word its code can print, month and day
    names. A patron's single name equal to one of these is not matched alone."""
    import re  # noqa: PLC0415

    words: set[str] = set()
    here = Path(__file__).resolve().parent
    for f in here.glob("*.py"):
        words.update(w.lower() for w in re.findall(r"[A-Za-z]+", f.read_text(encoding="utf-8")))
    words.update(
        n.lower()
        for n in (
            *calendar.month_name[1:],
            *calendar.month_abbr[1:],
            *calendar.day_name,
            *calendar.day_abbr,
        )
    )
    return {w for w in words if len(w) >= 2}


# -- the release -------------------------------------------------------------------------------


def publish(kind: str, when: str, **options) -> Published:
    """Publish the monthly (``kind="month"``, ``when="YYYY-MM"``) or annual
    (``kind="year"``, ``when="YYYY"``) release, with ``options`` as ``plan.plan`` takes
    them (``as_of``, ``config_path``, ``preset``, ``threshold``, ``epsilon``, ``dp``,
    ``base_dir``, ``policy_path``, ``generated_at``). Raises before publishing anything
    on bad input (:class:`ReleaseInputError`, ``DisclosureConfigError``), a failed audit
    (:class:`AuditFailed`) or a PII finding (``PiiFound``)."""
    from patron_privacy.release import build  # noqa: PLC0415
    from patron_privacy.release.plan import plan  # noqa: PLC0415

    checked = plan(kind, when, **options)
    gate = pii_gate.PiiGate.from_sources(vocabulary())
    staged = build.stage(checked)
    return publish_staged(staged.path, gate=gate)


def publish_staged(path: str | Path, *, gate: pii_gate.PiiGate | None = None) -> Published:
    """Scan the release ``build`` staged at ``path`` and swap it into place.

    Fails closed: a PII finding (``PiiFound``) alerts and removes the staging folder; a
    system whose names cannot be read (``PiiGateUnavailable``) publishes nothing and
    leaves the folder for a retry. Raises ``StagedReleaseError`` for a path that is not a
    staged release (never built, already published, or replaced by a later build)."""
    base, label = folder.checked_staging(Path(path))
    tmp = base / Path(path).name
    gate = gate or pii_gate.PiiGate.from_sources(vocabulary())
    with folder.lock(base, label):
        base, label = folder.checked_staging(tmp)  # a build may have swept it meanwhile
        manifest = json.loads((tmp / MANIFEST).read_text())
        try:
            _gate(gate, tmp, manifest, label)
        except pii_gate.PiiFound:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        folder.fsync_tree(tmp)
        dp_info = manifest.get("differential_privacy")
        if dp_info:
            _spend(dp_info, label)
        target = base / label
        folder.replace_dir(tmp, target)
    log.info(
        "release %s published: %d tables, %d suppressed cells",
        label,
        len(manifest["row_counts"]),
        manifest["suppression"]["suppressed_cells"],
    )
    return Published(target, manifest)


def _gate(gate: pii_gate.PiiGate, tmp: Path, manifest: dict, label: str) -> None:
    """Scan every file, then the manifest again once it carries the gate's own result."""
    result = gate.scan(tmp)
    if not result.passed:
        pii_gate.alert(result.findings, label)
        raise pii_gate.PiiFound(result.findings, result.files_with_findings)
    manifest["pii_gate"] = result.as_dict()
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    again = gate.scan_texts(pii_gate.pieces_of(tmp / MANIFEST))
    if again:
        pii_gate.alert(dict(again), label)
        raise pii_gate.PiiFound(dict(again), {MANIFEST: sum(again.values())})


def _spend(dp_info: dict, label: str) -> None:
    """Record the release's epsilon, refusing if the budget moved since it was built.

    The manifest states what was spent before and after this release; another
    release published in between would make that untrue, so it is rebuilt instead.
    """
    from patron_privacy.release import dp as dpmod  # noqa: PLC0415
    from patron_privacy.release.tables import ReleaseInputError  # noqa: PLC0415

    year = int(dp_info["reporting_year"])
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    try:
        before = dpmod.check_budget(warehouse, year, dp_info["epsilon"], dp_info["annual_budget"])
        if abs(before - dp_info["spent_before"]) > 1e-6:
            raise ReleaseInputError(
                f"differential privacy budget for {year} changed since release {label} was "
                f"built (spent {before:g}, the release says {dp_info['spent_before']:g}): "
                "build it again"
            )
        dpmod.record_spend(
            warehouse, year, label, dp_info["epsilon"], datetime.now(UTC).replace(tzinfo=None)
        )
    finally:
        warehouse.dispose()
