"""The tunable numbers of data validation, and their checks.

Kept apart from ``validation`` (pandas, Great Expectations) so that
``policy check`` can refuse a bad ``sources.<name>.validation`` section — an
unknown key, a word where a number belongs — with its field path, without
loading the validation machinery, and before any run trusts those numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date


class ValidationConfigError(ValueError):
    """Validation thresholds in the policy are not valid; the message lists every problem."""


@dataclass(frozen=True)
class Thresholds:
    """Every tunable number of the checks, with its default; overridable per source."""

    freshness_days: float = 7.0
    volume_min_ratio: float = 0.5
    volume_max_ratio: float = 2.0
    volume_history_runs: int = 7
    volume_min_history: int = 3
    date_floor: date = date(1900, 1, 1)
    future_slack_days: float = 1.0
    chunk_rows: int = 100_000

    @classmethod
    def problems(cls, options) -> tuple[dict, list[str]]:
        """(parsed values, problems); each problem is ``validation.<key>: why``."""
        if options is None:
            return {}, []
        if not isinstance(options, Mapping):
            return {}, [
                f"validation: expected a mapping of threshold to value (one of "
                f"{', '.join(f.name for f in fields(cls))}), got {type(options).__name__}"
            ]
        known = {f.name: f for f in fields(cls)}
        problems, values = [], {}
        for key, value in options.items():
            f = known.get(key)
            if f is None:
                problems.append(f"validation.{key}: unknown (expected one of {', '.join(known)})")
                continue
            default = f.default
            if isinstance(default, date):
                try:
                    if isinstance(value, date):
                        values[key] = value
                    else:
                        values[key] = date.fromisoformat(str(value))
                except ValueError:
                    problems.append(f"validation.{key}: expected a date YYYY-MM-DD, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"validation.{key}: expected a number, got {value!r}")
            elif value != value or value in (float("inf"), float("-inf")):
                problems.append(f"validation.{key}: expected a finite number, got {value!r}")
            elif isinstance(default, int) and (value != int(value) or value < 1):
                problems.append(f"validation.{key}: expected a whole number >= 1, got {value!r}")
            elif value < 0:
                problems.append(f"validation.{key}: expected a number >= 0, got {value!r}")
            else:
                values[key] = int(value) if isinstance(default, int) else float(value)
        if not problems:
            lo = values.get("volume_min_ratio", cls.volume_min_ratio)
            hi = values.get("volume_max_ratio", cls.volume_max_ratio)
            if lo > hi:
                problems.append("validation: volume_min_ratio is above volume_max_ratio")
        return values, problems

    @classmethod
    def from_options(cls, options: Mapping | None) -> Thresholds:
        """``sources.<name>.validation`` from the policy; every problem is reported."""
        values, problems = cls.problems(options)
        if problems:
            raise ValidationConfigError("; ".join(problems))
        return cls(**values)
