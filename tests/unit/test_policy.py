"""The policy file: the shipped one loads, and every kind of mistake is refused with
the field path, all of them in one pass."""

from __future__ import annotations

import pytest
import yaml
from patron_privacy.cli import main
from patron_privacy.policy import (
    DEFAULT_POLICY,
    PolicyError,
    load_policy,
    parse_policy,
    schedule_table,
)

SHIPPED = DEFAULT_POLICY.read_text()


def test_shipped_policy_covers_every_koha_category_from_the_foundation():
    pol = load_policy()
    # Later issues add rules (the rest of Koha, other sources); the foundation's stay as set.
    got = {(r.category, r.window.text, r.action) for r in pol.rules if r.source == "koha"}
    assert got >= {
        ("returned_loans", "P30D", "anonymize"),
        ("hold_history", "P30D", "anonymize"),
        ("settled_fines", "P1Y", "anonymize"),
        ("circulation_statistics", "P1D", "anonymize"),
        ("opac_search_history", "P1D", "delete"),
        ("notices", "P30D", "delete"),
        ("patron_action_logs", "P180D", "delete"),
        ("expired_patrons", "P3Y", "anonymize"),
    }
    assert all(r.blockers[0] == "legal_hold" for r in pol.rules)
    assert all(r.why and r.basis for r in pol.rules)


def _mutate(fn) -> str:
    data = yaml.safe_load(SHIPPED)
    fn(data)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["rules"][0].update(category="loans_ever"),
            "rules[0].category: unknown category",
        ),
        (lambda d: d["rules"][1].update(action="shred"), "rules[1].action: unknown action 'shred'"),
        (
            lambda d: d["rules"][2].update(window="thirty days"),
            "rules[2].window: expected an ISO 8601",
        ),
        (lambda d: d["rules"][3].update(window="P"), "rules[3].window"),
        (
            lambda d: d["rules"][0].update(blockers=["moon_phase"]),
            "rules[0].blockers[0]: unknown blocker",
        ),
        (
            lambda d: d["rules"][4].update(action="anonymize"),
            "rules[4].action: 'anonymize' is not possible",
        ),
        (lambda d: d["rules"][0].update(action="strip"), "rules[0].fields: action strip needs"),
        (lambda d: d["rules"][0].pop("why"), "rules[0].why: required"),
        (lambda d: d["rules"][0].update(source="folio"), "rules[0].source: unknown source"),
        (lambda d: d["library"].update(timezone="Mars/Olympus"), "library.timezone"),
        (lambda d: d["sources"]["koha"].update(batch_size=0), "sources.koha.batch_size"),
        (lambda d: d["sources"]["koha"].update(workers=0), "sources.koha.workers"),
        (lambda d: d["sources"]["koha"].update(workers=17), "sources.koha.workers"),
        (lambda d: d["sources"]["evergreen"].update(workers="4"), "sources.evergreen.workers"),
        (lambda d: d["sources"]["evergreen"].update(workers=True), "sources.evergreen.workers"),
        (lambda d: d["rules"].append(dict(d["rules"][0])), "already has a rule"),
    ],
)
def test_bad_policy_is_refused_with_the_field_path(mutate, expected):
    with pytest.raises(PolicyError) as err:
        parse_policy(_mutate(mutate), "bad.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("bad.yaml: ")


def test_every_error_is_reported_at_once():
    def many(d):
        d["rules"][0]["window"] = "soon"
        d["rules"][1]["action"] = "burn"
        d["rules"][2]["category"] = "nope"

    with pytest.raises(PolicyError) as err:
        parse_policy(_mutate(many), "bad.yaml")
    assert len(err.value.problems) == 3


def test_strip_with_fields_is_accepted():
    text = _mutate(lambda d: d["rules"][0].update(action="strip", fields=["note"]))
    rule = parse_policy(text).rules[0]
    assert (rule.action, rule.fields) == ("strip", ("note",))


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(PolicyError) as err:
        parse_policy("library:\n  name: [unclosed\n", "x.yaml")
    assert "line" in str(err.value)


def test_version_changes_with_content():
    a = parse_policy(SHIPPED).version
    b = parse_policy(_mutate(lambda d: d["rules"][0].update(window="P31D"))).version
    assert a != b


def test_schedule_table_names_every_rule():
    text = schedule_table(load_policy())
    for words in ("Returned loans", "30 days", "3 years", "OPAC search history", "legal hold"):
        assert words in text


def test_cli_policy_check_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(SHIPPED)
    assert main(["policy", "check", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(_mutate(lambda d: d["rules"][0].update(window="forever", action="x")))
    assert main(["policy", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "rules[0].window" in err and "rules[0].action" in err


def test_cli_policy_check_missing_file(tmp_path, capsys):
    assert main(["policy", "check", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_help_on_each_command(capsys):
    for argv in (
        ["--help"],
        ["enforce", "--help"],
        ["verify", "--help"],
        ["policy", "show", "--help"],
        ["policy", "check", "--help"],
        ["demo-data", "--help"],
        ["bench", "--help"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "--dry-run" in capsys.readouterr().out
