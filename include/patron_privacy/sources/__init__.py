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
