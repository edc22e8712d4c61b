"""Squid access logs, streamed: one pass per file reads, checks, counts and rewrites.

Memory stays flat in the size of a file: a file is read a block at a time
(``blockscan.BLOCK_BYTES``, cut after its last newline), a line is at most
``max_line_bytes`` (a longer one is a bad line, copied through in chunks,
never held whole), facts are kept as counts per quarter hour and client, and
the rewrite is written as the file is read. The rewrite starts at the first
line that changes — the unchanged lines before it are copied at disk speed —
and is put in place only later (``PendingRewrite.commit``), after the run's
facts are in the warehouse.

Speed: a Python loop over lines costs several times reading the file, so a
block whose lines are all as Squid writes them is checked, counted and
rewritten with numpy (``blockscan``). Any other block — a bad line, a tab, a
line Squid would not write but that is still valid — is read line by line
(``_Pass.lines``), which decides which lines are bad and says so; the two
ways give the same counts, facts and bytes (``tests/unit/test_squid_blockscan.py``).
A run with legal holds on user names reads line by line (holds are asked per line).

A line of the wrong format is counted and reported (file and line), never
deleted or changed: a rewrite copies it as it was, and a file holding one is
never deleted whole. A file that cannot be read to its end (a truncated or
corrupt gzip) is left exactly as it is, and nothing from it is recorded.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import ipaddress
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from patron_privacy.engine import LEGAL_HOLD
from patron_privacy.files.atomic import FileStamp, PendingRewrite, is_temp
from patron_privacy.files.rules import BoundRule, HoldIndex, Tally
from patron_privacy.sources.squid import blockscan
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
        """Add one file's counts (which the caller hands over and no longer uses)."""
        for b, clients in buckets.items():
            into = self.buckets.get(b)
            if into is None:  # the usual case: rotated files cover different hours
                self.buckets[b] = clients
                continue
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
        places: dict[bytes, tuple[str, str]] = {}
        for b, clients in self.buckets.items():
            local = datetime.fromtimestamp(b * BUCKET, cfg.zone)
            when = (local.date(), local.hour)
            for c, (req, ses) in clients.items():
                where = places.get(c)
                if where is None:
                    where = places[c] = cfg.place(c)
                v = out.get(when + where)
                if v is None:
                    out[when + where] = [req, ses]
                else:
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
    fast_lines: int = 0  # lines taken a block at a time (blockscan), not one by one
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


# One line's fields with what lies between them, for any line of ten fields.
_LAYOUT = re.compile(rb"(\s*\S+\s+\S+\s+)(\S+)(\s+\S+\s+\S+\s+\S+\s+)([^\s?]*)(\S*)(\s+)(\S+)")


def line_problem(p: list[bytes], line: bytes, maxb: int) -> str | None:
    """Why ``line`` (split into ``p``) is not a Squid native line, or None if it is one.

    The one test the run, its verification and the validation suite share, so a
    line one of them refuses is refused by all. ``line`` comes from ``readline(maxb)``:
    a full ``maxb`` bytes without a newline is the start of an over-long line, bad
    whatever its first bytes look like."""
    if len(line) >= maxb and not line.endswith(b"\n"):
        return f"longer than {maxb} bytes"
    if len(p) != 10:
        return f"{len(p)} fields, expected 10"
    try:
        ts = float(p[0])
    except ValueError:
        return "the time is not a number"
    if not ts >= FLOOR_EPOCH:  # NaN too
        return "the time is before 2000"
    if b"/" not in p[3]:
        return "no action/code"
    return None


def rest_of_line(rd, line: bytes, maxb: int):
    """The rest of an over-long line, ``maxb`` bytes at a time: never held whole."""
    while len(line) >= maxb and not line.endswith(b"\n"):
        line = rd(maxb)
        yield line


