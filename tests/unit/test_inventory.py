"""The personal-data inventory on the Koha schema this project models (SQLite): discovery,
coverage of the shipped policy, a new table showing up as not covered, the CLI, the DAG's
compliance check, and the policy's ``kept_on_purpose`` section."""

from __future__ import annotations

import json

import pytest
import yaml
from patron_privacy import inventory
from patron_privacy.cli import main
from patron_privacy.inventory import (
    COVERED,
    KEPT,
    NOT_COVERED,
    UnclassifiedPersonalData,
    assert_all_classified,
    build_report,
    discover,
)
from patron_privacy.policy import DEFAULT_POLICY, PolicyError, load_policy, parse_policy
from patron_privacy.sources.koha import schema
from patron_privacy.sources.koha.connector import CATEGORIES, INVENTORY
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, Text, create_engine, text

SHIPPED = DEFAULT_POLICY.read_text()
# The tables issue 3 names: each must be covered by a rule or kept on purpose with a reason.
ISSUE_TABLES = {
    "items_last_borrower",
    "borrower_modifications",
    "borrower_debarments",
    "patron_consent",
    "illrequests",
    "illcomments",
    "suggestions",
    "article_requests",
    "bookings",
    "recalls",
    "reviews",
    "tags_all",
    "ratings",
    "linktracker",
    "checkout_renewals",
    "club_enrollments",
    "housebound_visit",
    "return_claims",
    "problem_reports",
    "tickets",
    "messages",
    "patronimage",
    "borrower_files",
    "pseudonymized_transactions",
    "deletedborrowers",
}


@pytest.fixture
def koha_sqlite(home, monkeypatch):
    path = home / "sources" / "koha.db"
    path.parent.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{path}")
    schema.create_schema(engine)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KOHA_DB", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    yield engine
    engine.dispose()


def _add_unmapped_table(engine) -> None:
    md = MetaData()
    Table("borrowers", md, Column("borrowernumber", Integer, primary_key=True))
    Table(
        "patron_secrets",
        md,
        Column("id", Integer, primary_key=True),
        Column("borrowernumber", Integer, ForeignKey("borrowers.borrowernumber")),
        Column("secret_note", Text),
    )
    md.tables["patron_secrets"].create(engine)


def test_discovery_finds_links_and_personal_fields(koha_sqlite):
    places = discover(koha_sqlite, INVENTORY)
    assert places["borrowers"].links[0].kind == "patron key"
    assert places["borrowers"].personal["surname"] == "name"
    assert places["borrowers"].personal["email"] == "email"
    assert places["borrowers"].personal["dateofbirth"] == "birth date"
    assert places["borrowers"].personal["borrowernotes"] == "free text"
    keyless = {(n, x.column) for n, p in places.items() for x in p.links if x.kind == "keyless"}
    assert {
        ("statistics", "borrowernumber"),
        ("search_history", "userid"),
        ("action_logs", "object"),
        ("action_logs", "user"),
        ("deletedborrowers", "borrowernumber"),
        ("pseudonymized_transactions", "hashed_borrowernumber"),
    } <= keyless
    assert {x.column for x in places["suggestions"].links} == {
        "suggestedby",
        "managedby",
        "acceptedby",
        "rejectedby",
        "lastmodificationby",
    }
    # Catalogue and reference tables hold no patron data and are not places.
    for table in ("items", "biblio", "branches", "categories", "itemtypes", "systempreferences"):
        assert table not in places
    assert ISSUE_TABLES <= set(places)


def test_shipped_policy_classifies_every_place_in_the_modelled_schema(koha_sqlite):
    report = build_report("koha", None, bind=koha_sqlite)
    assert report.uncovered == []
    assert report.coverage_pct == 100.0
    status = {c.place.table: c.status for c in report.places}
    assert set(status) == set(discover(koha_sqlite, INVENTORY))
    for table in ISSUE_TABLES:
        assert status[table] in (COVERED, KEPT), table
    assert status["deletedborrowers"] == COVERED
    assert status["pseudonymized_transactions"] == COVERED
    assert status["issues"] == KEPT
    assert report.summary()["not_covered"] == 0
    # Every category of the connector has a rule in the shipped policy.
    assert {r.category for r in load_policy().rules if r.source == "koha"} == set(CATEGORIES)


