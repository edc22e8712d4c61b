"""A patron's own records: everything the inventory finds for one patron, in one package.

Connecticut §11-25(b) lets a patron consent in writing to the disclosure of their
own library records, and the NISO principles ask that people can see the data
held about them. ``python -m patron_privacy patron-report --source koha
--patron ID --consent-ref REF`` gathers, from the live source, every row the
personal-data inventory (:mod:`patron_privacy.inventory`) links to that patron
— the patron record, loans, holds, fines, notices, searches, logs, requests,
messages, photos, files — into one JSON file and one readable HTML page, for the
library to hand to that patron.

**These files contain the patron's personal data, by design**: they are made
for that patron. They are written with mode 0600 into a directory with mode
0700 (default ``<PATRON_PRIVACY_HOME>/exports/patron-reports/``), named by a
random request id, never by the patron's number; hand them over and delete
them. Nothing from them is logged or printed.

What the package leaves out, and says so: credentials (password hashes, 2FA
secrets, tokens) are withheld; in a row that is the patron's, a column that
points at *another* person (the staff member who checked an item out, a
guarantee) is blanked; rows held under a pseudonym nobody here can compute
(Koha's ``pseudonymized_transactions``) cannot be selected and are listed as
such.

The warehouse keeps one row per request (``patron_record_requests``): request
id, consent reference, source, time and the number of rows per table — never
the patron's number or anything from the rows.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Integer, MetaData, Table, and_, or_, select

from patron_privacy.inventory import Place, SourceInventory, discover, source_inventory

CREDENTIALS = re.compile(r"password|secret|\w*token|api_key", re.IGNORECASE)
CONSENT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}")
WITHHELD = "[withheld: credential]"
OTHER_PERSON = None  # what a column pointing at someone else becomes


class PatronReportError(ValueError):
    """The request cannot be served as given (the message says why, without patron data)."""


def _schema_and_name(fullname: str) -> tuple[str | None, str]:
    schema, _, name = fullname.rpartition(".")
    return (schema or None), name


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes | bytearray):
        return {"bytes": len(value), "base64": base64.b64encode(bytes(value)).decode()}
    return str(value)


def _coerce(column, value):
    """The patron's value in the link column's type; None when it cannot match."""
    if value is None:
        return None
    if isinstance(column.type, Integer):
        text = str(value).strip()
        return int(text) if re.fullmatch(r"-?\d+", text) else None
    return str(value)


def _patron_row(conn: Connection, spec: SourceInventory, patron_id: str) -> dict | None:
    schema, name = _schema_and_name(spec.patron_table)
    table = Table(name, MetaData(), schema=schema, autoload_with=conn)
    key = _coerce(table.c[spec.patron_key], patron_id)
    if key is None:
        raise PatronReportError(f"--patron: not a valid {spec.patron_key}")
    row = conn.execute(select(table).where(table.c[spec.patron_key] == key)).mappings().first()
    return dict(row) if row is not None else None


def _identity(spec: SourceInventory, patron_id: str, row: dict | None) -> dict[str, object]:
    """What each link's ``via`` column holds for this patron (key, userid, cardnumber...)."""
    out: dict[str, object] = {spec.patron_key: patron_id}
    for k, v in (row or {}).items():
        if k != spec.patron_key and v not in (None, ""):
            out[k] = v
    return out


def _conditions(table: Table, place: Place, identity: dict) -> list:
    conds = []
    for link in place.links:
        if not link.queryable or link.column not in table.c:
            continue
        value = _coerce(table.c[link.column], identity.get(link.via))
        if value is None:
            continue
        cond = table.c[link.column] == value
        if link.scope is not None:
            scope_col, allowed = link.scope
            cond = and_(cond, table.c[scope_col].in_(list(allowed)))
        conds.append(cond)
    return conds


def gather(conn: Connection, spec: SourceInventory, places: dict[str, Place], patron_id: str):
    """Every row linked to the patron, table by table; plus what could not be searched."""
    row = _patron_row(conn, spec, patron_id)
    identity = _identity(spec, patron_id, row)
    tables: list[dict] = []
    not_searchable: list[dict] = []
    for name, place in places.items():
        if not place.links:
            continue  # personal fields but no link to a patron (e.g. vendor contacts)
        schema, short = _schema_and_name(name)
        table = Table(short, MetaData(), schema=schema, autoload_with=conn)
        for link in place.links:
            if not link.queryable:
                not_searchable.append(
                    {
                        "table": name,
                        "column": link.column,
                        "why": "held under a pseudonym that cannot be matched to a patron here",
                    }
                )
        conds = _conditions(table, place, identity)
        if not conds:
            continue
        order = list(table.primary_key.columns) or list(table.c)[:1]
        rows = conn.execute(select(table).where(or_(*conds)).order_by(*order)).mappings().all()
        if not rows:
            continue
        tables.append(_package_rows(table, place, rows, identity))
    return row is not None, tables, not_searchable


def _package_rows(table: Table, place: Place, rows, identity: dict) -> dict:
    link_cols = {x.column: x.via for x in place.links}
    withheld = sorted(c.name for c in table.c if CREDENTIALS.fullmatch(c.name))
    out_rows = []
    blanked: set[str] = set()
    for r in rows:
        item = {}
        for col, value in r.items():
            if col in withheld and value is not None:
                item[col] = WITHHELD
                continue
            via = link_cols.get(col)
            if via is not None and value is not None:
                mine = _coerce(table.c[col], identity.get(via))
                if mine is None or value != mine:
                    item[col] = OTHER_PERSON  # points at another person: not theirs to see
                    blanked.add(col)
                    continue
            item[col] = _jsonable(value)
        out_rows.append(item)
    return {
        "table": place.table,
        "row_count": len(out_rows),
        "links": sorted(link_cols),
        "withheld_columns": withheld,
        "blanked_columns_other_people": sorted(blanked),
        "rows": out_rows,
    }


