"""The facts steps' batch loop: every batch written once, in order, errors raised, one
batch read ahead at most."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from patron_privacy.facts import record_in_batches


def _source(keys: list[int], size: int, log: list | None = None):
    def read(after):
        if log is not None:
            log.append(("read", after))
        rest = [k for k in keys if after is None or k > after]
        batch = rest[:size]
        return batch, batch[-1] if batch else None

    return read


@given(st.lists(st.integers(0, 10_000), unique=True).map(sorted), st.integers(1, 7))
def test_every_row_is_written_once_in_key_order(keys, size):
    seen: list[int] = []

    def write(rows):
        seen.extend(rows)
        return len(rows) - (1 if rows[0] % 2 else 0)  # what the sink reports as new

    expected_new = sum(
        len(keys[i : i + size]) - (1 if keys[i] % 2 else 0) for i in range(0, len(keys), size)
    )
    assert record_in_batches(_source(keys, size), write) == expected_new
    assert seen == keys


def test_reads_at_most_one_batch_ahead_of_the_writer():
    log: list = []
    lock = threading.Lock()

    def write(rows):
        with lock:
            log.append(("write", rows[0]))
        return len(rows)

    record_in_batches(_source(list(range(1, 31)), 5, log), write)
    reads_before = [sum(1 for e in log[:i] if e[0] == "read") for i, e in enumerate(log)]
    for i, entry in enumerate(log):
        if entry[0] == "write":
            batch = (entry[1] - 1) // 5  # the 0-based batch being written
            # this batch and at most the next have been read
            assert reads_before[i] <= batch + 2


def test_a_failing_write_stops_the_loop_and_is_raised():
    written: list[int] = []

    def write(rows):
        if rows[0] > 10:
            raise RuntimeError("warehouse down")
        written.extend(rows)
        return len(rows)

    with pytest.raises(RuntimeError, match="warehouse down"):
        record_in_batches(_source(list(range(1, 40)), 5), write)
    assert written == list(range(1, 11))


def test_a_failing_read_is_raised_after_the_batches_before_it():
    written: list[int] = []
    inner = _source(list(range(1, 40)), 5)

    def read(after):
        if after is not None and after >= 15:
            raise ConnectionError("source gone")
        return inner(after)

    def write(rows):
        written.extend(rows)
        return len(rows)

    with pytest.raises(ConnectionError):
        record_in_batches(read, write)
    assert written == list(range(1, 16))
