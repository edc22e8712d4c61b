"""Alerts delivered for real: to an SMTP server (aiosmtpd) and an HTTP endpoint started by
the test on 127.0.0.1, then read back. Through the plain smtplib path (the CLI) and
through Airflow's SmtpNotifier (the DAG callback)."""

from __future__ import annotations

import json
import logging
import os
from datetime import timedelta

import pytest
from alert_servers import RECIPIENTS, SENDER, FakeTI, body_text, smtp_inbox, webhook_server
from file_source_builders import AS_OF, SIGNUP_HEADER, file_home, policy_text, signup_row, write_csv
from koha_validation_builders import AS_OF_TEXT, drop_new_log_handlers, koha_for_cli, raw_sql
from patron_privacy import alerts
from patron_privacy.cli import main

REPORT = {
    "source": "koha",
    "run_id": "scheduled__2026-11-30T07:30:00+00:00",
    "as_of": "2026-11-30T00:00:00",
    "passed": False,
    "checks": 156,
    "failed": [
        {
            "dataset": "old_issues",
            "check": "expect_column_values_to_be_in_set",
            "column": "branchcode",
            "element_count": 1200,
            "unexpected_count": 3,
            "error": None,
        },
        {
            "dataset": "statistics",
            "check": "expect_column_max_to_be_between",
            "column": "datetime",
            "element_count": 5000,
            "unexpected_count": 1,
            "error": None,
        },
    ],
    "rows": {"old_issues": 1200, "statistics": 5000},
    "duration_s": 1.5,
}
VERIFICATION = [
    {"source": "koha", "category": "returned_loans", "remaining": 4, "data_errors": 1},
    {"source": "koha", "category": "notices", "remaining": 0, "data_errors": 0},
]
SET_ASIDE = [
    {
        "source": "signups",
        "category": "signup_identities",
        "remaining": 0,
        "data_errors": 1,
        "error": "pc-signups-2026-11-27.csv line 3: a cell starts a formula; left unchanged",
    },
    {
        "source": "signups",
        "category": "signup_records",
        "remaining": 0,
        "data_errors": 1,
        "error": "pc-signups-2026-11-27.csv line 3: a cell starts a formula; left unchanged",
    },
    {"source": "signups", "category": "other", "remaining": 0, "data_errors": 0, "error": None},
]


@pytest.fixture(autouse=True)
def log_handlers_of_this_test_only():
    before = list(logging.root.handlers)
    yield
    drop_new_log_handlers(before)


@pytest.fixture
def smtp(monkeypatch):
    with smtp_inbox(monkeypatch) as inbox:
        yield inbox


@pytest.fixture
def webhook(monkeypatch):
    with webhook_server(monkeypatch) as received:
        yield received


def test_validation_alert_says_what_failed_and_where_to_look():
    alert = alerts.validation_alert(REPORT, dag_id="koha_nightly_retention")
    assert alert.subject.startswith("[patron-privacy] koha: data validation failed, 2 checks")
    assert REPORT["run_id"] in alert.subject
    body = alert.body
    assert "nothing was enforced on koha" in body
    assert (
        "koha.old_issues.branchcode: expect_column_values_to_be_in_set "
        "(values outside the known set): 3 of 1200 rows" in body
    )
    assert "koha.statistics.datetime: expect_column_max_to_be_between" in body
    assert "Rows per dataset: old_issues=1200, statistics=5000" in body
    assert "python -m patron_privacy validate --source koha --as-of 2026-11-30" in body
    assert f"WHERE run_id = '{REPORT['run_id']}'" in body
    assert "DAG koha_nightly_retention" in body and "task validate_source_data" in body


def test_compliance_alert_only_when_something_remains():
    assert alerts.compliance_alert("koha", [VERIFICATION[1]], run_id="r") is None
    alert = alerts.compliance_alert("koha", VERIFICATION, run_id="r1", as_of="2026-11-30")
    assert "4 record(s) past window" in alert.subject
    assert "koha.returned_loans: remaining=4, data_errors=1" in alert.body
    assert "notices" not in alert.body
    assert "python -m patron_privacy verify --source koha --as-of 2026-11-30" in alert.body


def test_set_aside_alert_names_each_problem_once_and_says_the_rest_was_done():
    assert alerts.set_aside_alert("signups", [SET_ASIDE[2]], run_id="r") is None
    alert = alerts.set_aside_alert("signups", SET_ASIDE, run_id="r2", as_of="2026-11-30")
    assert alert.kind == "set_aside"
    assert alert.subject == (
        "[patron-privacy] signups: input set aside, 1 problem(s) — the rest was done (run r2)"
    )
    assert alert.body.count("pc-signups-2026-11-27.csv line 3") == 1
    assert "left exactly as it is, and the rest of the run was done" in alert.body
    assert "python -m patron_privacy verify --source signups --as-of 2026-11-30" in alert.body
    many = [{**SET_ASIDE[0], "error": f"f{i}.csv line 2: unreadable"} for i in range(25)]
    body = alerts.set_aside_alert("signups", many, run_id="r3").body
    assert "f19.csv line 2" in body and "f20.csv" not in body
    assert "and 5 more (the audit rows and the task log name them all)" in body