def check_consent_ref(consent_ref: str, patron_id: str, patron: dict | None) -> str:
    """The reference to the written consent: short, and free of the patron's identifiers
    (it is the one free value the warehouse log keeps)."""
    ref = (consent_ref or "").strip()
    if not CONSENT_REF.fullmatch(ref):
        raise PatronReportError(
            "--consent-ref: expected the consent form's reference (letters, digits, . _ : / # -, "
            "at most 64 characters)"
        )
    if re.search(rf"(?<!\d){re.escape(str(patron_id).strip())}(?!\d)", ref):
        raise PatronReportError("--consent-ref must not contain the patron's number")
    low = ref.lower()
    for key in ("cardnumber", "userid", "email", "surname", "firstname"):
        value = str((patron or {}).get(key) or "").strip().lower()
        if len(value) >= 4 and value in low:
            raise PatronReportError(
                "--consent-ref must not contain the patron's card number, login, email or name"
            )
    return ref


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def render_html(package: dict) -> str:
    """A readable page of the package; every value escaped."""
    e = html.escape

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, dict) and "bytes" in v:
            return e(f"[file, {v['bytes']} bytes]")
        return e(str(v))

    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e('Your library records')} ({e(package['source'])})</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:2em}td,th{border:1px solid #999;padding:3px 6px;vertical-align:top;"
        "font-size:90%}th{background:#eee}</style></head><body>",
        f"<h1>{e('Your library records')}</h1>",
        f"<p>{e(package['notice'])}</p>",
        "<ul>",
        f"<li>Source system: {e(package['source'])}</li>",
        f"<li>Request: {e(package['request_id'])}</li>",
        f"<li>Consent reference: {e(package['consent_ref'])}</li>",
        f"<li>Prepared: {e(package['generated_at'])}</li>",
        "</ul>",
    ]
    for t in package["tables"]:
        cols = list(t["rows"][0]) if t["rows"] else []
        parts.append(f"<h2>{e(t['table'])} ({e(str(t['row_count']))})</h2>")
        if t["withheld_columns"] or t["blanked_columns_other_people"]:
            notes = []
            if t["withheld_columns"]:
                notes.append("credentials withheld: " + ", ".join(t["withheld_columns"]))
            if t["blanked_columns_other_people"]:
                notes.append(
                    "left blank where they name another person: "
                    + ", ".join(t["blanked_columns_other_people"])
                )
            parts.append(f"<p>{e('; '.join(notes))}</p>")
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
        for r in t["rows"]:
            parts.append("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in cols) + "</tr>")
        parts.append("</table>")
    if package["not_searchable"]:
        parts.append(f"<h2>{e('Held but not searchable by patron')}</h2><ul>")
        for n in package["not_searchable"]:
            parts.append(f"<li>{e(n['table'])}.{e(n['column'])}: {e(n['why'])}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


NOTICE = (
    "These are the records this library's system holds that are linked to you, "
    "gathered at your written request. Passwords and security codes are withheld; "
    "where a record of yours names another person (for example the staff member who "
    "served you), that name or number is left blank."
)


def make_patron_report(
    source: str,
    patron_id: str,
    consent_ref: str,
    out_dir: str | Path | None = None,
    *,
    bind=None,
    warehouse=None,
) -> dict:
    """Gather, write the package (0600), log the request (counts only); return the summary.

    The summary returned (and printed by the CLI) holds the request id, the file
    paths and counts per table: nothing about the patron.
    """
    from patron_privacy import connections, sources  # noqa: PLC0415
    from patron_privacy.warehouse import create_warehouse, log_patron_record_request  # noqa: PLC0415

    spec = source_inventory(source)
    own_source = bind is None
    engine = connections.engine_for(sources.connector(source).conn_id) if own_source else bind
    try:
        with engine.connect() as conn:
            places = discover(conn, spec)
            patron = _patron_row(conn, spec, patron_id)
            ref = check_consent_ref(consent_ref, patron_id, patron)
            found, tables, not_searchable = gather(conn, spec, places, patron_id)
    finally:
        if own_source:
            engine.dispose()
    request_id = uuid.uuid4().hex
    requested_at = datetime.now()  # when the request was served (a label, not a clock)
    package = {
        "request_id": request_id,
        "source": source,
        "consent_ref": ref,
        "generated_at": requested_at.isoformat(timespec="seconds"),
        "notice": NOTICE,
        "patron_record_found": found,
        "tables": tables,
        "not_searchable": not_searchable,
    }
    directory = (
        Path(out_dir) if out_dir else connections.local_home() / "exports" / "patron-reports"
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    json_path = directory / f"patron-report-{request_id}.json"
    html_path = directory / f"patron-report-{request_id}.html"
    _write_private(json_path, json.dumps(package, indent=2, ensure_ascii=False))
    _write_private(html_path, render_html(package))
    counts = {t["table"]: t["row_count"] for t in tables}
    own_warehouse = warehouse is None
    wh = connections.engine_for(connections.WAREHOUSE_DB) if own_warehouse else warehouse
    try:
        create_warehouse(wh)
        with wh.begin() as w:
            log_patron_record_request(
                w,
                request_id=request_id,
                consent_ref=ref,
                source=source,
                requested_at=requested_at,
                counts=counts,
            )
    finally:
        if own_warehouse:
            wh.dispose()
    return {
        "request_id": request_id,
        "source": source,
        "json": str(json_path),
        "html": str(html_path),
        "counts": counts,
        "total_rows": sum(counts.values()),
        "patron_record_found": found,
        "not_searchable": [f"{n['table']}.{n['column']}" for n in not_searchable],
    }