def strip_line(line: bytes, client: bool, ident: bool, query: bool) -> bytes:
    """The line without what goes: ``-`` for the client and user name, the URL cut at
    its ``?``. Every other byte stays as it was (spacing, ``\\r\\n``), so a line with
    nothing to strip comes out unchanged, and the block rewrite
    (``blockscan.rewritten``) makes the same bytes without looking at lines one by one."""
    m = _LAYOUT.match(line)
    return b"".join(
        (
            m[1],
            b"-" if client else m[2],
            m[3],
            m[4],
            b"" if query else m[5],
            m[6],
            b"-" if ident else m[7],
            line[m.end() :],
        )
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


class _Pass:
    """One read of one file: counts, facts and the rewrite, fed by whole blocks of lines
    (``block``) or line by line (``lines``) — both leave exactly the same state."""

    def __init__(self, scan: LogScan, cfg: SquidConfig, plan: Plan, facts, write: bool):
        self.scan, self.cfg, self.plan, self.write = scan, cfg, plan, write
        s_rule, d_rule = plan.strip, plan.delete
        self.strip_cut, self.del_cut = plan.cut(s_rule), plan.cut(d_rule)
        self.s_cat = s_rule.category if s_rule else ""
        self.d_cat = d_rule.category if d_rule else ""
        fields = set(s_rule.fields) if s_rule else set()
        self.sc, self.si, self.sq = "client" in fields, "ident" in fields, "query" in fields
        self.s_live = bool(s_rule) and scan.live and LIVE_LOG in s_rule.blockers
        self.d_live = bool(d_rule) and scan.live and LIVE_LOG in d_rule.blockers
        self.s_hold = bool(plan.holds) and bool(s_rule) and LEGAL_HOLD in s_rule.blockers
        self.d_hold = bool(plan.holds) and bool(d_rule) and LEGAL_HOLD in d_rule.blockers
        self.s_kept: Counter = Counter()
        self.d_kept: Counter = Counter()
        self.s_cand = self.d_cand = self.n = self.bad = self.n_del = self.n_strip = 0
        self.fast = 0
        self.facts = facts is not None
        self.buckets: dict[int, dict[bytes, list[int]]] = {}
        self.last: dict[bytes, float] = dict(facts.last) if facts is not None else {}
        self.maxb = cfg.max_line_bytes
        self.out = None
        self.pending: PendingRewrite | None = None

    def begin(self, offset: int) -> None:
        """Start the rewrite at the first line that changes: the bytes before it are copied."""
        scan = self.scan
        self.pending = PendingRewrite(
            scan.path, gzip_level=self.cfg.gzip_level if scan.gz else None
        )
        self.out = self.pending.stream
        _copy_prefix(scan.path, scan.gz, offset, self.out)

    def bad_line(self, why: str) -> None:
        self.bad += 1
        if len(self.scan.messages) < MAX_MESSAGES:
            self.scan.messages.append(
                f"{self.scan.display} line {self.n}: not a Squid native access.log line ({why})"
            )

    def lines(self, rd, pos: int) -> int:
        """Every line ``rd`` gives, one by one; ``pos`` is where the first starts in the
        file. Returns where reading stopped."""
        plan, maxb, facts, write = self.plan, self.maxb, self.facts, self.write
        as_of, gap = plan.as_of, self.cfg.gap
        del_cut, strip_cut, d_live, s_live = self.del_cut, self.strip_cut, self.d_live, self.s_live
        d_hold, s_hold, d_cat, s_cat = self.d_hold, self.s_hold, self.d_cat, self.s_cat
        sc, si, sq = self.sc, self.si, self.sq
        buckets, last = self.buckets, self.last
        b_start = b_end = 0.0
        cur: dict[bytes, list[int]] = {}
        while True:
            line = rd(maxb)
            if not line:
                return pos
            here = pos
            pos += len(line)
            self.n += 1
            p = line.split()
            why = line_problem(p, line, maxb)
            if why is not None:
                self.bad_line(why)
                if self.out is not None:
                    self.out.write(line)
                for more in rest_of_line(rd, line, maxb):
                    pos += len(more)
                    if self.out is not None:
                        self.out.write(more)
                continue
            ts = float(p[0])
            client = p[2]
            if facts and ts < as_of and client != b"-":
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
                    self.d_kept[LIVE_LOG] += 1
                elif d_hold and _held(plan, d_cat, p[7], ts):
                    self.d_kept[LEGAL_HOLD] += 1
                else:
                    self.d_cand += 1
                    action = 2
            if ts < strip_cut and (
                (sc and client != b"-") or (si and p[7] != b"-") or (sq and b"?" in p[6])
            ):
                if s_live:
                    self.s_kept[LIVE_LOG] += 1
                elif s_hold and _held(plan, s_cat, p[7], ts):
                    self.s_kept[LEGAL_HOLD] += 1
                else:
                    self.s_cand += 1
                    if action == 0:
                        action = 1
            if action:
                if write and self.out is None:
                    self.begin(here)
                if action == 1:
                    self.n_strip += 1
                    if self.out is not None:
                        self.out.write(strip_line(line, sc, si, sq))
                else:
                    self.n_del += 1
            elif self.out is not None:
                self.out.write(line)

    def block(self, buf, pos: int) -> None:
        """Complete lines (``buf`` ends with a newline) starting at ``pos`` in the file:
        taken apart with numpy if every one is strict, else line by line."""
        lines = blockscan.analyse(buf, self.maxb, FLOOR_EPOCH)
        ts = lines.ts if lines is not None else None
        client_dash = coded = None
        if lines is not None and self.facts:
            client_dash = lines.is_dash(2)
            counted = (ts < self.plan.as_of) & ~client_dash
            if counted.any():
                sel = np.flatnonzero(counted)
                cs, ce = lines.field(2)
                coded = blockscan.codes(lines.a, cs[sel], ce[sel])
                if coded is None:
                    lines = None  # a client field too long to code: line by line
        if lines is None:
            self.lines(io.BytesIO(bytes(buf)).readline, pos)
            return
        n = len(lines)
        self.n += n
        self.fast += n
        if coded is not None:
            self._facts(lines, sel, *coded)
        changed = None
        if self.plan.delete is not None:
            old = ts < self.del_cut
            k = int(np.count_nonzero(old))
            if self.d_live:
                if k:
                    self.d_kept[LIVE_LOG] += k
                delete = np.zeros(n, bool)
            else:
                self.d_cand += k
                self.n_del += k
                delete = old
            changed = delete
        else:
            delete = np.zeros(n, bool)
        strip = np.zeros(n, bool)
        if self.plan.strip is not None:
            inside = ts < self.strip_cut
            if inside.any():
                some = np.zeros(n, bool)
                if self.sc:
                    some |= ~(client_dash if client_dash is not None else lines.is_dash(2))
                if self.si:
                    some |= ~lines.is_dash(7)
                if self.sq and not some[inside].all():
                    some |= lines.query_at()[0]
                some &= inside
                k = int(np.count_nonzero(some))
                if self.s_live:
                    if k:
                        self.s_kept[LIVE_LOG] += k
                else:
                    self.s_cand += k
                    strip = some & ~delete
                    self.n_strip += int(np.count_nonzero(strip))
                    changed = strip if changed is None else (strip | delete)
        if not self.write:
            return
        first = 0
        if self.out is None:
            if changed is None or not changed.any():
                return
            first = int(changed.argmax())
            self.begin(pos + int(lines.start[first]))
        self.out.write(blockscan.rewritten(lines, first, delete, strip, self.sc, self.si, self.sq))

    def _facts(self, lines, sel, code, firsts) -> None:
        """Requests and sessions per quarter hour and client of the block's counted lines."""
        ts = lines.ts[sel]
        cs, ce = (x[sel] for x in lines.field(2))
        raw = lines.a
        names = [raw[cs[i] : ce[i]].tobytes() for i in firsts]
        last = self.last
        before = np.array([last.get(c, -np.inf) for c in names], np.float64)
        new, latest = blockscan.sessions(ts, code, before, self.cfg.gap)
        for c, t in zip(names, latest.tolist(), strict=True):
            last[c] = t
        k = len(names)
        quarter = np.floor_divide(ts, float(BUCKET)).astype(np.int64)
        low = int(quarter.min())
        key = (quarter - low) * k + code
        span = int(key.max()) + 1
        if span <= 4 * len(key) + 4096:  # the block's hours are few: count without sorting
            req_all = np.bincount(key, minlength=span)
            keys = np.flatnonzero(req_all)
            req = req_all[keys].tolist()
            ses = np.bincount(key[new], minlength=span)[keys].tolist()
        else:
            keys, inv = np.unique(key, return_inverse=True)
            inv = inv.reshape(-1)
            req = np.bincount(inv, minlength=len(keys)).tolist()
            ses = np.bincount(inv[new], minlength=len(keys)).tolist()
        bucket = keys // k + low
        who = list(map(names.__getitem__, (keys % k).tolist()))
        cuts = [0, *(np.flatnonzero(np.diff(bucket)) + 1).tolist(), len(keys)]
        buckets = self.buckets
        # A bucket at a time (dicts built in C), not a client at a time.
        for i, j, b in zip(cuts, cuts[1:], bucket[cuts[:-1]].tolist(), strict=False):
            cur = buckets.get(b)
            if cur is None:
                counts = map(list, zip(req[i:j], ses[i:j], strict=True))
                buckets[b] = dict(zip(who[i:j], counts, strict=True))
                continue
            for c, r, n in zip(who[i:j], req[i:j], ses[i:j], strict=True):
                v = cur.get(c)
                if v is None:
                    cur[c] = [r, n]
                else:
                    v[0] += r
                    v[1] += n

    def overlong(self, head, read, size: int) -> tuple[bytes, int]:
        """A line that has run past ``maxb`` bytes with no newline yet: a bad line, copied
        through to its newline as it is read, never held whole. Returns what follows it
        and how many bytes of the line came after ``head``."""
        self.n += 1
        self.bad_line(f"longer than {self.maxb} bytes")
        out = self.out
        if out is not None:
            out.write(head)
        more = 0
        while True:
            chunk = read(size)
            if not chunk:
                return b"", more
            i = chunk.find(b"\n")
            if i < 0:
                more += len(chunk)
                if out is not None:
                    out.write(chunk)
                continue
            more += i + 1
            if out is not None:
                out.write(chunk[: i + 1])
            return chunk[i + 1 :], more

    def blocks(self, fh, size: int) -> None:
        """The file a block at a time, each cut after its last newline; the rest of the
        last line goes in front of the next block."""
        maxb = self.maxb
        buf = bytearray(2 * size + maxb)
        view = memoryview(buf)
        have = pos = 0  # bytes of a line carried at the front of buf; file offset of buf[0]
        while True:
            got = fh.readinto(view[have : have + size])
            if not got:
                break
            end = have + got
            cut = buf.rfind(b"\n", 0, end) + 1
            if cut:
                self.block(view[:cut], pos)
                pos += cut
            if end - cut >= maxb:  # over-long: stream it through
                rest, more = self.overlong(bytes(view[cut:end]), fh.read, size)
                pos += end - cut + more
                buf[: len(rest)] = rest
                have = len(rest)
            else:
                buf[: end - cut] = buf[cut:end]
                have = end - cut
        if have:
            self.lines(io.BytesIO(bytes(view[:have])).readline, pos)


def process(
    path: Path,
    cfg: SquidConfig,
    plan: Plan,
    *,
    facts: FactsAgg | None = None,
    write: bool = False,
    block_bytes: int | None = blockscan.BLOCK_BYTES,
) -> LogScan:
    """Read one log: check every line, count what the rules do, record facts, and (``write``)
    write its new content aside as ``scan.pending`` (not yet in place).

    ``block_bytes``: read that much at a time and take whole blocks of lines apart with
    numpy (``blockscan``); None reads line by line, as does a run with legal holds on
    user names (a hold is asked about one line at a time)."""
    scan = LogScan(path, cfg.display(path))
    scan.stamp = FileStamp.of(path)
    scan.gz = is_gzip(path)
    scan.live = path.name == cfg.live_file
    run = first = _Pass(scan, cfg, plan, facts, write)
    by_line = block_bytes is None or run.s_hold or run.d_hold
    fh = _open(path, scan.gz)
    try:
        if by_line:
            run.lines(fh.readline, 0)
        else:
            run.blocks(fh, block_bytes)
    except (EOFError, OSError, zlib.error) as exc:
        kind = "compressed data ends early or is corrupt (truncated gzip?)"
        if not isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
            kind = f"cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})"
        if not by_line:
            # Blocks stop elsewhere than lines do: what line by line saw before the
            # failure (lines, bad lines and their messages) comes from reading so.
            scan.messages.clear()
            run = _Pass(scan, cfg, plan, None, False)
            with contextlib.suppress(EOFError, OSError, zlib.error), _open(path, scan.gz) as again:
                run.lines(again.readline, 0)
        scan.error = f"{scan.display} line {run.n + 1}: {kind}; left unchanged"
    finally:
        fh.close()
    scan.lines, scan.bad, scan.fast_lines = run.n, run.bad, run.fast
    s_rule, d_rule = plan.strip, plan.delete
    pending = run.pending
    if scan.error is not None:
        if first.pending is not None:
            first.pending.discard()
        scan.tallies = {r.category: Tally(data_errors=1) for r in (s_rule, d_rule) if r}
        return scan
    if facts is not None:
        facts.merge(run.buckets, run.last)
    scan.deletes, scan.strips = run.n_del, run.n_strip
    if s_rule:
        scan.tallies[run.s_cat] = Tally(candidates=run.s_cand, kept=run.s_kept, data_errors=run.bad)
    if d_rule:
        scan.tallies[run.d_cat] = Tally(candidates=run.d_cand, kept=run.d_kept, data_errors=run.bad)
    if pending is not None:
        if scan.delete_whole:
            pending.discard()
        else:
            pending.finish()
            scan.pending = pending
    return scan
