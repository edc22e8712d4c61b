"""De-identified facts, recorded before a record loses its link to a patron.

Statistics must survive anonymization, but the warehouse must not become the
new copy of what was removed. A fact keeps only coarse attributes (date,
branch, item type, collection, patron category, age band) and a keyed
pseudonym: HMAC-SHA256 of the patron id under a key that belongs to one
reporting period. Distinct borrowers can be counted within a period; once
that period's key is destroyed, nobody — the library included — can link its
pseudonyms to a patron or to another period's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Connection

from patron_privacy import connections
from patron_privacy.warehouse import circulation_facts

# PLS audiences: children 0-11, young adults 12-18, adults 19+ (split at 65).
AGE_BANDS = ((0, 11, "0-11"), (12, 18, "12-18"), (19, 64, "19-64"), (65, 200, "65+"))


class MissingKeyError(RuntimeError):
    """No pseudonym key for a reporting period: facts are not written unkeyed."""


def age_band(birth: date | None, on: date) -> str:
    if birth is None or not isinstance(birth, date) or birth.year < 1900 or birth > on:
        return "unknown"
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    for lo, hi, label in AGE_BANDS:
        if lo <= years <= hi:
            return label
    return "unknown"


def period_of(day: date) -> str:
    """The reporting period a fact belongs to: the calendar year (the state report's)."""
    return f"{day.year:04d}"


class Pseudonymizer:
    """Keyed pseudonyms with one key per reporting period."""

    def __init__(self, keys: Mapping[str, str], source_name: str = "pseudonym_keys"):
        self._keys = {str(k): v.encode() for k, v in keys.items() if v}
        self._source = source_name
        # One keyed HMAC state per period, copied per message: HMAC-SHA256 of the key
        # pads is then computed once, not twice per fact (the facts hook's hot path).
        self._macs: dict[str, hmac.HMAC] = {}

    @classmethod
    def from_connection(cls, conn_id: str = connections.PSEUDONYM_KEYS) -> Pseudonymizer:
        """Keys live in a connection's extra (``{"keys": {"2026": "..."}}``), like any secret."""
        try:
            conn = connections.get_conn(conn_id)
        except connections.ConnectionConfigError:
            return cls({}, conn_id)
        return cls(conn.extra.get("keys", conn.extra), conn_id)

    def key(self, period: str) -> bytes:
        try:
            return self._keys[period]
        except KeyError:
            raise MissingKeyError(
                f"no pseudonym key for reporting period {period} in connection {self._source}"
            ) from None

    def _mac(self, period: str, msg: bytes) -> str:
        base = self._macs.get(period)
        if base is None:
            base = self._macs[period] = hmac.new(self.key(period), digestmod=hashlib.sha256)
        mac = base.copy()
        mac.update(msg)
        return mac.hexdigest()

    def pseudonym(self, period: str, patron_id) -> str:
        return self._mac(period, str(patron_id).encode())

    def fact_key(self, period: str, source: str, record_id) -> str:
        return self._mac(period, f"{source}:{record_id}".encode())


def new_key_file(path: Path, periods: Iterable[str]) -> None:
    """Create (or extend) a local key file for the demo; keys are random, never derived."""
    import secrets  # noqa: PLC0415

    data = {"keys": {}}
    if path.exists():
        data = json.loads(path.read_text())
    for p in periods:
        data["keys"].setdefault(p, secrets.token_hex(32))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.chmod(0o600)
    tmp.replace(path)


def _insert_ignoring_duplicates(wconn: Connection, table, rows: list[dict]) -> int:
    """One statement per chunk that skips keys already present: reruns write nothing twice
    (PostgreSQL: a COPY and one statement, see ``pg_copy``)."""
    dialect = wconn.dialect.name
    if dialect == "postgresql":
        from patron_privacy.pg_copy import copy_ignoring_duplicates  # noqa: PLC0415

        return copy_ignoring_duplicates(wconn, table, rows)
    if dialect == "sqlite":
        stmt = table.insert().prefix_with("OR IGNORE")
    elif dialect in ("mysql", "mariadb"):
        stmt = table.insert().prefix_with("IGNORE")
    else:  # pragma: no cover - every warehouse backend we support is above
        raise RuntimeError(f"unsupported warehouse backend {dialect}")
    # rowcount of a many-row insert is the rows actually inserted on these
    # drivers; where a driver cannot tell (-1), report the rows offered.
    n = wconn.execute(stmt, rows).rowcount
    return n if n is not None and n >= 0 else len(rows)


def write_circulation_facts(wconn: Connection, rows: list[dict]) -> int:
    """Insert facts whose keys are new; returns how many were new."""
    if not rows:
        return 0
    unique = list({r["fact_key"]: r for r in rows}.values())
    return _insert_ignoring_duplicates(wconn, circulation_facts, unique)


def record_in_batches(
    read: Callable[[object], tuple[Sequence, object]],
    write: Callable[[Sequence], int],
) -> int:
    """Keyset batches from a source to the warehouse, the next batch read while this one
    is written; returns what ``write`` reports as new.

    ``read(after)`` returns a batch of rows past the key ``after`` (None: the first) and
    the key to continue from; an empty batch ends it. At a large system's scale both
    halves are mostly a server's time (the source's join; the warehouse's inserts into a
    keyed index), so each waits on a different server instead of one after the other.
    Only one batch is ever read ahead: memory stays two batches whatever the table size.
    An error on either side stops both and is raised here; a batch is written whole or
    not at all, and keyed facts make a rerun write nothing twice.
    """
    written = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="facts-read") as reader:
        pending = reader.submit(read, None)
        while True:
            rows, after = pending.result()
            if not rows:
                return written
            pending = reader.submit(read, after)
            try:
                written += write(rows)
            except BaseException:
                pending.cancel()
                raise


def loan_fact(
    p: Pseudonymizer,
    source: str,
    *,
    loan_id,
    patron_id,
    anonymous_patron,
    issued: datetime | date,
    returned: datetime | date | None,
    birth: date | None,
    **attrs,
) -> dict:
    """One loan as a de-identified fact; ``attrs`` are the coarse attributes only."""
    day = issued.date() if isinstance(issued, datetime) else issued
    period = period_of(day)
    linked = patron_id is not None and patron_id != anonymous_patron
    ret = returned.date() if isinstance(returned, datetime) else returned
    return {
        "fact_key": p.fact_key(period, source, loan_id),
        "source": source,
        "loan_date": day,
        "return_date": ret if isinstance(ret, date) and ret.year >= 1900 else None,
        "patron_pseudonym": p.pseudonym(period, patron_id) if linked else None,
        "age_band": age_band(birth, day) if linked else "unknown",
        "reporting_period": period,
        "branch": attrs.get("branch"),
        "item_type": attrs.get("item_type"),
        "collection": attrs.get("collection"),
        "patron_category": attrs.get("patron_category"),
        "category_type": attrs.get("category_type"),
        "renewals": int(attrs.get("renewals") or 0),
    }