def test_compliance_alert_also_names_input_set_aside():
    both = [{**SET_ASIDE[0], "remaining": 2}, SET_ASIDE[1]]
    alert = alerts.compliance_alert("signups", both, run_id="r4")
    assert "compliance findings, 2 record(s)" in alert.subject
    assert "Also set aside, left as it is:" in alert.body
    assert "pc-signups-2026-11-27.csv line 3" in alert.body
    assert "Also set aside" not in alerts.compliance_alert("koha", VERIFICATION, run_id="r").body


def test_send_delivers_email_and_webhook(smtp, webhook):
    alert = alerts.validation_alert(REPORT)
    outcome = alerts.send(alert)
    assert outcome == {"email": 2, "webhook": True, "errors": []}
    [(rcpt, msg)] = smtp.messages()
    assert sorted(rcpt) == sorted(RECIPIENTS)
    assert msg["Subject"] == alert.subject
    assert msg["From"] == SENDER
    assert body_text(msg).strip() == alert.body.strip()
    [(path, payload)] = webhook
    assert path == "/notify/apprise"
    assert payload == {"title": alert.subject, "body": alert.body, "type": "failure"}


def test_webhook_is_optional_and_slack_is_a_format(monkeypatch, webhook):
    alert = alerts.validation_alert(REPORT)
    url = json.loads(os.environ["AIRFLOW_CONN_ALERTS_WEBHOOK"])["extra"]["url"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTS_WEBHOOK",
        json.dumps({"conn_type": "http", "extra": {"url": url, "format": "slack"}}),
    )
    assert alerts.post_webhook(alert) is True
    assert webhook[-1][1]["text"].startswith(f"*{alert.subject}*")
    monkeypatch.delenv("AIRFLOW_CONN_ALERTS_WEBHOOK")
    assert alerts.post_webhook(alert) is False


