"""Connectors to the library's source systems, one subpackage per system.

The registry is lazy so that reading the policy or parsing a DAG never
imports a connector (or its database driver) that the run does not use.
"""

from __future__ import annotations

import importlib
from functools import cache

from patron_privacy.sources.base import Connector

SOURCES: dict[str, str] = {
    "koha": "patron_privacy.sources.koha.connector",
    "evergreen": "patron_privacy.sources.evergreen.connector",
    # File sources (issue 4): CSV exports in drop folders, Squid access logs.
    "signups": "patron_privacy.sources.dropfolder.signups",
    "programs": "patron_privacy.sources.dropfolder.programs",
    "squid": "patron_privacy.sources.squid.connector",
    "libki": "patron_privacy.sources.libki.connector",
    "libcal": "patron_privacy.sources.libcal.connector",
}


@cache
def connector(name: str) -> Connector:
    try:
        module = SOURCES[name]
    except KeyError:
        raise ValueError(
            f"unknown source {name!r} (expected one of {', '.join(SOURCES)})"
        ) from None
    return importlib.import_module(module).CONNECTOR
