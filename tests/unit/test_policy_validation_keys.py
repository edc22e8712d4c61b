"""``sources.<name>.validation`` in the policy: thresholds a run trusts, so a typo or a
bad value must stop ``policy check`` with its field path, not leave a default in force."""

from __future__ import annotations

import pytest
import yaml
from patron_privacy.cli import main
from patron_privacy.policy import DEFAULT_POLICY, PolicyError, load_policy, parse_policy
from patron_privacy.sources import SOURCES
from patron_privacy.thresholds import Thresholds

SHIPPED = DEFAULT_POLICY.read_text()


def _with_validation(source: str, section) -> str:
    data = yaml.safe_load(SHIPPED)
    data.setdefault("sources", {}).setdefault(source, {})
    data["sources"][source] = {**(data["sources"][source] or {}), "validation": section}
    return yaml.safe_dump(data)


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, "p.yaml")
    return exc.value.problems


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_source_accepts_good_thresholds(source):
    pol = parse_policy(
        _with_validation(
            source, {"freshness_days": 2, "volume_max_ratio": 3.5, "date_floor": "1950-01-01"}
        )
    )
    t = Thresholds.from_options(pol.options(source)["validation"])
    assert (t.freshness_days, t.volume_max_ratio, str(t.date_floor)) == (2.0, 3.5, "1950-01-01")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"freshnes_days": 3}, "sources.libki.validation.freshnes_days: unknown"),
        (
            {"volume_max_ratio": "lots"},
            "sources.libki.validation.volume_max_ratio: expected a number",
        ),
        (
            {"volume_history_runs": 2.5},
            "sources.libki.validation.volume_history_runs: expected a whole",
        ),
        ({"chunk_rows": 0}, "sources.libki.validation.chunk_rows: expected a whole number >= 1"),
        ({"freshness_days": -1}, "sources.libki.validation.freshness_days: expected a number >= 0"),
        ({"freshness_days": True}, "sources.libki.validation.freshness_days: expected a number"),
        (
            {"freshness_days": float("nan")},
            "sources.libki.validation.freshness_days: expected a finite",
        ),
        ({"date_floor": "long ago"}, "sources.libki.validation.date_floor: expected a date"),
        ({"volume_min_ratio": 3, "volume_max_ratio": 2}, "volume_min_ratio is above"),
        (7, "sources.libki.validation: expected a mapping"),
        (["freshness_days"], "sources.libki.validation: expected a mapping"),
    ],
)
def test_bad_thresholds_are_refused_with_the_field_path(section, expected):
    problems = _problems(_with_validation("libki", section))
    assert any(expected in p for p in problems), problems


def test_every_bad_key_is_reported_at_once_across_sources():
    data = yaml.safe_load(_with_validation("squid", {"freshness_days": "x", "nope": 1}))
    data["sources"]["libcal"] = {"validation": {"chunk_rows": -5}}
    problems = _problems(yaml.safe_dump(data))
    joined = "\n".join(problems)
    assert "sources.squid.validation.freshness_days" in joined
    assert "sources.squid.validation.nope: unknown" in joined
    assert "sources.libcal.validation.chunk_rows" in joined


def test_a_source_whose_options_are_not_a_mapping_is_refused():
    data = yaml.safe_load(SHIPPED)
    data["sources"]["libki"] = ["batch_size", 10]
    assert "sources.libki: expected a mapping of options" in _problems(yaml.safe_dump(data))


def test_cli_policy_check_refuses_bad_validation_keys(tmp_path, capsys):
    bad = tmp_path / "policy.yaml"
    bad.write_text(_with_validation("signups", {"freshness_dayz": 3}))
    assert main(["policy", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sources.signups.validation.freshness_dayz: unknown" in err

    good = tmp_path / "good.yaml"
    good.write_text(_with_validation("signups", {"freshness_days": 3}))
    assert main(["policy", "check", str(good)]) == 0


def test_shipped_policy_thresholds_parse():
    pol = load_policy()
    for source in pol.sources:
        Thresholds.from_options(pol.options(source).get("validation"))
