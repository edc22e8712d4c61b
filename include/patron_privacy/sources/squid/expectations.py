"""Validation suite for Squid's access logs (``access.log`` and its rotations, gzipped too).

The same mechanism as every other source (``patron_privacy.validation``). Each line is
split as the run splits it (``accesslog.process``); only what identifies nobody reaches
the checks — the time, elapsed milliseconds, HTTP status, bytes, method and the branch
the client maps to. Never the client address, the user name or the URL.

* Lines of the wrong format (not ten fields, a time that is not a number or before 2000,
  no action/code, longer than ``max_line_bytes``; the run's own test,
  ``accesslog.line_problem``) are **set aside**: named by file and line in the report (at most a
  few per file), counted, and copied unchanged by the run, which goes on with the rest.
  A file that cannot be read to its end (a truncated gzip) is set aside whole: the run
  leaves it as it is and records nothing from it.
* On every readable line, Great Expectations: times between the floor and the as-of
  date plus a day; elapsed, status and bytes numbers; methods from HTTP's set; branches
  from the policy's ``clients`` and ``networks`` tables (or ``unknown``); freshness
  (the newest line is recent: Squid still logs, or the logs are still shipped here) and
  volume against the last successful runs, never zero lines.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from patron_privacy.validation import Col, Dataset, Extract, Suite

SOURCE = "squid"
BRANCHES = "branches"
MAX_MESSAGES_PER_FILE = 5
METHODS = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "PURGE",
    "NONE",
)


@dataclass(frozen=True)
class Logs:
    """What the suite reads: the source's log folder, as the run will read it."""

    cfg: object  # accesslog.SquidConfig


def read(handle: Logs, ds: Dataset, chunk_rows: int, tolerant: bool = False) -> Extract:
    extract = Extract()
    extract.chunks = _chunks(handle, ds, chunk_rows, extract)
    return extract


def _frame(times: list[float], cols: dict[str, list], zone) -> pd.DataFrame:
    local = (
        pd.to_datetime(pd.Series(times, dtype="float64"), unit="s", utc=True)
        .dt.tz_convert(zone)
        .dt.tz_localize(None)
    )
    return pd.DataFrame({"time": local, **{k: pd.Series(v, dtype=object) for k, v in cols.items()}})


def _file_lines(path: Path, cfg, extract: Extract, display: str):
    """(time, elapsed, status, bytes, method, branch) per good line of one file."""
    from patron_privacy.sources.squid.accesslog import (  # noqa: PLC0415
        _open,
        is_gzip,
        line_problem,
        rest_of_line,
    )

    out = []
    shown = 0
    n = 0
    maxb = cfg.max_line_bytes
    with _open(path, is_gzip(path)) as fh:
        rd = fh.readline
        while True:
            line = rd(maxb)
            if not line:
                break
            n += 1
            extract.set_aside_of += 1
            p = line.split()
            why = line_problem(p, line, maxb)
            if why is not None:
                for _ in rest_of_line(rd, line, maxb):
                    pass
                extract.set_aside_count += 1
                if shown < MAX_MESSAGES_PER_FILE:
                    shown += 1
                    extract.set_aside.append(
                        f"{display} line {n}: not a Squid native access.log line ({why}); "
                        "set aside, copied unchanged"
                    )
                continue
            ts = float(p[0])
            out.append(
                (
                    ts,
                    p[1].decode("ascii", "replace"),
                    p[3].split(b"/", 1)[1].decode("ascii", "replace"),
                    p[4].decode("ascii", "replace"),
                    p[5].decode("ascii", "replace").upper(),
                    cfg.place(p[2])[0],
                )
            )
    return out, n


def _chunks(h: Logs, ds: Dataset, chunk_rows: int, extract: Extract) -> Iterator[pd.DataFrame]:
    cfg = h.cfg
    names = ("elapsed_ms", "status", "bytes", "method", "branch")
    buf: list[tuple] = []
    for path in cfg.files():
        display = cfg.display(path)
        try:
            lines, _ = _file_lines(path, cfg, extract, display)
        except (EOFError, OSError, zlib.error) as exc:
            extract.set_aside_count += 1
            kind = "compressed data ends early or is corrupt (truncated gzip?)"
            if not isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
                kind = f"cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})"
            extract.set_aside.append(f"{display}: {kind}; set aside whole, left unchanged")
            continue
        buf.extend(lines)
        while len(buf) >= chunk_rows:
            part, buf = buf[:chunk_rows], buf[chunk_rows:]
            yield _to_frame(part, names, cfg.zone)
    if buf:
        yield _to_frame(buf, names, cfg.zone)


def _to_frame(rows: list[tuple], names, zone) -> pd.DataFrame:
    cols = list(zip(*rows, strict=True))
    return _frame(list(cols[0]), {n: list(c) for n, c in zip(names, cols[1:], strict=True)}, zone)


def known_sets(handle: Logs) -> dict:
    cfg = handle.cfg
    places = {b for b, _ in cfg.clients.values()} | {b for _, (b, _) in cfg.networks}
    return {BRANCHES: {*places, "unknown"}}


DATASETS = (
    Dataset(
        "access_log",
        (
            Col("time", "datetime", required=True),
            Col("elapsed_ms", "int", required=True),
            Col("status", "int", required=True),
            Col("bytes", "int", required=True),
            Col("method", "code", required=True, allowed=METHODS),
            Col("branch", "code", required=True, allowed=BRANCHES),
        ),
        freshness="time",
        expect_rows=True,
    ),
)

SUITE = Suite(source=SOURCE, datasets=DATASETS, read=read, known_sets=known_sets)
