"""Squid lines taken apart a block at a time with numpy, not one by one in Python.

A Python loop that does anything per line (split, float, a dict lookup) costs
several times what reading and splitting the file costs, so a busy proxy's
logs would take hours to go through. A block of complete lines is checked and
taken apart with array operations instead: where the separators are, whether
every line has exactly ten fields, the time of every line, which client, and
whether the URL carries a query string.

Only lines that Squid itself writes are taken this way ("strict" lines: fields
separated by spaces, the line may end in ``\\r\\n``, a time of 9 or 10 digits,
a point and 1 to 6 decimals, an action/code field with a slash, no tab or NUL
byte anywhere in the block). A block with any other line is handed back
(``analyse`` returns ``None``) to the line-by-line reading, which is the one
that decides exactly which lines are bad and says so. What a strict line means
(its fields, its time) is what the line-by-line reading makes of it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BLOCK_BYTES = 1 << 20
_SP, _LF, _CR, _SLASH, _QUERY, _DOT, _DASH = 32, 10, 13, 47, 63, 46, 45
_TIME_MAX = 17  # 10 digits, a point, 6 decimals
_CLIENT_MAX = 64
_MIX = np.uint64(0x9E3779B97F4A7C15)


class Lines:
    """The lines of one block: where each starts and ends, its time, and its fields
    (``field(k)``: the start and end offsets of field ``k`` of every line)."""

    def __init__(self, a, start, end, sep, before, ts):
        self.a = a  # the block's bytes (a view, not a copy)
        self.start = start  # offset of each line's first byte
        self.end = end  # offset of each line's newline
        self._sep = sep  # offsets of the separator bytes
        self._before = before  # (lines, 10): index in _sep of the byte before each field
        self.ts = ts  # float64, exactly float() of the time field
        self._fields: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._query: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.start)

    def field(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._fields.get(k)
        if got is None:
            i = self._before[:, k]
            s = self._sep[i] + 1
            if k == 0:
                s[0] = 0
            got = self._fields[k] = (s, self._sep[i + 1])
        return got

    def is_dash(self, k: int) -> np.ndarray:
        s, e = self.field(k)
        return (e - s == 1) & (self.a[s] == _DASH)

    def query_at(self) -> tuple[np.ndarray, np.ndarray]:
        """Whether each URL has a ``?``, and the offset of its first one (else the URL's end)."""
        if self._query is None:
            url_s, url_e = self.field(6)
            marks = np.flatnonzero(self.a == _QUERY)
            if not len(marks):
                self._query = (np.zeros(len(url_s), bool), url_e)
            else:
                i = np.searchsorted(marks, url_s)
                at = marks[np.minimum(i, len(marks) - 1)]
                has = (i < len(marks)) & (at < url_e)
                self._query = (has, np.where(has, at, url_e))
        return self._query


def analyse(block: bytes, max_line_bytes: int, floor: float) -> Lines | None:
    """The block's lines taken apart, or None when one of them is not strict.

    ``block`` ends with a newline. A line longer than ``max_line_bytes`` (newline
    included) or dated before ``floor`` is not strict either."""
    a = np.frombuffer(block, np.uint8)
    at = np.flatnonzero(a <= _SP)  # separators, and any other control byte
    if not len(at) or at[0] == 0:
        return None
    ctl = a[at]
    is_nl = ctl == _LF
    other = ctl != _SP
    other &= ~is_nl
    if other.any():  # only a \r right before a newline, no tab, NUL or the like
        cr = at[other]
        if not bool((a[cr] == _CR).all() and (a[cr + 1] == _LF).all()):
            return None
    nl = at[is_nl]
    n = len(nl)
    brk = np.flatnonzero(np.diff(at) != 1)  # a field starts after at[brk]
    if len(brk) + 1 != 10 * n:
        return None
    before = np.empty(10 * n, np.int64)
    before[0] = -1  # the block's first field starts at 0 (checked above)
    before[1:] = brk
    before = before.reshape(n, 10)
    # Ten fields a line: the first of every ten right after a newline (no space before it).
    if n > 1 and not np.array_equal(at[before[1:, 0]], nl[:-1]):
        return None
    start = np.empty(n, np.int64)
    start[0] = 0
    start[1:] = nl[:-1] + 1
    if int((nl - start).max()) + 1 > max_line_bytes:
        return None
    lines = Lines(a, start, nl, at, before, None)
    if not _slash_in(a, *lines.field(3)):
        return None
    ts = _times(a, *lines.field(0))
    if ts is None or not bool((ts >= floor).all()):
        return None
    lines.ts = ts
    return lines


def _rows(a: np.ndarray, s: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes from each offset in ``s``, one row each."""
    if int(s.max()) + width <= len(a):
        return sliding_window_view(a, width)[s]
    return a[np.minimum(s[:, None] + np.arange(width), len(a) - 1)]


def _slash_in(a: np.ndarray, s: np.ndarray, e: np.ndarray) -> bool:
    if (e - s >= 4).all() and (a[e - 4] == _SLASH).all():  # Squid's action/000
        return True
    slashes = np.flatnonzero(a == _SLASH)
    return bool((np.searchsorted(slashes, e) > np.searchsorted(slashes, s)).all())


def _times(a: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray | None:
    """``float(field)`` of every time field, or None if one is not ``\\d{9,10}\\.\\d{1,6}``.

    The digits make an integer N below 2**53 and the time is N / 10**decimals: one
    correctly rounded division of two exact numbers, the double ``float()`` gives."""
    width = e - s
    out = np.empty(len(s), np.float64)
    w0 = int(width[0])
    if bool((width == w0).all()):
        groups = [(w0, None)]
    else:
        groups = [(int(w), width == w) for w in np.unique(width)]
    for w, rows in groups:
        if not 11 <= w <= _TIME_MAX:
            return None
        g = _rows(a, s if rows is None else s[rows], w)
        at9 = g[:, 9] == _DOT
        where = np.arange(len(s)) if rows is None else np.flatnonzero(rows)
        for point, these in ((9, at9), (10, ~at9)):
            if not these.any():
                continue
            whole = bool(these.all())
            t = _fixed_times(g if whole else g[these], point, w)
            if t is None:
                return None
            out[where if whole else where[these]] = t
    return out


def _fixed_times(g: np.ndarray, point: int, width: int) -> np.ndarray | None:
    decimals = width - point - 1
    if not 1 <= decimals <= 6 or not bool((g[:, point] == _DOT).all()):
        return None
    digits = g - np.uint8(48)
    digits[:, point] = 0
    if not bool((digits < 10).all()):
        return None
    if point == 10 and decimals == 6 and not bool((g[:, 0] < ord("9")).all()):
        return None  # N could pass 2**53: not exact
    k = np.arange(width)
    weight = np.where(k < point, 10.0 ** (width - 2 - k), 10.0 ** (width - 1 - k))
    weight[point] = 0.0
    # Integers below 2**53 in every partial sum: the product is exact.
    return (digits.astype(np.float64) @ weight) / 10.0**decimals


def codes(a: np.ndarray, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
    """A code per field (equal fields, equal codes) and the first line of each code.

    None for a field longer than ``_CLIENT_MAX``. Fields are compared whole: the
    hash only groups them, and a block where two different fields share one is
    handed back (never happens in practice; then the slow way is still right)."""
    width = e - s
    w = int(width.max())
    if w > _CLIENT_MAX:
        return None
    w8 = (w + 7) // 8 * 8
    k = np.arange(w8)
    g = np.where(k < width[:, None], _rows(a, s, w8), np.uint8(0))  # no NUL in a strict block
    words = np.ascontiguousarray(g).view(np.uint64)
    h = words[:, 0].copy()
    for j in range(1, words.shape[1]):
        h = h * _MIX + words[:, j]
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    if words.shape[1] > 1 and not np.array_equal(g, g[first[inv]]):
        return None
    return inv, first.tolist()


def sessions(
    ts: np.ndarray, code: np.ndarray, before: np.ndarray, gap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which lines start a session, and each client's latest time after the block.

    A line starts a session when its client has no earlier time, or its time is more
    than ``gap`` after the latest of them (``before[c]`` carries the latest from the
    earlier blocks and files, -inf for none): the line-by-line rule, for all lines at
    once. The running latest per client comes from one cumulative maximum over
    (client, rank of time) keys in client-then-file order, or, when every client's
    times already come in order, is simply the time before."""
    k, m = len(before), len(ts)
    vals = np.concatenate([before, ts])
    grp = np.concatenate([np.arange(k), code])
    small = grp.astype(np.int16) if k < 1 << 15 else grp  # a radix sort, for few clients
    order = np.argsort(small, kind="stable")  # per client: its earlier latest, then file order
    g_sorted = grp[order]
    v_sorted = vals[order]
    step = np.diff(v_sorted)
    if bool((step[g_sorted[1:] == g_sorted[:-1]] >= 0).all()):
        latest = v_sorted  # each client's times in order (the usual log): latest is the last
    else:
        by_val = np.argsort(vals, kind="stable")
        rank = np.empty(k + m, np.int64)
        rank[by_val] = np.arange(k + m)
        span = k + m
        run = np.maximum.accumulate(g_sorted * span + rank[order]) - g_sorted * span
        latest = vals[by_val[run]]  # running latest per client, in that order
    real = np.flatnonzero(order >= k)  # never 0: every client's run opens with its `before`
    prev = latest[real - 1]
    new_sorted = (prev == -np.inf) | (vals[order[real]] - prev > gap)
    new = np.empty(m, bool)
    new[order[real] - k] = new_sorted
    ends = np.searchsorted(g_sorted, np.arange(k), side="right") - 1
    return new, latest[ends]


def rewritten(
    lines: Lines,
    first: int,
    delete: np.ndarray,
    strip: np.ndarray,
    client: bool,
    ident: bool,
    query: bool,
) -> memoryview:
    """Lines ``first`` on, as the rewrite has them: deleted ones left out, stripped ones
    with ``-`` for the client and user name and the URL cut at its ``?``, every other
    byte as it was (the same bytes ``accesslog.strip_line`` makes of one line).

    Three cuts a line, in the order they come in the line (empty ones where nothing
    goes), so the cuts are in file order without sorting; the bytes kept are picked
    with one mask made by ``np.repeat`` (a cumulative sum over the block is slower)."""
    a = lines.a
    base = int(lines.start[first])
    delete, strip = delete[first:], strip[first:]
    if not delete.any() and not strip.any():
        return memoryview(a[base:])
    if delete.all():  # the usual block of an old file
        return memoryview(b"")
    start, end = lines.start[first:], lines.end[first:] + 1
    gone = np.where(delete, end, start)  # a deleted line: its first cut takes it all
    cs, ce = (x[first:] for x in lines.field(2))
    ue = lines.field(6)[1][first:]
    ids, ide = (x[first:] for x in lines.field(7))
    client_cut = (cs + 1, ce) if client else (cs, cs)  # the field goes, its first byte is "-"
    query_cut = (lines.query_at()[1][first:], ue) if query else (ue, ue)
    ident_cut = (ids + 1, ide) if ident else (ids, ids)
    cuts = np.stack(
        [
            np.where(strip, client_cut[0], start),
            np.where(strip, client_cut[1], gone),
            np.where(strip, query_cut[0], gone),
            np.where(strip, query_cut[1], gone),
            np.where(strip, ident_cut[0], gone),
            np.where(strip, ident_cut[1], gone),
        ],
        axis=1,
    )
    bounds = cuts.reshape(-1) - base
    lengths = np.diff(bounds, prepend=0, append=len(a) - base)
    kept = np.zeros(len(lengths), bool)
    kept[::2] = True
    mask = np.repeat(kept, lengths)
    part = a[base:]
    if client or ident:
        dash = [f[strip] for f, on in ((cs, client), (ids, ident)) if on]
        if not part.flags.writeable:
            part = part.copy()
        part[np.concatenate(dash) - base] = _DASH  # in the block's own buffer: read already
    return memoryview(part[mask])
