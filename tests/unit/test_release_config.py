"""Disclosure settings: the shipped file, presets, every problem reported with its path."""

from __future__ import annotations

import pytest
from patron_privacy.release.config import (
    DEFAULT_CONFIG,
    DisclosureConfigError,
    load_config,
    parse_config,
    with_overrides,
)
from patron_privacy.release.tables import ReleaseInputError, month_period, previous_month


def test_the_shipped_file_is_the_default_preset(home):
    cfg = load_config()
    assert cfg.path == str(DEFAULT_CONFIG)
    assert cfg.threshold == 5 and cfg.preset == "default"
    assert cfg.suppressed_range == (1, 4)
    assert cfg.dp_enabled is False and cfg.mode == "suppression"
    assert cfg.base_dir == home / "exports"
    assert "JUV" in cfg.children_collections


def test_presets_and_an_explicit_threshold():
    assert parse_config("suppression: {preset: strict}").threshold == 11
    custom = parse_config("suppression: {threshold: 7}")
    assert custom.threshold == 7 and custom.preset == "custom"
    assert with_overrides(custom, preset="strict").threshold == 11
    assert with_overrides(custom, threshold=3).suppressed_range == (1, 2)


def test_every_problem_is_listed_with_its_field_path():
    text = """
suppression: {preset: lax}
differential_privacy: {enabled: maybe, epsilon: -1, annual_budget: 0, max_loans_per_patron: 0}
exports: {base_dir: 5}
definitions: {children_collections: JUV}
surprise: {}
"""
    with pytest.raises(DisclosureConfigError) as exc:
        parse_config(text, "d.yaml")
    msg = str(exc.value)
    for path in (
        "suppression.preset",
        "differential_privacy.enabled",
        "differential_privacy.epsilon",
        "differential_privacy.annual_budget",
        "differential_privacy.max_loans_per_patron",
        "exports.base_dir",
        "definitions.children_collections",
        "surprise: unknown section",
    ):
        assert path in msg
    assert all(line.startswith("d.yaml: ") for line in msg.splitlines())


@pytest.mark.parametrize("bad", [0, 1, -5, 1001, 2.5, "5", True, None])
def test_invalid_thresholds_are_refused(bad):
    if bad is None:
        return
    with pytest.raises(DisclosureConfigError, match="--threshold"):
        with_overrides(parse_config(""), threshold=bad)


@pytest.mark.parametrize("bad", [0, -0.1, float("inf"), float("nan"), 10.5, "one"])
def test_invalid_epsilons_are_refused(bad):
    with pytest.raises(DisclosureConfigError, match="--epsilon"):
        with_overrides(parse_config(""), epsilon=bad)


def test_epsilon_beyond_the_yearly_budget_is_refused():
    cfg = parse_config("differential_privacy: {annual_budget: 2}")
    with pytest.raises(DisclosureConfigError, match="exceeds the annual budget"):
        with_overrides(cfg, epsilon=3)
    assert with_overrides(cfg, epsilon=1.5).dp_enabled


def test_periods():
    assert month_period("2026-10").end.isoformat() == "2026-11-01"
    assert month_period("2026-12").end.isoformat() == "2027-01-01"
    assert previous_month(month_period("2026-01").start).label == "2025-12"
    for bad in ("2026-00", "2026-13", "26-10", "2026/10", "", "1899-01"):
        with pytest.raises(ReleaseInputError):
            month_period(bad)
