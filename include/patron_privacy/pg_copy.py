"""Keyed rows into a PostgreSQL warehouse by COPY, skipping keys already there.

A multi-row ``INSERT`` costs both ends for every value: the client renders each
parameter into the statement and the server parses it back. At a large
library's first night (ten million facts) that was most of the facts task.
``COPY`` streams the rows in PostgreSQL's own text format instead; it cannot
skip existing keys, so the rows go into a temporary table first and one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` moves the new ones across, in
the caller's transaction: a batch is written whole or not at all, and a rerun
writes nothing twice.

PostgreSQL's messages about a refused row quote it ("Failing row contains
...", a COPY error's context gives the value). Facts hold no personal data by
construction, but a message that repeats whatever a source put in a column is
not one to let into a task log, and any error raised while a COPY runs may
carry the line it was reading. So whatever fails, :class:`BatchNotWritten`
says so with the table, the row of the batch and the column where the server
gives them, the SQLSTATE or the error's class, and never a value.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_WHERE = re.compile(r"line (\d+)(?:, column (\w+))?")
_MEANING = {
    "22001": "a value too long for its column",
    "22003": "a number out of range",
    "22007": "a malformed date or time",
    "22008": "a date or time out of range",
    "22P02": "a malformed value",
    "23502": "a missing value that is required",
}


class BatchNotWritten(RuntimeError):
    """A batch was not written (refused, or the write failed); the message names where,
    never what."""


def _text(value) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return str(value).translate(_ESCAPES)


def _columns(table: Table, rows: Sequence[Mapping]) -> tuple[list[str], dict[str, object]]:
    """The rows' columns, and the scalar Python-side defaults of the table's others (an
    INSERT of the rows would apply them; a COPY would not)."""
    given = list(rows[0])
    defaults = {}
    for col in table.columns:
        if col.name in rows[0] or col.default is None:
            continue
        if not col.default.is_scalar:
            raise ValueError(f"{table.name}.{col.name}: only scalar defaults can be copied")
        defaults[col.name] = col.default.arg
    return given, defaults


def _not_written(table: Table, batch: int, exc: Exception) -> BatchNotWritten:
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "pgcode", None)
    diag = getattr(orig, "diag", None)
    column = getattr(diag, "column_name", None)
    where = _WHERE.search(getattr(diag, "context", None) or "")
    refused = code is not None and code[:2] in ("22", "23")  # data and integrity errors
    verb = "the warehouse refused" if refused else "the warehouse did not take"
    parts = [f"{table.name}: {verb} a batch of {batch} rows"]
    if where:
        parts.append(f"at row {where.group(1)}")
        column = column or where.group(2)
    if column:
        parts.append(f"in column {column}")
    if code is None:
        parts.append(f"({type(orig).__name__}, no SQLSTATE: the connection may have failed)")
    else:
        meaning = _MEANING.get(code)
        parts.append(f"({meaning}, SQLSTATE {code})" if meaning else f"(SQLSTATE {code})")
    return BatchNotWritten(" ".join(parts) + "; nothing of the batch was written")


def _text_stream(
    rows: Sequence[Mapping], columns: Sequence[str], extra: Sequence = ()
) -> io.StringIO:
    """``rows`` as COPY's text format, ``columns`` of each then the ``extra`` values."""
    buf = io.StringIO()
    tail = "".join("\t" + _text(v) for v in extra)
    for r in rows:
        buf.write("\t".join([_text(r[c]) for c in columns]) + tail + "\n")
    buf.seek(0)
    return buf


def copy_rows(
    conn: Connection,
    target: str,
    rows: Sequence[Mapping],
    columns: Sequence[str],
    constants: Mapping[str, object] | None = None,
) -> None:
    """COPY ``rows`` into ``target`` (a quoted table name): their ``columns``, then each
    of ``constants`` as the same value on every row. Skips nothing: a key already there
    fails the COPY."""
    constants = constants or {}
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in [*columns, *constants])
    with conn.connection.cursor() as cur:
        cur.copy_expert(
            f"COPY {target} ({names}) FROM STDIN",
            _text_stream(rows, columns, list(constants.values())),
        )


def copy_ignoring_duplicates(conn: Connection, table: Table, rows: Sequence[Mapping]) -> int:
    """Write ``rows`` (dicts with the same keys) into ``table`` within ``conn``'s
    transaction, skipping rows whose key is already there; returns how many were new."""
    if not rows:
        return 0
    import psycopg2  # noqa: PLC0415 - only a PostgreSQL warehouse comes here

    given, defaults = _columns(table, rows)
    quote = conn.dialect.identifier_preparer.quote
    target = conn.dialect.identifier_preparer.format_table(table)
    stage = quote(f"pp_copy_{table.name}")
    names = ", ".join(quote(c) for c in [*given, *defaults])
    try:
        # ON COMMIT DROP, and dropped at the end: a second batch in the same
        # transaction, or a rolled-back one, finds no table left behind.
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        copy_rows(conn, stage, rows, given, defaults)
        written = conn.exec_driver_sql(
            f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage} ON CONFLICT DO NOTHING"
        ).rowcount
        conn.exec_driver_sql(f"DROP TABLE {stage}")
    except (DBAPIError, psycopg2.Error) as exc:
        raise _not_written(table, len(rows), exc) from None
    return written
