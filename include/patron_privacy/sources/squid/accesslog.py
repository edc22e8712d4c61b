"""Squid access logs, streamed: one pass per file reads, checks, counts and rewrites.

Memory stays flat in the size of a file: a file is read a line at a time
(each at most ``max_line_bytes``; a longer one is a bad line, read on in
chunks), facts are kept as counts per quarter hour and client, and the
rewrite is written as the file is read. The rewrite starts at the first line
that changes — the unchanged lines before it are copied at disk speed — and
is put in place only later (``PendingRewrite.commit``), after the run's facts
are in the warehouse.

A line of the wrong format is counted and reported (file and line), never
deleted or changed: a rewrite copies it as it was, and a file holding one is
never deleted whole. A file that cannot be read to its end (a truncated or
corrupt gzip) is left exactly as it is, and nothing from it is recorded.
"""

from __future__ import annotations

import gzip
import ipaddress
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from patron_privacy.engine import LEGAL_HOLD
from patron_privacy.files.atomic import FileStamp, PendingRewrite, is_temp
from patron_privacy.files.rules import BoundRule, HoldIndex, Tally
from patron_privacy.sources.squid.connector import DEFAULTS, LIVE_LOG

# A proxy line dated before 2000 comes from a clock gone wrong: a data error, never "old".
FLOOR_EPOCH = 946684800.0
BUCKET = 900  # facts are counted per quarter hour (UTC), then told in local hours
MAX_MESSAGES = 5
UNKNOWN = ("unknown", "unknown")
_ROTATION = re.compile(r"\.(\d+)(?:\.gz)?$")


def epoch(local: datetime, zone: ZoneInfo) -> float:
    return local.replace(tzinfo=zone).timestamp()


