"""Squid's ``access.log``: Internet use on the library's public computers.

A native-format line (``time.ms elapsed client action/code size method URL
ident hierarchy/from content-type``) ties a client address — a public PC, and
through the sign-up sheet a person — and, with authentication, a user name
to every URL visited, search terms included. Two categories:

* ``client_identifiers`` (strip ``client``, ``ident``, ``query``): the
  line stays for troubleshooting, without who and without query strings;
* ``access_log_lines`` (delete): the line goes; a file all of whose lines go
  is deleted.

Blocker ``live_log``: lines in the file Squid is still writing (``live_file``,
``access.log``) are kept until it is rotated — a rename over a file Squid
holds open would lose what Squid writes next. Legal holds name the ``ident``
user name.

Options (``sources.squid`` in the policy)::

    folder: sources/squid           # relative to PATRON_PRIVACY_HOME, or absolute
    pattern: "access.log*"          # rotated (access.log.1) and gzipped files too
    live_file: access.log
    session_gap_minutes: 30         # a pause this long starts a new session
    gzip_level: 6                   # for rewritten .gz files (gzip is preserved)
    clients:                        # client address -> branch and PC
      10.20.1.11: {branch: MAIN, pc: MAIN-PC01}
    networks:                       # or a whole network -> branch and a PC label
      10.20.9.0/24: {branch: MAIN, pc: MAIN-WIFI}

Clients in neither table count as branch and PC ``unknown``: a PC's label
never comes from its address.
"""

from __future__ import annotations

import ipaddress

from patron_privacy.files.categories import FileCategory, file_connector

SOURCE = "squid"
LIVE_LOG = "live_log"
STRIPPABLE = ("client", "ident", "query")

OPTIONS = (
    "folder",
    "pattern",
    "live_file",
    "session_gap_minutes",
    "gzip_level",
    "clients",
    "networks",
    "max_line_bytes",
    "validation",
)
DEFAULTS = {
    "pattern": "access.log*",
    "live_file": "access.log",
    "session_gap_minutes": 30,
    "gzip_level": 6,
    "clients": {},
    "networks": {},
    "max_line_bytes": 65536,
}


def _check_place(where: str, value) -> list[str]:
    if not isinstance(value, dict) or set(value) - {"branch", "pc"} or "branch" not in value:
        return [f"{where}: expected {{branch: CODE, pc: NAME}}"]
    out = []
    for k, limit in (("branch", 32), ("pc", 64)):
        v = value.get(k)
        if v is not None and (not isinstance(v, str) or not v.strip() or len(v) > limit):
            out.append(f"{where}.{k}: expected text of at most {limit} characters")
    return out


def check_options(opts: dict) -> list[str]:
    problems = [
        f"{k}: unknown option (expected one of {', '.join(OPTIONS)})"
        for k in sorted(set(opts) - set(OPTIONS))
    ]
    if not isinstance(opts.get("folder"), str) or not opts["folder"].strip():
        problems.append("folder: required, the folder holding access.log and its rotations")
    for key, lo, hi in (
        ("session_gap_minutes", 1, 24 * 60),
        ("gzip_level", 1, 9),
        ("max_line_bytes", 1024, 16_000_000),
    ):
        v = opts.get(key, DEFAULTS[key])
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            problems.append(f"{key}: expected a whole number from {lo} to {hi}, got {v!r}")
    for key in ("pattern", "live_file"):
        v = opts.get(key, DEFAULTS[key])
        if not isinstance(v, str) or not v or "/" in v:
            problems.append(f"{key}: expected a file name (pattern) in the folder")
    clients = opts.get("clients") or {}
    if not isinstance(clients, dict):
        problems.append("clients: expected a mapping of client address to {branch, pc}")
        clients = {}
    for addr, place in clients.items():
        problems += _check_place(f"clients.{addr}", place)
    networks = opts.get("networks") or {}
    if not isinstance(networks, dict):
        problems.append("networks: expected a mapping of network (CIDR) to {branch, pc}")
        networks = {}
    for net, place in networks.items():
        try:
            ipaddress.ip_network(str(net), strict=False)
        except ValueError:
            problems.append(f"networks.{net}: not a network such as 10.20.9.0/24")
        problems += _check_place(f"networks.{net}", place)
    return problems


CATEGORIES = {
    "client_identifiers": FileCategory(
        name="client_identifiers",
        source=SOURCE,
        description="Who used the Internet: client address, user name, query strings (Squid)",
        strippable=STRIPPABLE,
        deletable=False,
        blockers={LIVE_LOG: "lines of the log Squid is still writing"},
        patron_field="ident",
    ),
    "access_log_lines": FileCategory(
        name="access_log_lines",
        source=SOURCE,
        description="Internet use log lines (Squid access.log)",
        blockers={LIVE_LOG: "lines of the log Squid is still writing"},
        patron_field="ident",
    ),
}

CONNECTOR = file_connector(SOURCE, "squid", CATEGORIES, check_options, DEFAULTS)
