"""Atomic rewrites and deletions of files: a crash leaves the old file or the new one.

A rewrite writes the new content to a temporary file in the same directory
(same file system, so the rename is atomic), flushes it to disk (``fsync``),
gives it the old file's mode, owner and times, checks that the old file has
not changed since it was read (a system still writing an export, a log still
being appended to), renames it over the old file and flushes the directory,
so the rename itself survives a power cut. Until the rename the old file is
untouched; after it the new one is complete. There is no moment at which
the file is half-written or missing.

A crash before the rename can leave the temporary file behind (named
``.<name>.pp-rewrite-<pid>-<token>``): it is never the only copy of
anything, every reader here skips it, and ``remove_stale_temps`` deletes
those whose process is gone at the start of the next run.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

TMP_MARK = ".pp-rewrite-"


class FileChanged(RuntimeError):
    """The file changed between reading it and replacing it: nothing was replaced."""


@dataclass(frozen=True)
class FileStamp:
    """Enough of a file's identity to notice that someone else changed it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileStamp:
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def is_temp(path: str | os.PathLike) -> bool:
    return TMP_MARK in Path(path).name


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def fsync_dir(directory: str | os.PathLike) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_unchanged(path: Path, expect: FileStamp | None) -> os.stat_result:
    st = os.stat(path)
    if expect is not None and FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != expect:
        raise FileChanged(f"{path.name} changed while it was being processed; left as it is")
    return st


class PendingRewrite:
    """The new content of a file, written aside; ``commit`` puts it in place atomically.

    Lets a caller write the new content while it reads the old, then do
    something else that must come first (record facts) before any file
    changes. Until ``commit`` the old file is untouched; ``discard`` drops
    the new content.
    """

    def __init__(self, path: str | os.PathLike, *, gzip_level: int | None = None):
        self.path = Path(path)
        self.tmp = _temp_name(self.path)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._raw = os.fdopen(fd, "wb", buffering=1 << 20)
        self.stream: BinaryIO = self._raw
        self._done = False
        if gzip_level is not None:
            mtime = int(os.stat(self.path).st_mtime)
            self.stream = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, compresslevel=gzip_level, mtime=mtime
            )

    def finish(self) -> None:
        """Flush the new content to disk (the caller has written all of it)."""
        if self._done:
            return
        if self.stream is not self._raw:
            self.stream.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self._done = True

    def commit(self, expect: FileStamp | None = None) -> None:
        """Rename the new content over the file (if it is still what was read)."""
        self.finish()
        try:
            st = _check_unchanged(self.path, expect)
            os.chmod(self.tmp, st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(self.tmp, st.st_uid, st.st_gid)
            os.utime(self.tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            if self.stream is not self._raw:
                self.stream.close()
        with contextlib.suppress(Exception):
            self._raw.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        self._done = True


@contextlib.contextmanager
def atomic_rewrite(
    path: str | os.PathLike,
    *,
    expect: FileStamp | None = None,
    gzip_level: int | None = None,
) -> Iterator[BinaryIO]:
    """Yield a binary stream for the new content of ``path``; replace ``path`` on success.

    ``expect``: the stamp taken when the file was read; if the file no longer
    matches it, nothing is replaced (``FileChanged``). ``gzip_level``: write the
    new content gzip-compressed at that level (the header carries no file name).
    Any exception inside the block leaves ``path`` exactly as it was.
    """
    pending = PendingRewrite(path, gzip_level=gzip_level)
    try:
        yield pending.stream
    except BaseException:
        pending.discard()
        raise
    pending.commit(expect)


def atomic_delete(path: str | os.PathLike, *, expect: FileStamp | None = None) -> None:
    """Delete ``path`` (if it is still what was read) and flush the directory."""
    path = Path(path)
    _check_unchanged(path, expect)
    os.unlink(path)
    fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Delete temporaries left by rewrites whose process died (never the only copy)."""
    removed = 0
    root = Path(directory)
    if not root.is_dir():
        return 0
    for p in root.iterdir():
        if not is_temp(p) or not p.is_file():
            continue
        tail = p.name.rsplit(TMP_MARK, 1)[1]
        pid = int(tail.split("-", 1)[0]) if tail.split("-", 1)[0].isdigit() else 0
        if pid and pid != os.getpid() and _pid_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed += 1
    if removed:
        fsync_dir(root)
    return removed
