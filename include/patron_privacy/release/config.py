"""Disclosure control settings: ``include/config/disclosure.yaml``, validated in full.

One file says how small a published count may be, whether counts are noised
instead (differential privacy, with a yearly budget), where releases go and
how the state report's definitions map onto the library's codes. Every
problem is reported with its field path before anything is computed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from patron_privacy import connections

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "disclosure.yaml"
THRESHOLD_RANGE = (2, 1000)
EPSILON_RANGE = (0.001, 10.0)


class DisclosureConfigError(ValueError):
    """Every problem found, one per line, each with its field path."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


@dataclass(frozen=True)
class DisclosureConfig:
    path: str
    version: str
    preset: str
    threshold: int  # the smallest count that may be shown
    dp_enabled: bool
    epsilon: float
    annual_budget: float
    max_loans_per_patron: int
    base_dir: Path
    children_collections: tuple[str, ...]
    children_item_types: tuple[str, ...]

    @property
    def suppressed_range(self) -> tuple[int, int]:
        return (1, self.threshold - 1)

    @property
    def mode(self) -> str:
        return "differential_privacy" if self.dp_enabled else "suppression"

    def rule_text(self) -> str:
        lo, hi = self.suppressed_range
        return (
            f"counts from {lo} to {hi} are suppressed, with complementary cells; "
            f"zero is shown; the smallest count shown is {self.threshold}"
        )


def check_threshold(value, where: str = "suppression.threshold") -> list[str]:
    lo, hi = THRESHOLD_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return [
            f"{where}: expected a whole number from {lo} to {hi} (the smallest count that "
            f"may be shown), got {value!r}"
        ]
    return []


def check_epsilon(value, where: str = "differential_privacy.epsilon") -> list[str]:
    lo, hi = EPSILON_RANGE
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and lo <= value <= hi
    )
    if not ok:
        return [f"{where}: expected a number from {lo} to {hi}, got {value!r}"]
    return []


def _codes(raw, where: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        problems.append(f"{where}: expected a list of codes, got {raw!r}")
        return ()
    return tuple(raw)


def parse_config(text: str, path: str = "<disclosure>") -> DisclosureConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DisclosureConfigError(path, [f"not valid YAML ({exc})"]) from None
    if not isinstance(data, dict):
        raise DisclosureConfigError(path, ["expected a mapping at the top level"])
    problems: list[str] = []
    known = {"suppression", "presets", "differential_privacy", "exports", "definitions"}
    problems += [f"{k}: unknown section" for k in sorted(set(data) - known)]

    presets = data.get("presets") or {"default": {"threshold": 5}, "strict": {"threshold": 11}}
    if not isinstance(presets, dict):
        problems.append("presets: expected a mapping of name to {threshold: N}")
        presets = {}
    for name, p in presets.items():
        if not isinstance(p, dict) or "threshold" not in p:
            problems.append(f"presets.{name}: expected {{threshold: N}}")
        else:
            problems += check_threshold(p["threshold"], f"presets.{name}.threshold")

    sup = data.get("suppression") or {}
    preset = sup.get("preset", "default")
    threshold = sup.get("threshold")
    if threshold is None:
        if preset not in presets:
            problems.append(
                f"suppression.preset: unknown preset {preset!r} "
                f"(expected one of {', '.join(sorted(presets))})"
            )
        else:
            threshold = (presets[preset] or {}).get("threshold")
    else:
        problems += check_threshold(threshold)
        preset = "custom"

    dp = data.get("differential_privacy") or {}
    enabled = dp.get("enabled", False)
    if not isinstance(enabled, bool):
        problems.append(f"differential_privacy.enabled: expected true or false, got {enabled!r}")
    epsilon = dp.get("epsilon", 1.0)
    problems += check_epsilon(epsilon)
    budget = dp.get("annual_budget", 13.0)
    budget_ok = (
        isinstance(budget, int | float)
        and not isinstance(budget, bool)
        and math.isfinite(budget)
        and 0 < budget <= 1000
    )
    if not budget_ok:
        problems.append(
            f"differential_privacy.annual_budget: expected a number above 0 and at most 1000, "
            f"got {budget!r}"
        )
    if not problems and budget < epsilon:
        problems.append("differential_privacy.annual_budget: smaller than one release's epsilon")
    cap = dp.get("max_loans_per_patron", 20)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 10_000:
        problems.append(
            f"differential_privacy.max_loans_per_patron: expected a whole number from 1 to "
            f"10000, got {cap!r}"
        )

    exports = data.get("exports") or {}
    base = exports.get("base_dir")
    if base is not None and not isinstance(base, str):
        problems.append(f"exports.base_dir: expected a path or null, got {base!r}")
    defs = data.get("definitions") or {}
    kids_ccodes = _codes(
        defs.get("children_collections"), "definitions.children_collections", problems
    )
    kids_types = _codes(
        defs.get("children_item_types"), "definitions.children_item_types", problems
    )

    if problems:
        raise DisclosureConfigError(path, problems)
    base_dir = Path(base) if base else connections.local_home() / "exports"
    if not base_dir.is_absolute():
        base_dir = (Path(path).parent / base_dir).resolve() if path != "<disclosure>" else base_dir
    return DisclosureConfig(
        path=path,
        version=hashlib.sha256(text.encode()).hexdigest()[:16],
        preset=preset,
        threshold=int(threshold),
        dp_enabled=bool(enabled),
        epsilon=float(epsilon),
        annual_budget=float(budget),
        max_loans_per_patron=int(cap),
        base_dir=base_dir,
        children_collections=kids_ccodes,
        children_item_types=kids_types,
    )


def load_config(path: str | Path | None = None) -> DisclosureConfig:
    p = Path(path) if path else DEFAULT_CONFIG
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DisclosureConfigError(str(p), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(p))


def with_overrides(
    cfg: DisclosureConfig,
    *,
    preset: str | None = None,
    threshold=None,
    epsilon=None,
    dp: bool | None = None,
    base_dir: str | Path | None = None,
) -> DisclosureConfig:
    """Command-line overrides, validated by the same rules as the file."""
    problems: list[str] = []
    changes: dict = {}
    if preset is not None:
        table = {"default": 5, "strict": 11}
        if preset not in table:
            problems.append(f"--preset: unknown preset {preset!r} (expected default or strict)")
        else:
            changes.update(preset=preset, threshold=table[preset])
    if threshold is not None:
        bad = check_threshold(threshold, "--threshold")
        problems += bad
        if not bad:
            changes.update(preset="custom", threshold=threshold)
    if epsilon is not None:
        bad = check_epsilon(epsilon, "--epsilon")
        problems += bad
        if not bad:
            changes.update(epsilon=float(epsilon), dp_enabled=True)
    if dp is not None:
        changes["dp_enabled"] = dp or changes.get("dp_enabled", False)
    if base_dir is not None:
        changes["base_dir"] = Path(base_dir).resolve()
    if problems:
        raise DisclosureConfigError("command line", problems)
    out = replace(cfg, **changes)
    if out.dp_enabled and out.annual_budget < out.epsilon:
        raise DisclosureConfigError(
            "command line",
            [f"--epsilon: {out.epsilon} exceeds the annual budget {out.annual_budget}"],
        )
    return out
