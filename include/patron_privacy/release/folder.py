"""A release's folders on disk: staged beside the destination, then swapped in whole.

A release is built into a staging folder ``<base>/.<period>.tmp-<hex>`` and
published by one rename onto ``<base>/<period>``, so a reader sees the old
release or the new one, never a mix. Building and publishing may run in
different processes (two tasks of the monthly DAG), so the staging folder's
name is the only thing passed between them, and it is checked before anything
trusts it. Both steps take the period's lock, so a build never sweeps away a
folder that another process is publishing.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import uuid
from pathlib import Path

MANIFEST = "manifest.json"
_STAGED = re.compile(r"\.(?P<period>\d{4}(?:-\d{2})?)\.tmp-[0-9a-f]{10}")


class StagedReleaseError(RuntimeError):
    """A staging folder that cannot be published: missing, misplaced or not a release."""


def new_staging(base: Path, label: str) -> Path:
    """A fresh staging folder for ``label``, after sweeping earlier runs' leftovers.

    Call with the period's lock held: a leftover is a build that never published.
    """
    for stale in base.glob(f".{label}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = base / f".{label}.tmp-{uuid.uuid4().hex[:10]}"
    tmp.mkdir(parents=True)
    return tmp


def checked_staging(path: Path) -> tuple[Path, str]:
    """The staging folder's base and period, refusing any path a build could not have made."""
    m = _STAGED.fullmatch(path.name)
    if m is None:
        raise StagedReleaseError(f"{path} is not a staged release folder")
    if not (path / MANIFEST).is_file():
        raise StagedReleaseError(
            f"staged release {path} is gone or incomplete (a later build of "
            f"{m['period']} replaces it): build the release again"
        )
    return path.parent, m["period"]


def fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*"), key=lambda x: -len(x.parts)):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [
        *sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda x: -len(x.parts)),
        root,
    ]:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_dir(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target`` atomically, replacing any release already there."""
    if not target.exists():
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp)  # now the old release
    else:  # pragma: no cover - non-Linux: a short window with no folder at all
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock(base: Path, label: str):
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f".{label}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