def test_a_new_table_is_not_covered_and_fails_the_cli(koha_sqlite, capsys):
    _add_unmapped_table(koha_sqlite)
    report = build_report("koha", None, bind=koha_sqlite)
    assert report.uncovered == ["patron_secrets"]
    assert report.coverage_pct < 100.0
    assert main(["inventory", "--source", "koha"]) == 0
    out = capsys.readouterr().out
    assert "patron_secrets" in out and NOT_COVERED in out and "coverage:" in out
    assert main(["inventory", "--source", "koha", "--fail-on-uncovered"]) == 1
    captured = capsys.readouterr()
    assert "patron_secrets" in captured.err
    assert main(["inventory", "--source", "koha", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["uncovered_tables"] == ["patron_secrets"]
    row = next(p for p in data["inventory"] if p["table"] == "patron_secrets")
    assert row["status"] == NOT_COVERED and row["personal"] == {"secret_note": "free text"}


def test_cli_passes_fail_on_uncovered_on_the_modelled_schema(koha_sqlite, capsys):
    assert main(["inventory", "--source", "koha", "--fail-on-uncovered"]) == 0
    assert "(100.0%)" in capsys.readouterr().out


def test_dag_check_raises_a_finding_for_an_unclassified_table(koha_sqlite):
    summary = assert_all_classified("koha")
    assert summary["not_covered"] == 0 and summary["coverage_pct"] == 100.0
    json.dumps(summary)  # XCom-safe
    _add_unmapped_table(koha_sqlite)
    with pytest.raises(UnclassifiedPersonalData, match="patron_secrets") as err:
        assert_all_classified("koha")
    assert err.value.report.uncovered == ["patron_secrets"]


def test_kept_on_purpose_classifies_a_table(koha_sqlite, tmp_path):
    _add_unmapped_table(koha_sqlite)
    data = yaml.safe_load(SHIPPED)
    data["kept_on_purpose"].append(
        {"source": "koha", "table": "patron_secrets", "reason": "Needed for the demo."}
    )
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    report = build_report("koha", str(path), bind=koha_sqlite)
    assert report.uncovered == []
    kept = next(c for c in report.places if c.place.table == "patron_secrets")
    assert kept.status == KEPT and kept.by == ["Needed for the demo."]


def test_kept_tables_missing_from_the_source_are_reported(koha_sqlite):
    # The shipped policy keeps staff-only tables of a full Koha the demo schema lacks.
    report = build_report("koha", None, bind=koha_sqlite)
    assert {"api_keys", "user_permissions", "aqorders"} <= set(report.stale_kept)
    assert "not in this source" in inventory.format_report(report)
    assert report.uncovered == []


def test_output_holds_no_row_values(koha_sqlite, capsys):
    with koha_sqlite.begin() as c:
        c.execute(text("INSERT INTO categories (categorycode, category_type) VALUES ('A', 'A')"))
        c.execute(text("INSERT INTO branches (branchcode, branchname) VALUES ('B', 'Main')"))
        c.execute(
            text(
                "INSERT INTO borrowers (borrowernumber, surname, email, categorycode, branchcode)"
                " VALUES (7, 'Zyxwvutsrq', 'canary-7@example.org', 'A', 'B')"
            )
        )
    for args in (["inventory", "--source", "koha"], ["inventory", "--source", "koha", "--json"]):
        main(args)
        out = capsys.readouterr()
        assert "Zyxwvutsrq" not in out.out + out.err
        assert "canary-7" not in out.out + out.err


def test_column_rules():
    rules = inventory.COLUMN_RULES

    def kind(col: str, linked: bool = True):
        return next(
            (r.kind for r in rules if (linked or not r.needs_link) and r.matches(col)), None
        )

    assert kind("surname") == "name" and kind("altcontactsurname") == "name"
    assert kind("B_email") == "email" and kind("emailpro") == "email"
    assert kind("smsalertnumber") == "phone" and kind("B_phone") == "phone"
    assert kind("zipcode") == "address" and kind("altcontactaddress1") == "address"
    assert kind("dateofbirth") == "birth date"
    assert kind("reservenotes") == "free text" and kind("notesopac") == "free text"
    assert kind("notes", linked=False) is None  # a catalogue note is not personal
    assert kind("branchname") is None and kind("branchemail") is None
    assert kind("name") is None and kind("biblionumber") is None


# --- the policy's kept_on_purpose section -----------------------------------------------------


def _with_kept(entries) -> str:
    data = yaml.safe_load(SHIPPED)
    data["kept_on_purpose"] = entries
    return yaml.safe_dump(data)


def test_shipped_policy_keeps_some_tables_on_purpose_with_reasons():
    pol = load_policy()
    kept = {(k.source, k.table): k.reason for k in pol.kept_on_purpose}
    assert ("koha", "issues") in kept and ("koha", "tmp_holdsqueue") in kept
    assert all(len(r) > 40 for r in kept.values())


def test_no_table_is_both_covered_by_a_rule_and_kept_on_purpose():
    """A table a rule acts on is covered; naming it as kept too would contradict the rule."""
    pol = load_policy()
    for source in {k.source for k in pol.kept_on_purpose}:
        kept = {k.table for k in pol.kept_on_purpose if k.source == source}
        assert not kept & set(inventory.rule_tables(pol, source)), source


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ("nope", "kept_on_purpose: expected a list"),
        (["x"], "kept_on_purpose[0]: expected a mapping"),
        ([{"source": "nosuch", "table": "t", "reason": "r"}], "kept_on_purpose[0].source"),
        ([{"source": "koha", "table": "", "reason": "r"}], "kept_on_purpose[0].table"),
        ([{"source": "koha", "table": "a b", "reason": "r"}], "kept_on_purpose[0].table"),
        ([{"source": "koha", "table": "t"}], "kept_on_purpose[0].reason: required"),
        ([{"source": "koha", "table": "t", "reason": "  "}], "kept_on_purpose[0].reason"),
        (
            [{"source": "koha", "table": "t", "reason": "r", "until": "2030"}],
            "kept_on_purpose[0].until: unknown field",
        ),
        (
            [
                {"source": "koha", "table": "t", "reason": "r"},
                {"source": "koha", "table": "t", "reason": "again"},
            ],
            "kept_on_purpose[1].table: t is already kept on purpose (kept_on_purpose[0])",
        ),
    ],
)
def test_kept_on_purpose_errors_name_the_field(entries, expected):
    with pytest.raises(PolicyError) as err:
        parse_policy(_with_kept(entries), "p.yaml")
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_kept_on_purpose_reports_every_error_at_once():
    with pytest.raises(PolicyError) as err:
        parse_policy(
            _with_kept([{"source": "x", "table": "t"}, {"source": "koha", "table": "1bad"}]),
            "p.yaml",
        )
    paths = [p.split(":")[0] for p in err.value.problems]
    assert "kept_on_purpose[0].source" in paths
    assert "kept_on_purpose[0].reason" in paths
    assert "kept_on_purpose[1].table" in paths
    assert "kept_on_purpose[1].reason" in paths