@dataclass
class SquidConfig:
    folder: Path
    pattern: str
    live_file: str
    gap: float
    gzip_level: int
    clients: dict[bytes, tuple[str, str]]
    networks: list[tuple[object, tuple[str, str]]]
    max_line_bytes: int
    zone: ZoneInfo

    @classmethod
    def from_options(cls, opts: dict, zone: ZoneInfo) -> SquidConfig:
        from patron_privacy.sources.dropfolder.kinds import resolve_path  # noqa: PLC0415

        o = {**DEFAULTS, **opts}
        clients = {
            str(k).encode(): (v["branch"], v.get("pc") or "unknown")
            for k, v in (o["clients"] or {}).items()
        }
        networks = [
            (ipaddress.ip_network(str(k), strict=False), (v["branch"], v.get("pc") or "unknown"))
            for k, v in (o["networks"] or {}).items()
        ]
        return cls(
            folder=resolve_path(o["folder"]),
            pattern=o["pattern"],
            live_file=o["live_file"],
            gap=float(o["session_gap_minutes"]) * 60.0,
            gzip_level=int(o["gzip_level"]),
            clients=clients,
            networks=networks,
            max_line_bytes=int(o["max_line_bytes"]),
            zone=zone,
        )

    def place(self, client: bytes) -> tuple[str, str]:
        found = self.clients.get(client)
        if found is not None:
            return found
        if self.networks:
            try:
                addr = ipaddress.ip_address(client.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                return UNKNOWN
            for net, where in self.networks:
                if addr in net:
                    return where
        return UNKNOWN

    def files(self) -> list[Path]:
        """The logs, oldest first: by modification time, then by rotation number."""
        if not self.folder.is_dir():
            raise FileNotFoundError(f"folder {self.folder} does not exist")
        found = [
            p
            for p in self.folder.glob(self.pattern)
            if p.is_file() and not is_temp(p) and not p.name.startswith(".")
        ]

        def order(p: Path):
            m = _ROTATION.search(p.name)
            return (p.stat().st_mtime_ns, -(int(m.group(1)) if m else 0), p.name)

        return sorted(found, key=order)

    def display(self, path: Path) -> str:
        return f"{self.folder.name}/{path.name}"


@dataclass
class Plan:
    """The run's rules, as the line loop needs them (epoch cutoffs, flags)."""

    strip: BoundRule | None
    delete: BoundRule | None
    as_of: float
    holds: HoldIndex
    zone: ZoneInfo

    @classmethod
    def of(cls, rules: list[BoundRule], as_of: datetime, holds: HoldIndex, zone: ZoneInfo):
        strip = next((r for r in rules if r.action == "strip"), None)
        delete = next((r for r in rules if r.action == "delete"), None)
        return cls(strip, delete, epoch(as_of, zone), holds, zone)

    def cut(self, rule: BoundRule | None) -> float:
        return epoch(rule.cutoff, self.zone) if rule is not None else float("-inf")


class FactsAgg:
    """Requests and sessions per quarter hour and client; sessions carry across files."""

    def __init__(self):
        self.buckets: dict[int, dict[bytes, list[int]]] = {}
        self.last: dict[bytes, float] = {}

    def merge(self, buckets: dict[int, dict[bytes, list[int]]], last: dict[bytes, float]):
        for b, clients in buckets.items():
            into = self.buckets.setdefault(b, {})
            for c, (req, ses) in clients.items():
                v = into.get(c)
                if v is None:
                    into[c] = [req, ses]
                else:
                    v[0] += req
                    v[1] += ses
        self.last = last

    def rows(self, cfg: SquidConfig, source: str, pseudonymizer) -> list[dict]:
        """Facts per local date, hour, branch and PC — no address leaves this function."""
        from patron_privacy.facts import period_of  # noqa: PLC0415

        out: dict[tuple, list[int]] = {}
        for b, clients in self.buckets.items():
            local = datetime.fromtimestamp(b * BUCKET, cfg.zone)
            for c, (req, ses) in clients.items():
                branch, pc = cfg.place(c)
                v = out.setdefault((local.date(), local.hour, branch, pc), [0, 0])
                v[0] += req
                v[1] += ses
        rows = []
        for (day, hour, branch, pc), (req, ses) in sorted(out.items()):
            period = period_of(day)
            rows.append(
                {
                    "fact_key": pseudonymizer.fact_key(
                        period, source, f"{day}|{hour}|{branch}|{pc}"
                    ),
                    "source": source,
                    "use_date": day,
                    "hour": hour,
                    "branch": branch,
                    "client_name": pc,
                    "sessions": ses,
                    "requests": req,
                    "reporting_period": period,
                }
            )
        return rows


@dataclass
class LogScan:
    path: Path
    display: str
    stamp: FileStamp | None = None
    gz: bool = False
    live: bool = False
    lines: int = 0
    bad: int = 0
    messages: list[str] = field(default_factory=list)
    error: str | None = None
    tallies: dict[str, Tally] = field(default_factory=dict)
    deletes: int = 0
    strips: int = 0
    pending: PendingRewrite | None = None

    @property
    def readable(self) -> bool:
        return self.error is None

    @property
    def delete_whole(self) -> bool:
        return self.readable and self.lines > 0 and self.bad == 0 and self.deletes == self.lines

    @property
    def needs_change(self) -> bool:
        return self.readable and (self.deletes > 0 or self.strips > 0)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open(path: Path, gz: bool):
    return gzip.open(path, "rb") if gz else open(path, "rb", buffering=1 << 20)


def strip_line(p: list[bytes], line: bytes, client: bool, ident: bool, query: bool) -> bytes:
    """The line in Squid's native layout (elapsed right-aligned in 6), without what goes."""
    end = b"\r\n" if line.endswith(b"\r\n") else (b"\n" if line.endswith(b"\n") else b"")
    return (
        b" ".join(
            (
                p[0],
                p[1].rjust(6),
                b"-" if client else p[2],
                p[3],
                p[4],
                p[5],
                p[6].split(b"?", 1)[0] if query else p[6],
                b"-" if ident else p[7],
                p[8],
                p[9],
            )
        )
        + end
    )


def _copy_prefix(path: Path, gz: bool, nbytes: int, out) -> None:
    with _open(path, gz) as src:
        while nbytes > 0:
            chunk = src.read(min(nbytes, 1 << 20))
            if not chunk:
                break
            out.write(chunk)
            nbytes -= len(chunk)


def _held(plan: Plan, category: str, ident: bytes, ts: float) -> bool:
    if ident == b"-":
        return False
    local = datetime.fromtimestamp(ts, plan.zone).replace(tzinfo=None)
    return plan.holds.held(category, ident.decode("utf-8", "replace"), local)


def process(
    path: Path,
    cfg: SquidConfig,
    plan: Plan,
    *,
    facts: FactsAgg | None = None,
    write: bool = False,
) -> LogScan:
    """Read one log: check every line, count what the rules do, record facts, and (``write``)
    write its new content aside as ``scan.pending`` (not yet in place)."""
    scan = LogScan(path, cfg.display(path))
    scan.stamp = FileStamp.of(path)
    scan.gz = is_gzip(path)
    scan.live = path.name == cfg.live_file
    s_rule, d_rule = plan.strip, plan.delete
    strip_cut, del_cut = plan.cut(s_rule), plan.cut(d_rule)
    s_cat = s_rule.category if s_rule else ""
    d_cat = d_rule.category if d_rule else ""
    s_fields = set(s_rule.fields) if s_rule else set()
    sc, si, sq = "client" in s_fields, "ident" in s_fields, "query" in s_fields
    s_live = bool(s_rule) and scan.live and LIVE_LOG in s_rule.blockers
    d_live = bool(d_rule) and scan.live and LIVE_LOG in d_rule.blockers
    s_hold = bool(plan.holds) and bool(s_rule) and LEGAL_HOLD in s_rule.blockers
    d_hold = bool(plan.holds) and bool(d_rule) and LEGAL_HOLD in d_rule.blockers
    s_kept: Counter = Counter()
    d_kept: Counter = Counter()
    s_cand = d_cand = n = bad = n_del = n_strip = 0
    as_of = plan.as_of
    gap = cfg.gap
    buckets: dict[int, dict[bytes, list[int]]] = {}
    last = dict(facts.last) if facts is not None else {}
    b_start = b_end = 0.0
    cur: dict[bytes, list[int]] = {}
    maxb = cfg.max_line_bytes
    out = None
    pending: PendingRewrite | None = None
    messages = scan.messages
    fh = _open(path, scan.gz)
    try:
        rd = fh.readline
        while True:
            line = rd(maxb)
            if not line:
                break
            n += 1
            p = line.split()
            why = None
            if len(p) != 10:
                why = f"{len(p)} fields, expected 10"
            else:
                try:
                    ts = float(p[0])
                except ValueError:
                    why = "the time is not a number"
                else:
                    if not ts >= FLOOR_EPOCH:  # NaN too
                        why = "the time is before 2000"
                    elif b"/" not in p[3]:
                        why = "no action/code"
            if why is not None:
                bad += 1
                if len(line) >= maxb and not line.endswith(b"\n"):
                    why = f"longer than {maxb} bytes"
                if len(messages) < MAX_MESSAGES:
                    messages.append(
                        f"{scan.display} line {n}: not a Squid native access.log line ({why})"
                    )
                if out is not None:
                    out.write(line)
                while len(line) >= maxb and not line.endswith(b"\n"):
                    line = rd(maxb)  # the rest of an over-long line, never held whole
                    if out is not None:
                        out.write(line)
                continue
            client = p[2]
            if ts < as_of and client != b"-" and facts is not None:
                if ts >= b_end or ts < b_start:
                    b = int(ts // BUCKET)
                    b_start = b * float(BUCKET)
                    b_end = b_start + BUCKET
                    cur = buckets.get(b)
                    if cur is None:
                        cur = buckets[b] = {}
                v = cur.get(client)
                if v is None:
                    v = cur[client] = [0, 0]
                v[0] += 1
                lt = last.get(client)
                if lt is None or ts - lt > gap:
                    v[1] += 1
                    last[client] = ts
                elif ts > lt:
                    last[client] = ts
            action = 0
            if ts < del_cut:
                if d_live:
                    d_kept[LIVE_LOG] += 1
                elif d_hold and _held(plan, d_cat, p[7], ts):
                    d_kept[LEGAL_HOLD] += 1
                else:
                    d_cand += 1
                    action = 2
            if ts < strip_cut and (
                (sc and client != b"-") or (si and p[7] != b"-") or (sq and b"?" in p[6])
            ):
                if s_live:
                    s_kept[LIVE_LOG] += 1
                elif s_hold and _held(plan, s_cat, p[7], ts):
                    s_kept[LEGAL_HOLD] += 1
                else:
                    s_cand += 1
                    if action == 0:
                        action = 1
            if action:
                if write and out is None:
                    pending = PendingRewrite(path, gzip_level=cfg.gzip_level if scan.gz else None)
                    out = pending.stream
                    _copy_prefix(path, scan.gz, fh.tell() - len(line), out)
                if action == 1:
                    n_strip += 1
                    if out is not None:
                        out.write(strip_line(p, line, sc, si, sq))
                else:
                    n_del += 1
            elif out is not None:
                out.write(line)
    except (EOFError, OSError, zlib.error) as exc:
        kind = "compressed data ends early or is corrupt (truncated gzip?)"
        if not isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
            kind = f"cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})"
        scan.error = f"{scan.display} line {n + 1}: {kind}; left unchanged"
    finally:
        fh.close()
    scan.lines, scan.bad = n, bad
    if scan.error is not None:
        if pending is not None:
            pending.discard()
        scan.tallies = {r.category: Tally(data_errors=1) for r in (s_rule, d_rule) if r}
        return scan
    if facts is not None:
        facts.merge(buckets, last)
    scan.deletes, scan.strips = n_del, n_strip
    if s_rule:
        scan.tallies[s_cat] = Tally(candidates=s_cand, kept=s_kept, data_errors=bad)
    if d_rule:
        scan.tallies[d_cat] = Tally(candidates=d_cand, kept=d_kept, data_errors=bad)
    if pending is not None:
        if scan.delete_whole:
            pending.discard()
        else:
            pending.finish()
            scan.pending = pending
    return scan
