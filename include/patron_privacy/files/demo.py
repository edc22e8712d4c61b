"""The demo library's file sources, under ``.local/sources/`` (named by system).

Each is built into a fresh folder beside its target and swapped in, so a
second ``make demo`` never sees half of the first.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from patron_privacy import connections


def _swap(target: Path, build) -> int:
    tmp = target.with_name(f".{target.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    n = build(tmp)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return n


def build_file_sources(*, seed: int, as_of: date, zone: str = "America/New_York") -> dict:
    from patron_privacy.sources.dropfolder import synthetic as exports  # noqa: PLC0415
    from patron_privacy.sources.squid import synthetic as squid  # noqa: PLC0415

    root = connections.local_home() / "sources"
    root.mkdir(parents=True, exist_ok=True)
    return {
        "signup_exports (rows)": _swap(
            root / "signup_exports",
            lambda p: exports.build_signup_exports(p, seed=seed, as_of=as_of),
        ),
        "program_exports (rows)": _swap(
            root / "program_exports",
            lambda p: exports.build_program_exports(p, seed=seed, as_of=as_of),
        ),
        "squid access.log* (lines)": _swap(
            root / "squid",
            lambda p: squid.build_squid_logs(p, seed=seed, as_of=as_of, zone=zone),
        ),
    }