def test_schedule_table_lists_tables_kept_on_purpose():
    from patron_privacy.policy import schedule_table

    text_ = schedule_table(load_policy())
    assert "Kept on purpose" in text_ and "koha.tmp_holdsqueue" in text_


# --- sources with no schema: covered by their connectors ---------------------------------------


@pytest.mark.parametrize("source", ["signups", "programs", "squid", "libcal"])
def test_sources_without_a_schema_list_the_rules_that_cover_them(source, capsys):
    assert main(["inventory", "--source", source, "--fail-on-uncovered"]) == 0
    out = capsys.readouterr().out
    assert "covered by its connector" in out
    rules = [r for r in load_policy().rules if r.source == source]
    assert rules and all(r.category in out for r in rules)
    assert main(["inventory", "--source", source, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] is False and data["not_covered"] == 0
    assert {r["category"] for r in data["rules"]} == {r.category for r in rules}


def test_a_source_without_a_schema_and_without_rules_fails(tmp_path, capsys):
    data = yaml.safe_load(SHIPPED)
    data["rules"] = [r for r in data["rules"] if r["source"] != "squid"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    args = ["inventory", "--source", "squid", "--policy", str(path), "--fail-on-uncovered"]
    assert main(args) == 1
    assert "no rule covers source squid" in capsys.readouterr().err


def test_a_rule_covers_every_table_its_statements_delete_from():
    """Evergreen's patron purge deletes cards, addresses and settings with the patron."""
    tables = inventory.rule_tables(load_policy(), "evergreen")
    for table in ("actor.usr", "actor.card", "actor.usr_address", "actor.usr_setting"):
        assert tables[table] == ["expired_patrons"], table
    # An archive a rule inserts into is not a table the rule retains.
    assert "action.aged_circulation" not in tables
