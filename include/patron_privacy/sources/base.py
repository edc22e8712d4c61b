"""What every source connector provides to the engine and the pipeline.

A connector adds data — its categories, how to prepare a run, how to record
facts — never a second engine: the engine, verification and audit are shared
by every source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine

from patron_privacy.engine import Category, Context


class SourceConfigError(RuntimeError):
    """The source is not in a state where a run may change it (checked before any change)."""


@dataclass(frozen=True)
class Connector:
    name: str
    conn_id: str
    categories: Mapping[str, Category]
    # Validate the policy's ``sources.<name>`` options; returns problems as "field: message".
    check_options: Callable[[dict], list[str]] = lambda opts: []
    # Read what the run needs from the source before any change (e.g. the anonymous patron).
    prepare: Callable[[Engine, dict, Context], None] = lambda engine, opts, ctx: None
    # Record facts for everything up to the as-of instant; returns how many were new.
    extract_facts: Callable[..., int] | None = None
    default_options: dict = field(default_factory=dict)


MAX_WORKERS = 16


def check_batching(opts: dict) -> list[str]:
    """The engine's options every database source takes: rows per batch, and how many
    sessions apply batches at once (see ``engine.batch_workers``)."""
    problems = []
    batch = opts.get("batch_size", 10_000)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 1_000_000:
        problems.append(f"batch_size: expected a whole number from 1 to 1000000, got {batch!r}")
    workers = opts.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        problems.append(
            f"workers: expected a whole number from 1 to {MAX_WORKERS}, got {workers!r}"
        )
    return problems
