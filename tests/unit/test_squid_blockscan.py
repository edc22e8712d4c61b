"""Squid logs read a block at a time (numpy) give exactly what reading line by line gives.

Over generated logs — Squid's own lines, valid lines Squid would not write (tabs,
extra spaces, exponent times), bad and over-long lines, CRLF, times on both sides
of every cutoff and out of order, several clients — and block sizes small enough
to cut lines everywhere: the same counts, facts (sessions carried in from an
earlier file too), messages and rewritten bytes. And a clean log really is taken
the fast way, so a silent fall back to line by line would fail here.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patron_privacy.engine import Hold
from patron_privacy.files.rules import HoldIndex
from patron_privacy.sources.squid import accesslog

ZONE = ZoneInfo("America/New_York")
AS_OF = datetime(2026, 11, 30)
T0 = AS_OF.replace(tzinfo=ZONE).timestamp()
DAY = 86400.0
CLIENTS = ["10.0.0.1", "10.0.0.22", "192.168.100.200", "-", "fe80::1:2", "pc7.example", "x" * 70]
OFFSETS = [  # seconds from the as-of time: the cutoffs exactly, just either side, quarter hours
    -40 * DAY, -30 * DAY - 0.001, -30 * DAY, -30 * DAY + 0.001, -5 * DAY, -DAY - 0.5,
    -DAY, -DAY + 0.25, -3600.0, -900.0, -1799.0, -1801.0, 0.0, 7200.0,
]  # fmt: skip
KINDS = (
    ["strict"] * 40
    + ["spaces", "tab", "exponent", "decimals", "lead", "trail", "nul"]  # valid, not Squid's
    + ["fields", "word", "old", "noslash", "empty", "cr", "long"]  # bad
)
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def native(ts: str, client: str, url: str, ident: str, *, sep: str = " ", eol: str = "\n") -> str:
    return (
        f"{ts}{sep}{'120':>6}{sep}{client}{sep}TCP_MISS/200{sep}512{sep}GET{sep}{url}{sep}"
        f"{ident}{sep}HIER_DIRECT/93.184.216.34{sep}text/html{eol}"
    )


@st.composite
def a_line(draw, maxb: int, clean: bool) -> bytes:
    t = T0 + draw(st.sampled_from(OFFSETS)) + draw(st.sampled_from([0.0, 0.125, 13.5, 450.0]))
    client = draw(st.sampled_from(CLIENTS))
    ident = draw(st.sampled_from(["-", "u1", "zed"]))
    url = draw(st.sampled_from(["http://s.example/a", "http://s.example/f?q=zz", "?only"]))
    eol = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    kind = "strict" if clean else draw(st.sampled_from(KINDS))
    ts = f"{t:.3f}"
    if kind == "strict":
        return native(ts, client, url, ident, eol=eol).encode()
    if kind == "spaces":
        return native(ts, client, url, ident, sep="   ", eol=eol).encode()
    if kind == "tab":
        return native(ts, client, url, ident, sep="\t", eol=eol).encode()
    if kind == "exponent":
        return native(f"{t / 1e9!r}e9", client, url, ident, eol=eol).encode()
    if kind == "decimals":
        return native(f"{t:.7f}", client, url, ident, eol=eol).encode()
    if kind == "lead":
        return b" " + native(ts, client, url, ident, eol=eol).encode()
    if kind == "trail":
        return native(ts, client, url, ident, eol=" " + eol).encode()
    if kind == "nul":
        return native(ts, client + "\0", url, ident, eol=eol).encode()
    if kind == "fields":
        return native(ts, client, url, ident + " extra", eol=eol).encode()
    if kind == "word":
        return native("soon", client, url, ident, eol=eol).encode()
    if kind == "old":
        return native("946684799.999", client, url, ident, eol=eol).encode()
    if kind == "noslash":
        return native(ts, client, url, ident, eol=eol).replace("TCP_MISS/200", "TCP").encode()
    if kind == "empty":
        return eol.encode()
    if kind == "cr":
        return native(ts, client, url, ident, eol=eol).replace(" GET", "\rGET").encode()
    return native(ts, client, url + "&p=" + "z" * (maxb + 7), ident, eol=eol).encode()


@st.composite
def a_case(draw):
    maxb = draw(st.sampled_from([180, 300, 65536]))
    lines = draw(st.lists(a_line(maxb, draw(st.booleans())), min_size=0, max_size=60))
    data = b"".join(lines)
    if data and draw(st.booleans()):
        data = data.rstrip(b"\n")  # no newline at the end
    fields = draw(st.sets(st.sampled_from(["client", "ident", "query"]), min_size=1))
    rules = []
    if draw(st.booleans()):
        rules.append(rule("strip", "client_identifiers", timedelta(days=1), fields))
    if draw(st.booleans()) or not rules:
        rules.append(rule("delete", "access_log_lines", timedelta(days=30)))
    return SimpleNamespace(
        data=data,
        maxb=maxb,
        block=draw(st.integers(min_value=64, max_value=4096)),
        rules=rules,
        live=draw(st.booleans()),
        gz=draw(st.booleans()),
        truncate=draw(st.booleans()) and draw(st.booleans()),
        facts=draw(st.booleans()),
        before=draw(
            st.dictionaries(
                st.sampled_from([c.encode() for c in CLIENTS if c != "-"]),
                st.sampled_from([T0 - 5 * DAY - 1000.0, T0 - DAY - 100.0, T0 + DAY]),
                max_size=3,
            )
        ),
    )


def rule(action: str, category: str, window: timedelta, fields=()) -> SimpleNamespace:
    return SimpleNamespace(
        action=action,
        category=category,
        fields=tuple(sorted(fields)),
        blockers=("live_log",),
        cutoff=AS_OF - window,
    )


def config(folder: Path, maxb: int) -> accesslog.SquidConfig:
    return accesslog.SquidConfig(
        folder=folder,
        pattern="access.log*",
        live_file="access.log",
        gap=1800.0,
        gzip_level=6,
        clients={},
        networks=[],
        max_line_bytes=maxb,
        zone=ZONE,
    )


def outcome(path: Path, case, block: int | None) -> dict:
    cfg = config(path.parent, case.maxb)
    plan = accesslog.Plan.of(case.rules, AS_OF, HoldIndex(), ZONE)
    facts = None
    if case.facts:
        facts = accesslog.FactsAgg()
        facts.last = dict(case.before)
    scan = accesslog.process(path, cfg, plan, facts=facts, write=True, block_bytes=block)
    written = None
    if scan.pending is not None:
        raw = scan.pending.tmp.read_bytes()
        written = gzip.decompress(raw) if case.gz else raw
        scan.pending.discard()
    return {
        "lines": scan.lines,
        "bad": scan.bad,
        "messages": scan.messages,
        "error": scan.error,
        "tallies": scan.tallies,
        "deletes": scan.deletes,
        "strips": scan.strips,
        "delete_whole": scan.delete_whole,
        "buckets": facts.buckets if facts else None,
        "last": facts.last if facts else None,
        "written": written,
        "fast": scan.fast_lines,
    }


@SETTINGS
@given(case=a_case())
def test_block_reading_gives_exactly_what_line_by_line_gives(case, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # the disk is not under test
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("access.log" if case.live else "access.log.1")
        data = gzip.compress(case.data, mtime=0) if case.gz else case.data
        if case.gz and case.truncate:
            data = data[: max(len(data) * 2 // 3, 12)]
        path.write_bytes(data)
        slow = outcome(path, case, None)
        fast = outcome(path, case, case.block)
        assert slow.pop("fast") == 0
        fast.pop("fast")
        assert fast == slow


def clean_log(path: Path, n: int) -> None:
    lines = [
        native(f"{T0 - 40 * DAY + i * 997.0:.3f}", CLIENTS[i % 3], "http://s.example/f?q=zz", "-")
        for i in range(n)
    ]
    path.write_text("".join(lines))


def test_a_clean_log_is_taken_a_block_at_a_time():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access.log.1"
        clean_log(path, 5000)
        case = SimpleNamespace(
            maxb=65536,
            rules=[
                rule("strip", "client_identifiers", timedelta(days=1), ["client", "query"]),
                rule("delete", "access_log_lines", timedelta(days=30)),
            ],
            facts=True,
            before={},
            gz=False,
        )
        fast = outcome(path, case, 4096)
        assert fast["fast"] == fast["lines"] == 5000
        assert fast["bad"] == 0 and fast["deletes"] > 0 and fast["strips"] > 0
        slow = outcome(path, case, None)
        slow.pop("fast")
        fast.pop("fast")
        assert fast == slow


def test_an_over_long_line_is_streamed_through_not_held():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access.log.1"
        good = native(f"{T0 - 40 * DAY:.3f}", "10.0.0.1", "http://s.example/a", "-")
        path.write_bytes((good + "x" * 16_000_000 + "\n" + good).encode())
        cfg = config(path.parent, 1000)
        plan = accesslog.Plan.of(
            [rule("delete", "access_log_lines", timedelta(days=30))], AS_OF, HoldIndex(), ZONE
        )
        tracemalloc.start()
        try:
            scan = accesslog.process(path, cfg, plan, write=True, block_bytes=1 << 16)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4_000_000  # read and write buffers; the line is 16 MB
        assert (scan.lines, scan.bad, scan.deletes) == (3, 1, 2)
        [message] = scan.messages
        assert message.endswith("access.log.1 line 2: not a Squid native access.log line "
                                "(longer than 1000 bytes)")  # fmt: skip
        assert scan.pending.tmp.read_bytes() == b"x" * 16_000_000 + b"\n"
        scan.pending.discard()


def test_a_legal_hold_on_a_user_name_is_asked_line_by_line():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access.log.1"
        old = f"{T0 - 40 * DAY:.3f}"
        path.write_text(
            native(old, "10.0.0.1", "http://s.example/f?q=zz", "zed")
            + native(old, "10.0.0.1", "http://s.example/f?q=zz", "amy")
        )
        rules = [
            rule("strip", "client_identifiers", timedelta(days=1), ["client", "query"]),
            rule("delete", "access_log_lines", timedelta(days=30)),
        ]
        for r in rules:
            r.blockers = ("live_log", "legal_hold")
        plan = accesslog.Plan.of(rules, AS_OF, HoldIndex([Hold("zed")]), ZONE)
        scan = accesslog.process(path, config(path.parent, 65536), plan, write=True)
        assert scan.fast_lines == 0 and scan.lines == 2
        assert scan.tallies["access_log_lines"].kept == {"legal_hold": 1}
        assert scan.tallies["client_identifiers"].kept == {"legal_hold": 1}
        assert scan.pending.tmp.read_bytes() == path.read_bytes().splitlines(keepends=True)[0]
        scan.pending.discard()
