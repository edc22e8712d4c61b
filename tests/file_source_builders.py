"""Builders for file-source tests: a private home, a policy, CSV exports and Squid lines."""

from __future__ import annotations

import csv
import gzip
import json
import os
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from patron_privacy.facts import new_key_file
from patron_privacy.policy import parse_policy

ZONE = "America/New_York"
AS_OF = datetime(2026, 11, 30)  # midnight, library time
SIGNUP_HEADER = ["Reservation Id", "Card Number", "Patron Name", "Computer", "Branch",
                 "Start Time", "End Time"]  # fmt: skip
PROGRAM_HEADER = ["Event", "Event Date", "Audience", "Format", "Location", "Registrant",
                  "Email", "Attended"]  # fmt: skip
CLIENTS = {"10.213.77.142": ("MAIN", "MAIN-PC01"), "10.213.77.143": ("EAST", "EAST-PC01")}


def policy_text(root: Path, *, live_blocker: bool = True) -> str:
    live = "[live_log]" if live_blocker else "[]"
    clients = "\n".join(
        f"      '{ip}': {{branch: {b}, pc: {pc}}}" for ip, (b, pc) in CLIENTS.items()
    )
    return f"""
library: {{name: Test Library, timezone: {ZONE}}}
sources:
  signups:
    folders:
      - path: {root / "signups"}
        columns: {{card_number: Card Number, name: Patron Name, pc: Computer, branch: Branch,
                  start: Start Time, end: End Time}}
        other_columns: {{Reservation Id: keep}}
        max_field_chars: 200
  programs:
    folders:
      - path: {root / "programs"}
        columns: {{event: Event, date: Event Date, audience: Audience, delivery: Format,
                  branch: Location, name: Registrant, email: Email, attended: Attended}}
  squid:
    folder: {root / "squid"}
    clients:
{clients}
rules:
  - {{category: signup_identities, source: signups, window: P1D, action: strip,
      fields: [card_number, name, other_columns], blockers: [], basis: b, why: w}}
  - {{category: signup_records, source: signups, window: P90D, action: delete,
      blockers: [], basis: b, why: w}}
  - {{category: registrant_identities, source: programs, window: P30D, action: strip,
      fields: [name, email], blockers: [], basis: b, why: w}}
  - {{category: registration_records, source: programs, window: P1Y, action: delete,
      blockers: [], basis: b, why: w}}
  - {{category: client_identifiers, source: squid, window: P1D, action: strip,
      fields: [client, ident, query], blockers: {live}, basis: b, why: w}}
  - {{category: access_log_lines, source: squid, window: P30D, action: delete,
      blockers: {live}, basis: b, why: w}}
"""


def make_policy(root: Path, **kw):
    for sub in ("signups", "programs", "squid"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return parse_policy(policy_text(root, **kw), str(root / "policy.yaml"))


def env_for(home: Path) -> dict[str, str]:
    """Connections named in the environment (never Airflow's lookup, never the shell's)."""
    keys = home / "pseudonym_keys.json"
    if not keys.exists():
        new_key_file(keys, [str(y) for y in range(2024, 2028)])
    return {
        "PATRON_PRIVACY_HOME": str(home),
        "AIRFLOW_CONN_WAREHOUSE_DB": json.dumps(
            {"conn_type": "sqlite", "host": str(home / "warehouse.db")}
        ),
        "AIRFLOW_CONN_PSEUDONYM_KEYS": json.dumps(
            {"conn_type": "generic", "extra": json.loads(keys.read_text())}
        ),
    }


@contextmanager
def file_home(home: Path):
    """Point the package at ``home`` for the block (usable inside hypothesis examples)."""
    home.mkdir(parents=True, exist_ok=True)
    new = env_for(home)
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    try:
        yield home
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def signup_row(rid: int, card: str, name: str, end: datetime, minutes: int = 30) -> list[str]:
    start = end - timedelta(minutes=minutes)
    return [
        str(rid),
        card,
        name,
        "MAIN-PC01",
        "MAIN",
        f"{start:%Y-%m-%d %H:%M}",
        f"{end:%Y-%m-%d %H:%M}",
    ]


def squid_line(
    when: datetime, client: str = "10.213.77.142", url: str = "http://x.example/p?q=1",
    ident: str = "-",
) -> bytes:  # fmt: skip
    ts = when.replace(tzinfo=ZoneInfo(ZONE)).timestamp()
    return (
        f"{ts:.3f}    120 {client} TCP_MISS/200 512 GET {url} {ident} "
        "HIER_DIRECT/93.184.216.34 text/html\n"
    ).encode()


def write_log(path: Path, lines: list[bytes], *, gz: bool = False) -> Path:
    data = b"".join(lines)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def read_log(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
