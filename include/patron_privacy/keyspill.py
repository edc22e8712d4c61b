"""Duplicate keys across a dataset too large to hold: its key values, spilled by hash.

Uniqueness is the one check a chunk cannot answer on its own: the two copies of a key
may be read a million rows apart. So each chunk's non-null keys go, by a hash of the
value, to one of :data:`PARTITIONS` append-only files, and every copy of a value lands in
the same file. At the end the files are read back a few at a time, about ``max_rows``
values per group, and each group is checked alone: no value is in two groups, so the
groups' duplicate counts add up exactly to the whole column's. A partition that grew
larger than ``max_rows`` is first split again on the hash's next bits, so memory stays
bounded by the group size, not the table (only a single value repeated more than
``max_rows`` times cannot be split, and is read as it is).

The files hold the key values alone (record numbers, registration ids), never another
column, in a directory only this user can open (``tempfile.mkdtemp``), which
:func:`private_directory` removes however the validation ends.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

PARTITIONS = 256
_BITS = 8  # log2(PARTITIONS): each level of splitting uses the next 8 bits of the hash
_LEVELS = 64 // _BITS


@contextmanager
def private_directory() -> Iterator[Path]:
    """A fresh directory readable by this user only (mode 0700), removed on the way out."""
    path = Path(tempfile.mkdtemp(prefix="patron-privacy-keys-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _hashes(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iuf":
        # By numeric value: an int key read as float in a chunk that had a missing value
        # (5.0) must meet the same key read as int elsewhere (5); + 0.0 folds -0.0 into 0.0.
        values = values.astype("float64") + 0.0
    return pd.util.hash_array(values)


def _records(path: str) -> Iterator[np.ndarray]:
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)  # noqa: S301 - our own file, in our own 0700 directory
            except EOFError:
                return


class KeySpill:
    """One key column's non-null values, partitioned by hash into files under ``directory``."""

    def __init__(self, directory: Path):
        directory.mkdir(mode=0o700)
        # Paths below it are joined as strings: pathlib interns every part it parses, and
        # a partition file's name made anew per chunk kept the interpreter's table of
        # interned strings growing and rebuilding (megabytes at a time) for as long as
        # the validation ran.
        self._dir = str(directory)
        self._sizes = [0] * PARTITIONS
        self._dtype: np.dtype | None = None
        # A chunk's int key column had a missing value, so it was read as float: the whole
        # column is then compared as floats, as it would be in one concatenated frame.
        self._as_float = False

    def add(self, values: pd.Series) -> None:
        present = values.dropna().to_numpy()
        if self._dtype is None:
            self._dtype = present.dtype
        if present.dtype.kind == "f":
            self._as_float = True
        if len(present):
            for p, n in enumerate(self._scatter([present], 0, self._dir)):
                self._sizes[p] += n

    def groups(self, max_rows: int) -> Iterator[np.ndarray]:
        """Every value once, in groups of whole partitions of about ``max_rows`` values;
        at least one group, empty when the column had no value."""
        batch: list[np.ndarray] = []
        n = 0
        for part in self._partitions(self._dir, self._sizes, 0, max(1, max_rows)):
            if batch and n + len(part) > max_rows:
                yield self._join(batch)
                batch, n = [], 0
            batch.append(part)
            n += len(part)
        yield self._join(batch)

    def _partitions(
        self, directory: str, sizes: list[int], level: int, max_rows: int
    ) -> Iterator[np.ndarray]:
        for p, size in enumerate(sizes):
            path = os.path.join(directory, f"{p}.pkl")
            if not size:
                continue
            if size > max_rows and level + 1 < _LEVELS:
                sub = os.path.join(directory, f"{p}.split")
                os.mkdir(sub, mode=0o700)
                sub_sizes = self._scatter(_records(path), level + 1, sub)
                os.unlink(path)
                yield from self._partitions(sub, sub_sizes, level + 1, max_rows)
            else:
                yield np.concatenate(list(_records(path)))
                os.unlink(path)

    @staticmethod
    def _scatter(arrays, level: int, directory: str) -> list[int]:
        """Append each array's values to the partition file its hash bits at ``level`` name."""
        sizes = [0] * PARTITIONS
        for values in arrays:
            part = (_hashes(values) >> np.uint64(level * _BITS)) & np.uint64(PARTITIONS - 1)
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(PARTITIONS + 1, dtype=np.uint64))
            for p in range(PARTITIONS):
                lo, hi = bounds[p], bounds[p + 1]
                if hi > lo:
                    with open(os.path.join(directory, f"{p}.pkl"), "ab") as f:
                        pickle.dump(values[order[lo:hi]], f, protocol=pickle.HIGHEST_PROTOCOL)
                    sizes[p] += int(hi - lo)
        return sizes

    def _join(self, parts: list[np.ndarray]) -> np.ndarray:
        if parts:
            values = np.concatenate(parts)
        else:
            values = np.array([], dtype=self._dtype if self._dtype is not None else object)
        if self._as_float and values.dtype.kind in "iu":
            values = values.astype("float64")
        return values
