"""Record categories of file sources, as the policy and legal holds see them.

``policy.py`` checks a rule against its source's categories through what a
category declares — its actions (``delete``, ``strip``), the fields it can
strip, its blockers, its description — and binds it into an ``engine.Rule``.
A file category declares the same things without a table: the engine never
runs on it; ``files.runner`` applies the bound rule (window, action, fields,
blockers) to lines of files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from patron_privacy.sources.base import Connector


@dataclass(frozen=True)
class FileCategory:
    name: str
    source: str
    description: str
    # The fields a ``strip`` rule may name; empty means the category cannot strip.
    strippable: tuple[str, ...] = ()
    deletable: bool = True
    # Blockers a rule may list (besides legal_hold, which every rule has).
    blockers: Mapping[str, str] = field(default_factory=dict)
    # Which field holds the patron id a legal hold names (None: holds cannot name these).
    patron_field: str | None = None
    # The engine's vocabulary, for code that inspects any category.
    anonymize: None = None
    patron: None = None

    @property
    def actions(self) -> tuple[str, ...]:
        out = []
        if self.deletable:
            out.append("delete")
        if self.strippable:
            out.append("strip")
        return tuple(out)


def file_connector(
    name: str,
    kind: str,
    categories: Mapping[str, FileCategory],
    check_options: Callable[[dict], list[str]],
    default_options: dict | None = None,
) -> Connector:
    """A ``sources.base.Connector`` for a file source; ``conn_id`` says it has no connection."""
    return Connector(
        name=name,
        conn_id=f"files:{kind}",
        categories=dict(categories),
        check_options=check_options,
        default_options=dict(default_options or {}),
    )


def is_file_source(name: str) -> bool:
    from patron_privacy import sources  # noqa: PLC0415 - the registry imports connectors lazily

    if name not in sources.SOURCES:
        return False
    return sources.connector(name).conn_id.startswith("files:")
