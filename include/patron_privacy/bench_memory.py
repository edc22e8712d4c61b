"""A benchmark task's memory, measured as a task would see it: in a process of its own.

Each benchmark that reports memory per task runs that task in a fresh interpreter,
and the figure is that process's own peak: VmHWM from ``/proc``, not ``ru_maxrss``,
which Linux carries across exec (a spawned process would report the peak of the
process that forked it, when that was higher).
"""

from __future__ import annotations

import multiprocessing
import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in kB; None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kb() -> int:
    """This process's peak resident set, its own even when it was spawned."""
    peak = status_kb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def in_fresh_process(fn: Callable, *args, mp_context=None):
    """``fn(*args)`` in a process of its own (spawned unless ``mp_context`` says
    otherwise), used for that call only; returns its result or raises its error."""
    ctx = mp_context or multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args).result()
