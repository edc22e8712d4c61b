"""The policy's rules applied to one record of a file, and the counts a file source keeps.

The same decisions as the engine's, for a record that is a line of a file:
a record is a candidate for a rule when its clock is before the rule's
cutoff (and not before 1900, which no real record is) and it still holds what
the rule removes (every record, for ``delete``; a non-empty field of the
rule's, for ``strip``). A candidate is kept when the first of the rule's
blockers that applies says so — a legal hold naming the record's patron, or
a blocker of the source (Squid's log still being written) — and is changed
otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from patron_privacy.engine import LEGAL_HOLD, VALID_DATE_FLOOR, CategoryResult, Hold, Rule


@dataclass(frozen=True)
class BoundRule:
    """A policy rule with its cutoff computed for this run."""

    rule: Rule
    cutoff: datetime

    @property
    def category(self) -> str:
        return self.rule.category.name

    @property
    def action(self) -> str:
        return self.rule.action

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.rule.fields)

    @property
    def blockers(self) -> tuple[str, ...]:
        return tuple(self.rule.blockers)

    def past(self, clock: datetime) -> bool:
        return VALID_DATE_FLOOR <= clock < self.cutoff


def bind(rules: Sequence[Rule], as_of: datetime) -> list[BoundRule]:
    return [BoundRule(r, as_of - r.cutoff_delta) for r in rules]


class HoldIndex:
    """Active legal holds by patron id, asked per record (file sources hold strings)."""

    def __init__(self, holds: Iterable[Hold] = ()):
        self._by_patron: dict[str, list[Hold]] = {}
        for h in holds:
            self._by_patron.setdefault(str(h.patron_id).strip().lower(), []).append(h)

    def __bool__(self) -> bool:
        return bool(self._by_patron)

    def held(self, category: str, patron_id: str | None, clock: datetime) -> bool:
        if not patron_id or not self._by_patron:
            return False
        for h in self._by_patron.get(str(patron_id).strip().lower(), ()):
            if not h.covers(category):
                continue
            if h.date_from is not None and clock < h.date_from:
                continue
            if h.date_to is not None and clock > h.date_to:
                continue
            return True
        return False


def blocker_for(
    rule: BoundRule,
    clock: datetime,
    patron_id: str | None,
    holds: HoldIndex,
    source_blockers: frozenset[str] = frozenset(),
) -> str | None:
    """The first of the rule's blockers that keeps this record, or None."""
    for b in rule.blockers:
        if b == LEGAL_HOLD:
            if holds.held(rule.category, patron_id, clock):
                return b
        elif b in source_blockers:
            return b
    return None


@dataclass
class Tally:
    """One category's counts over the files of a run (or one file)."""

    candidates: int = 0  # past the window, still identifying, not blocked
    kept: Counter = field(default_factory=Counter)
    changed: int = 0
    data_errors: int = 0
    files_changed: int = 0

    def add(self, other: Tally) -> None:
        self.candidates += other.candidates
        self.kept.update(other.kept)
        self.changed += other.changed
        self.data_errors += other.data_errors
        self.files_changed += other.files_changed


def new_result(source: str, rule: BoundRule, mode: str) -> CategoryResult:
    return CategoryResult(
        source=source,
        category=rule.category,
        mode=mode,
        action=rule.action,
        window=rule.rule.window_text,
        cutoff=str(rule.cutoff),
    )


def error_text(messages: Sequence[str], limit: int = 3) -> str | None:
    """The first few problems in one line (the audit keeps 500 characters)."""
    if not messages:
        return None
    head = "; ".join(messages[:limit])
    more = len(messages) - limit
    return head + (f"; and {more} more" if more > 0 else "")
