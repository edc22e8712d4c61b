"""No values in results: a patron's email in the very columns that fail validation must
appear in no result, log, warehouse row or alert.

The control first shows the threat is real — Great Expectations' own SUMMARY result for
the same data carries the email — then the pipeline, the CLI (validate and a refused
enforce, both alerting), the Airflow notifier, the warehouse file and every log line
are searched for it.
"""

from __future__ import annotations

import json
import logging

import pytest
from alert_servers import FakeTI, smtp_inbox, webhook_server
from koha_validation_builders import AS_OF_TEXT, drop_new_log_handlers, koha_for_cli, raw_sql
from patron_privacy import alerts, connections, pipeline, validation
from patron_privacy.cli import main
from patron_privacy.policy import load_policy
from patron_privacy.sources.koha.expectations import SUITE
from patron_privacy.timebase import as_of_from_date
from sqlalchemy import inspect, select, table, text

CANARY = "zqx.leak.canary@example.org"
NEEDLES = (CANARY, "zqx.leak", "canary@example")


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


def _assert_clean(text_: str | bytes, where: str) -> None:
    blob = text_.decode("utf-8", "replace") if isinstance(text_, bytes) else str(text_)
    for needle in NEEDLES:
        assert needle not in blob, f"{needle!r} leaked into {where}"


@pytest.fixture
def poisoned(tmp_path, home, monkeypatch):
    db = koha_for_cli(tmp_path, home, monkeypatch)
    raw_sql(
        db,
        f"UPDATE old_issues SET branchcode = '{CANARY}' WHERE issue_id = 2",  # GX: known set
        f"UPDATE old_issues SET returndate = '{CANARY}' WHERE issue_id = 3",  # reader: type
        f"UPDATE old_issues SET borrowernumber = '{CANARY}' WHERE issue_id = 4",  # type + SQL ref
        f"UPDATE statistics SET itemtype = '{CANARY}'",
        f"UPDATE borrowers SET categorycode = '{CANARY}' WHERE borrowernumber = 10",
        f"UPDATE message_queue SET status = '{CANARY}'",
    )
    return db


def test_the_threat_is_real_gx_detailed_results_carry_the_value(poisoned):
    import great_expectations.expectations as gxe

    eng = connections.engine_for_url(f"sqlite:///{poisoned}")
    ds = next(d for d in SUITE.datasets if d.name == "old_issues")
    frame, *_ = validation.read_dataset(SUITE, eng, ds, 1000)
    runner = validation.GXRunner("koha")
    gx = runner._gx
    suite = runner.context.suites.add(
        gx.ExpectationSuite(
            name="control",
            expectations=[gxe.ExpectColumnValuesToBeInSet(column="branchcode", value_set=["MAIN"])],
        )
    )
    vd = runner.context.validation_definitions.add(
        gx.ValidationDefinition(name="control", data=runner.batch, suite=suite)
    )
    detailed = vd.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    assert CANARY in str(detailed.describe_dict())
    eng.dispose()


def test_a_patrons_email_in_failing_columns_appears_nowhere(
    poisoned,
    home,
    smtp,
    webhook,
    capsys,
    caplog,
):
    caplog.set_level(logging.DEBUG)

    # The pipeline step, as the DAG's task calls it.
    policy = load_policy()
    run = pipeline.open_run("koha", as_of_from_date(AS_OF_TEXT, policy.timezone), policy)
    report = pipeline.validate(run, run_id="leak-check")
    assert report["passed"] is False
    failed = {(f["dataset"], f["column"], f["check"]) for f in report["failed"]}
    assert ("old_issues", "branchcode", validation.IN_SET) in failed
    assert ("old_issues", "returndate", validation.TYPE) in failed
    assert ("old_issues", "borrowernumber", validation.REFERENCE) in failed
    assert ("statistics", "itemtype", validation.IN_SET) in failed
    _assert_clean(json.dumps(report), "pipeline.validate's report")

    # The Airflow notifier, from that report in XCom.
    ti = FakeTI("validate_source_data", {"validation": report})
    alerts.failure_notifier("koha")({"ti": ti, "run_id": "leak-check"})

    # The CLI: validate and enforce, both alerting; enforce refuses.
    before = poisoned.read_bytes()
    argv = ["--source", "koha", "--as-of", AS_OF_TEXT, "--alert"]
    assert main(["-v", "validate", *argv, "--json"]) == 1
    assert main(["-v", "enforce", *argv]) == 1
    assert main(["-v", "enforce", *argv, "--dry-run", "--json"]) == 1
    assert poisoned.read_bytes() == before

    out = capsys.readouterr()
    _assert_clean(out.out, "stdout")
    _assert_clean(out.err, "stderr")
    _assert_clean(caplog.text, "the log")
    for record in caplog.records:
        _assert_clean(record.getMessage(), f"log record {record.name}")

    assert len(smtp.envelopes) == 4  # notifier, validate, enforce, dry run
    for envelope in smtp.envelopes:
        _assert_clean(envelope.content, "an alert email (raw)")
    for _, msg in smtp.messages():
        _assert_clean(msg.get_body(preferencelist=("plain", "html")).get_content(), "alert body")
        _assert_clean(msg["Subject"], "alert subject")
    assert webhook
    for _, payload in webhook:
        _assert_clean(json.dumps(payload), "the webhook payload")

    # The warehouse: every cell of every table, and the file's raw bytes.
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    with wh.connect() as c:
        names = inspect(wh).get_table_names()
        assert "validation_runs" in names
        n_rows = c.execute(text("SELECT count(*) FROM validation_runs")).scalar()
        assert n_rows > 100
        for name in names:
            for row in c.execute(select(text("*")).select_from(table(name))):
                _assert_clean(repr(tuple(row)), f"warehouse table {name}")
    wh.dispose()
    for path in home.glob("warehouse.db*"):
        _assert_clean(path.read_bytes(), path.name)
