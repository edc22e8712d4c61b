"""Alerts delivered for real: to an SMTP server (aiosmtpd) and an HTTP endpoint started by
the test on 127.0.0.1, then read back. Through the plain smtplib path (the CLI) and
through Airflow's SmtpNotifier (the DAG callback)."""

from __future__ import annotations

import json
import logging
import os

import pytest
from alert_servers import RECIPIENTS, SENDER, FakeTI, body_text, smtp_inbox, webhook_server
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
