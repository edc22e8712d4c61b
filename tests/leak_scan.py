"""Search artifacts for known personal values ("canaries") that must never reach them.

Every function returns a list of findings, one per (place, needle) hit, so a failing
assertion names where each value turned up. Matching is case-insensitive on
ASCII (the canaries are ASCII); callers add the other forms of a value
themselves (``digit_forms``) because which forms matter depends on the field.

Extend with a function per new kind of artifact (exports, alert bodies, ...),
each built on ``scan_text`` / ``scan_bytes`` so the matching rules stay one.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect


@dataclass(frozen=True)
class Finding:
    where: str
    needle: str

    def __str__(self) -> str:
        return f"{self.needle!r} in {self.where}"


def digit_forms(value: str, *, min_digits: int = 7) -> list[str]:
    """The value itself plus its digits-only form (phones, card numbers typed with dashes)."""
    digits = re.sub(r"\D", "", value)
    out = [value]
    if len(digits) >= min_digits and digits != value:
        out.append(digits)
    return out


def _needles(needles: Iterable[str]) -> list[tuple[str, bytes]]:
    out = []
    for n in dict.fromkeys(needles):
        if not n:
            raise ValueError("an empty needle matches everything")
        out.append((n, n.lower().encode()))
    return out


def scan_bytes(data: bytes, needles: Iterable[str], where: str) -> list[Finding]:
    hay = data.lower()
    return [Finding(where, n) for n, b in _needles(needles) if b in hay]


def scan_text(text: str, needles: Iterable[str], where: str = "text") -> list[Finding]:
    hay = text.lower()
    return [Finding(where, n) for n in dict.fromkeys(needles) if n.lower() in hay]


def _cell_texts(value) -> list[str]:
    """What a cell can reveal: its text, and for bytes also a zlib-inflated form."""
    if value is None:
        return []
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes | bytearray):
        texts = [bytes(value).decode("utf-8", "replace")]
        try:
            texts.append(zlib.decompress(bytes(value)).decode("utf-8", "replace"))
        except zlib.error:
            pass
        return texts
    return [str(value)]


def _raw_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists()]


def scan_sqlite(path: str | Path, needles: Iterable[str]) -> list[Finding]:
    """Every cell of every table (via SQLAlchemy), then the raw bytes of the file and its
    -wal/-journal (deleted rows and unreferenced pages keep their bytes)."""
    path = Path(path)
    needles = list(needles)
    if not path.exists():
        raise FileNotFoundError(path)
    findings: list[Finding] = []
    # Raw bytes first: the last connection to close checkpoints and removes the -wal.
    for f in _raw_files(path):
        findings += scan_bytes(f.read_bytes(), needles, f"{f} (raw bytes)")
    findings += _scan_cells(f"sqlite:///{path}", needles, path.name)
    return list(dict.fromkeys(findings))


def _scan_cells(url: str, needles: list[str], label: str) -> list[Finding]:
    findings: list[Finding] = []
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            preparer = engine.dialect.identifier_preparer
            for table in inspect(conn).get_table_names():
                # Driver-level rows: no type processing that could fail on (or hide) a value.
                result = conn.exec_driver_sql(f"SELECT * FROM {preparer.quote(table)}")
                columns = list(result.keys())
                for row in result:
                    for col, value in zip(columns, row, strict=True):
                        where = f"{label}:{table}.{col}"
                        for text in _cell_texts(value):
                            findings += scan_text(text, needles, where)
    finally:
        engine.dispose()
    return findings


def scan_database(url: str, needles: Iterable[str], label: str) -> list[Finding]:
    """Every cell of every table of a server database (PostgreSQL, MariaDB)."""
    return list(dict.fromkeys(_scan_cells(url, list(needles), label)))


def scan_redis(url: str, needles: Iterable[str]) -> tuple[list[Finding], int]:
    """Every key and value of one Redis database (strings, lists, sets, hashes, sorted
    sets), and how many keys were read."""
    import redis  # noqa: PLC0415 - only the distributed tests have a broker

    needles = list(needles)
    client = redis.Redis.from_url(url)
    findings: list[Finding] = []
    keys = 0
    try:
        for key in client.scan_iter(count=500):
            keys += 1
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key) or b""]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "hash":
                values = [b for kv in client.hgetall(key).items() for b in kv]
            elif kind == "zset":
                values = client.zrange(key, 0, -1)
            else:
                values = []
            where = f"redis {url} key {key.decode(errors='replace')}"
            for data in [key, *values]:
                findings += scan_bytes(data, needles, where)
    finally:
        client.close()
    return list(dict.fromkeys(findings)), keys


def scan_tree(
    path: str | Path, needles: Iterable[str], *, skip: Iterable[str | Path] = ()
) -> list[Finding]:
    """The raw bytes of every file under ``path``, recursively (``skip``: paths left out)."""
    root = Path(path)
    skipped = [Path(s).resolve() for s in skip]
    needles = list(needles)
    findings: list[Finding] = []
    if not root.exists():
        return findings
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        resolved = f.resolve()
        if any(resolved == s or s in resolved.parents for s in skipped):
            continue
        findings += scan_bytes(f.read_bytes(), needles, str(f))
    return findings


def files_scanned(path: str | Path) -> int:
    """How many files ``scan_tree`` would read: a scan of nothing proves nothing."""
    root = Path(path)
    if not root.exists():
        return 0
    return 1 if root.is_file() else sum(1 for p in root.rglob("*") if p.is_file())