def test_no_recipients_is_reported_not_raised(smtp, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_SMTP_DEFAULT"])
    del conn["extra"]["alert_to"]
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    outcome = alerts.send(alerts.validation_alert(REPORT))
    assert outcome["email"] is None and "alert_to" in outcome["errors"][0]
    assert smtp.messages() == []


def test_airflow_smtp_notifier_delivers_the_validation_alert(smtp, webhook):
    notifier = alerts.failure_notifier("koha")
    ti = FakeTI("validate_source_data", {"validation": REPORT})
    notifier({"ti": ti, "task_instance": ti, "run_id": REPORT["run_id"]})
    [(rcpt, msg)] = smtp.messages()
    assert sorted(rcpt) == sorted(RECIPIENTS)
    assert msg["Subject"].startswith("[patron-privacy] koha: data validation failed")
    body = body_text(msg)
    assert body.startswith("<pre>")
    assert "koha.old_issues.branchcode: expect_column_values_to_be_in_set" in body
    assert "task validate_source_data" in body
    assert webhook and webhook[0][1]["title"] == msg["Subject"]


def test_airflow_smtp_notifier_delivers_compliance_findings(smtp):
    notifier = alerts.failure_notifier("koha")
    ti = FakeTI("verify_nothing_past_its_window_identifies", {"verification": VERIFICATION})
    notifier({"ti": ti, "run_id": "scheduled__x", "params": {"as_of": "2026-11-30"}})
    [(_, msg)] = smtp.messages()
    assert "compliance findings, 4 record(s)" in msg["Subject"]
    assert "koha.returned_loans: remaining=4" in body_text(msg)


def test_airflow_smtp_notifier_delivers_input_set_aside(smtp, webhook):
    notifier = alerts.failure_notifier("signups")
    ti = FakeTI("verify_nothing_past_its_window_identifies", {"verification": SET_ASIDE})
    notifier({"ti": ti, "run_id": "scheduled__z", "data_interval_end": "2026-11-30T05:00:00"})
    [(_, msg)] = smtp.messages()
    assert msg["Subject"].startswith("[patron-privacy] signups: input set aside, 1 problem(s)")
    body = body_text(msg)
    assert "pc-signups-2026-11-27.csv line 3" in body
    assert "--source signups --as-of 2026-11-30" in body
    assert webhook[0][1]["type"] == "failure"


def test_a_dry_run_with_input_set_aside_gets_the_set_aside_alert_not_findings(smtp):
    """A dry run leaves everything past its window as it is: the DAG's alert says what
    was set aside, as the command line's dry run does, and reports no findings."""
    notifier = alerts.failure_notifier("signups")
    dry = [{**SET_ASIDE[0], "remaining": 7}, SET_ASIDE[1]]
    ti = FakeTI("verify_nothing_past_its_window_identifies", {"verification": dry})
    notifier({"ti": ti, "run_id": "manual__d", "params": {"as_of": "2026-11-30", "dry_run": True}})
    notifier({"ti": ti, "run_id": "manual__e", "params": {"as_of": "2026-11-30", "dry_run": False}})
    [(_, first), (_, second)] = smtp.messages()
    assert first["Subject"].startswith("[patron-privacy] signups: input set aside, 1 problem(s)")
    assert "compliance findings" not in body_text(first).lower()
    # The same counts from an enforcing run are findings.
    assert "compliance findings, 7 record(s)" in second["Subject"]


def test_airflow_smtp_notifier_when_the_task_failed_before_any_result(smtp):
    notifier = alerts.failure_notifier("koha")
    notifier({"ti": FakeTI("validate_source_data", {}), "run_id": "scheduled__y"})
    [(_, msg)] = smtp.messages()
    assert msg["Subject"] == "[patron-privacy] koha: validate_source_data failed (run scheduled__y)"


def test_cli_validate_alerts_on_failure(tmp_path, home, monkeypatch, smtp, webhook, capsys):
    db = koha_for_cli(tmp_path, home, monkeypatch)
    raw_sql(db, "UPDATE old_issues SET branchcode = 'ZQXB' WHERE issue_id = 2")
    assert main(["validate", "--source", "koha", "--as-of", AS_OF_TEXT, "--alert"]) == 1
    err = capsys.readouterr().err
    assert "alert emailed to 2 recipient(s)" in err
    [(_, msg)] = smtp.messages()
    body = body_text(msg)
    assert "koha.old_issues.branchcode: expect_column_values_to_be_in_set" in body
    assert "1 of 4 rows" in body
    assert "ZQXB" not in body and "ZQXB" not in msg["Subject"]
    assert webhook


def test_cli_verify_alerts_on_compliance_findings(tmp_path, home, monkeypatch, smtp, capsys):
    koha_for_cli(tmp_path, home, monkeypatch)  # loan 1 is past its window, not yet enforced
    assert main(["verify", "--source", "koha", "--as-of", AS_OF_TEXT, "--alert"]) == 1
    [(_, msg)] = smtp.messages()
    assert "compliance findings" in msg["Subject"]
    assert "koha.returned_loans: remaining=1" in body_text(msg)
    # A refused enforcement alerts too: validation first.
    raw_sql(tmp_path / "koha.db", "UPDATE borrowers SET privacy = 9 WHERE borrowernumber = 10")
    assert main(["enforce", "--source", "koha", "--as-of", AS_OF_TEXT, "--alert"]) == 1
    assert "borrowers.privacy" in body_text(smtp.messages()[-1][1])


def test_cli_enforce_alerts_on_input_set_aside(tmp_path, monkeypatch, smtp, webhook, capsys):
    """A file source's unreadable line is named in the alert, never its values; the good
    file is still enforced."""
    root = tmp_path / "src"
    for sub in ("signups", "programs", "squid"):
        (root / sub).mkdir(parents=True)
    canary = "Zqxcanaryalertname"
    write_csv(root / "signups/good.csv", SIGNUP_HEADER, [
        signup_row(1, "29990101", "A Person", AS_OF - timedelta(days=2)),
    ])  # fmt: skip
    write_csv(root / "signups/formula.csv", SIGNUP_HEADER, [
        ["2", "29990102", f'=HYPERLINK("http://x","{canary}")', "MAIN-PC01", "MAIN",
         "2026-11-28 10:00", "2026-11-28 10:30"],
    ])  # fmt: skip
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy_text(root), encoding="utf-8")
    args = ["--source", "signups", "--as-of", "2026-11-30", "--policy", str(pol), "--alert"]
    with file_home(tmp_path / "home"):
        assert main(["enforce", *args]) == 1
    err = capsys.readouterr().err
    assert "alert emailed to 2 recipient(s)" in err
    [(_, msg)] = smtp.messages()
    assert msg["Subject"].startswith("[patron-privacy] signups: input set aside")
    body = body_text(msg)
    assert "formula.csv line 2" in body
    assert "good.csv" not in body
    for value in (canary, "29990102", "29990101", "A Person", "HYPERLINK"):
        assert value not in body and value not in msg["Subject"]
        assert value not in json.dumps(webhook)
    assert "29990101" not in (root / "signups/good.csv").read_text()  # the rest was done
