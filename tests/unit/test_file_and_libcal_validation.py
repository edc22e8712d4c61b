"""Validation suites of the sources that are not databases: sign-up and program exports,
Squid logs, LibCal's answers — and fail-closed for a source without a suite.

Every source has a suite; a suite's failure stops the source (nothing changed); input
the reader cannot read is set aside by file and line (left exactly as it is) while the
rest is validated and acted on; no report, message or stored row holds a value.
"""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime, timedelta

import pytest
from file_source_builders import (
    AS_OF,
    PROGRAM_HEADER,
    SIGNUP_HEADER,
    file_home,
    make_policy,
    policy_text,
    signup_row,
    squid_line,
    write_csv,
    write_log,
)
from patron_privacy import cli, connections, validation
from patron_privacy.files import runner
from patron_privacy.sources import SOURCES
from patron_privacy.sources.libcal.connector import Harvest
from patron_privacy.sources.libcal.expectations import SUITE as LIBCAL
from patron_privacy.sources.libcal.expectations import Answered
from patron_privacy.timebase import library_zone
from patron_privacy.validation import (
    BETWEEN,
    FRESH,
    IN_SET,
    NOT_NULL,
    REFERENCE,
    SET_ASIDE,
    TYPE,
    UNIQUE,
    VOLUME,
    CheckContext,
    Thresholds,
)
from sqlalchemy import create_engine, text

D = timedelta(days=1)
ZONE = library_zone("America/New_York")
CANARY = "Zqxcanaryvalidation"


@pytest.fixture
def world(tmp_path):
    with file_home(tmp_path / "home"):
        yield tmp_path / "src", make_policy(tmp_path / "src")


def failed(report: dict) -> set[tuple[str, str, str | None]]:
    return {(f["dataset"], f["check"], f["column"]) for f in report["failed"]}


def stored(run_id: str) -> list[tuple]:
    eng = create_engine(f"sqlite:///{connections.local_home() / 'warehouse.db'}")
    with eng.connect() as c:
        rows = c.execute(
            text(
                "SELECT dataset, check_name, element_count, unexpected_count, passed "
                "FROM validation_runs WHERE run_id = :r"
            ),
            {"r": run_id},
        ).all()
    eng.dispose()
    return [tuple(r) for r in rows]


# --- every source has a suite, and one without fails closed -------------------------------------


def test_every_source_has_a_suite():
    missing = [s for s in SOURCES if validation.suite_for(s) is None]
    assert missing == []
    for s in SOURCES:
        assert validation.suite_for(s).source == s


def test_a_source_without_a_suite_fails_closed(world, monkeypatch, tmp_path, capsys):
    root, policy = world
    write_csv(
        root / "signups/a.csv", SIGNUP_HEADER, [signup_row(1, "29990071", CANARY, AS_OF - 2 * D)]
    )
    before = (root / "signups/a.csv").read_bytes()
    monkeypatch.delitem(validation.SUITES, "signups")
    with pytest.raises(validation.MissingSuiteError, match="signups: no validation suite"):
        runner.validate_source("signups", AS_OF, "r1", policy=policy)
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy_text(root), encoding="utf-8")
    rc = cli.main(["enforce", "--source", "signups", "--as-of", "2026-11-30", "--policy", str(pol)])
    err = capsys.readouterr().err
    assert rc == 2 and "no validation suite" in err and "nothing is enforced" in err
    assert (root / "signups/a.csv").read_bytes() == before


# --- drop folders ------------------------------------------------------------------------------


def test_signups_pass_and_bad_files_are_set_aside_by_file_and_line(world):
    root, policy = world
    write_csv(root / "signups/good.csv", SIGNUP_HEADER, [
        signup_row(1, "29990001", "A Person", AS_OF - 2 * D),
        signup_row(2, "29990002", "B Person", AS_OF - 1 * D),
    ])  # fmt: skip
    header = ",".join(SIGNUP_HEADER)
    when = "MAIN-PC01,MAIN,2026-11-28 10:00,2026-11-28"
    (root / "signups/nul.csv").write_bytes(
        f"{header}\n3,29990003,{CANARY},{when}\x0010:30\n".encode()
    )
    (root / "signups/latin1.csv").write_bytes(
        f"{header}\n4,29990004,Jos\xe9 {CANARY},{when} 10:30\n".encode("latin-1")
    )
    write_csv(root / "signups/formula.csv", SIGNUP_HEADER, [
        ["5", "29990005", f'=HYPERLINK("http://x","{CANARY}")', "MAIN-PC01", "MAIN",
         "2026-11-28 10:00", "2026-11-28 10:30"],
    ])  # fmt: skip
    write_csv(root / "signups/huge.csv", SIGNUP_HEADER, [
        ["6", "29990006", CANARY * 600_000, "MAIN-PC01", "MAIN", "2026-11-28 10:00",
         "2026-11-28 10:30"],
    ])  # fmt: skip
    (root / "signups/empty.csv").write_bytes(b"")

    report = runner.validate_source("signups", AS_OF, "v-signups", policy=policy)

    assert report["passed"], report["failed"]
    assert report["rows"] == {"pc_signups": 2}
    aside = "\n".join(report["set_aside"])
    assert len(report["set_aside"]) == 5, aside
    for where in ("nul.csv line 2", "latin1.csv line 2", "formula.csv line 2", "huge.csv line 2"):
        assert where in aside, aside
    assert "empty.csv" in aside
    dumped = json.dumps(report, default=str)
    assert CANARY not in dumped and "29990003" not in dumped and "A Person" not in dumped
    rows = stored("v-signups")
    assert ("pc_signups", SET_ASIDE, 6, 5, False) in rows  # stored, not blocking
    assert all(r[4] for r in rows if r[1] != SET_ASIDE)


def test_stale_and_empty_folders_fail_closed(world):
    root, policy = world
    write_csv(
        root / "signups/old.csv", SIGNUP_HEADER, [signup_row(1, "29990011", "C", AS_OF - 30 * D)]
    )
    report = runner.validate_source("signups", AS_OF, "v-stale", policy=policy)
    assert not report["passed"] and failed(report) == {("pc_signups", FRESH, "start")}
    report = runner.validate_source("programs", AS_OF, "v-empty", policy=policy)
    assert not report["passed"]
    assert ("program_registrations", VOLUME, None) in failed(report)


def test_a_failed_suite_changes_no_file_through_the_cli(world, tmp_path, capsys):
    root, _ = world
    write_csv(
        root / "signups/old.csv", SIGNUP_HEADER, [signup_row(1, "29990021", CANARY, AS_OF - 30 * D)]
    )
    before = (root / "signups/old.csv").read_bytes()
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy_text(root), encoding="utf-8")
    args = ["--source", "signups", "--as-of", "2026-11-30", "--policy", str(pol)]
    assert cli.main(["enforce", *args]) == 1
    err = capsys.readouterr().err
    assert "nothing was changed: validation failed" in err
    assert "signups.pc_signups.start: expect_column_max_to_be_between" in err
    assert CANARY not in err and "29990021" not in err
    assert (root / "signups/old.csv").read_bytes() == before
    assert cli.main(["validate", *args]) == 1


def test_programs_pass_and_values_are_checked_against_known_sets(world):
    root, policy = world
    write_csv(root / "programs/p.csv", PROGRAM_HEADER, [
        ["Lego Club", "2026-11-28 16:00", "Kids", "In person", "MAIN", CANARY, "a@x.org", "yes"],
        ["Author Talk", "2026-12-05 18:00", "Adults", "Zoom", "EAST", "B", "b@example.org", ""],
    ])  # fmt: skip
    report = runner.validate_source("programs", AS_OF, "v-programs", policy=policy)
    assert report["passed"], report["failed"]
    assert report["rows"] == {"program_registrations": 2}
    assert CANARY not in json.dumps(report, default=str)


# --- Squid -------------------------------------------------------------------------------------


def test_squid_passes_sets_aside_bad_lines_and_truncated_gzip(world):
    root, policy = world
    t = AS_OF - D + timedelta(hours=10)
    write_log(root / "squid/access.log.1", [
        squid_line(t), squid_line(t + timedelta(minutes=1), url=f"http://x.example/?q={CANARY}"),
        b"this is not a squid line\n",
        squid_line(t + timedelta(minutes=2), ident="zqxcanaryuser"),
    ])  # fmt: skip
    whole = gzip.compress(b"".join(squid_line(t - 2 * D) for _ in range(50)), mtime=0)
    (root / "squid/access.log.2.gz").write_bytes(whole[: len(whole) // 2])

    report = validation_report_squid(policy)

    assert report["passed"], report["failed"]
    assert report["rows"] == {"access_log": 3}
    aside = "\n".join(report["set_aside"])
    assert "access.log.1 line 3" in aside and "access.log.2.gz" in aside
    assert "truncated gzip" in aside
    dumped = json.dumps(report, default=str)
    assert CANARY.lower() not in dumped.lower() and "10.213.77.142" not in dumped


def validation_report_squid(policy, run_id: str = "v-squid") -> dict:
    return runner.validate_source("squid", AS_OF, run_id, policy=policy)


def test_squid_fails_on_wrong_types_unknown_methods_and_stale_logs(world):
    root, policy = world
    t = AS_OF - D + timedelta(hours=10)
    good = squid_line(t)
    write_log(root / "squid/access.log.1", [
        good,
        good.replace(b" GET ", b" FROB "),
        good.replace(b" 512 ", b" lots "),
    ])  # fmt: skip
    report = validation_report_squid(policy)
    assert failed(report) == {
        ("access_log", IN_SET, "method"),
        ("access_log", TYPE, "bytes"),
        ("access_log", NOT_NULL, "bytes"),  # what is not a number is no value at all
    }, report["failed"]
    write_log(root / "squid/access.log.1", [squid_line(AS_OF - 20 * D)])
    report = validation_report_squid(policy, "v-squid-stale")
    assert failed(report) == {("access_log", FRESH, "time")}


# --- LibCal ------------------------------------------------------------------------------------


def _event(eid, start: str, **kw) -> dict:
    return {"id": eid, "start": start, "end": start, "registration": True,
            "campus": {"id": 1, "name": "Central"}, **kw}  # fmt: skip


def _reg(booking, **kw) -> dict:
    return {"booking_id": booking, "first_name": CANARY, "email": "zqx@example.org",
            "barcode": "29977300009999", "registered_date": "2026-11-01T09:00:00-05:00",
            **kw}  # fmt: skip


def _libcal(h: Harvest):
    cc = CheckContext("libcal", AS_OF, Thresholds())
    return validation.validate_source(LIBCAL, Answered(h, ZONE), cc).as_dict()


def test_libcal_answer_passes_and_holds_no_registrant_value():
    h = Harvest()
    h.events = {
        "1@a": _event(1, "2026-11-20T10:00:00-05:00"),
        "2@b": _event(2, "2026-11-21T10:00:00-05:00"),
    }
    h.registrants = {"1": [_reg(10), _reg(11)], "2": [_reg(10)]}  # booking ids repeat per event
    report = _libcal(h)
    assert report["passed"], report["failed"]
    assert report["rows"] == {"events": 2, "registrations": 3}
    dumped = json.dumps(report, default=str)
    for value in (CANARY, "zqx@example.org", "29977300009999"):
        assert value not in dumped


def test_libcal_bad_answers_fail_closed_naming_the_check():
    h = Harvest()
    h.events = {
        "1@a": _event(1, "2026-11-20T10:00:00-05:00"),
        "3@c": _event(3, "2027-03-01T10:00:00-05:00"),  # after the as-of date
        "4@d": _event(4, "soon"),  # not a time: set aside, no fact from it
    }
    h.registrants = {
        "1": [_reg(10), _reg(10)],  # the same booking twice: a paging fault
        "9": [_reg(12)],  # an event the run never read
    }
    report = _libcal(h)
    assert not report["passed"]
    assert failed(report) == {
        ("events", BETWEEN, "start"),
        ("registrations", UNIQUE, "registration"),
        ("registrations", REFERENCE, "event_id"),
    }, report["failed"]
    assert report["set_aside"] == [
        "LibCal event 4: no start time that parses; no fact recorded from it"
    ]
    assert CANARY not in json.dumps(report, default=str)


def test_libcal_run_records_nothing_from_an_answer_that_fails(monkeypatch, tmp_path):
    from patron_privacy.sources.libcal import connector

    h = Harvest()
    h.events = {"1@a": _event(1, "2026-11-20T10:00:00-05:00", end="2026-11-20T11:00:00-05:00")}
    h.registrants = {"1": [_reg(10), _reg(10)]}
    monkeypatch.setattr(connector, "read_vendor", lambda pol, as_of: (h, {}, 3, 0))
    with file_home(tmp_path / "home"):
        with pytest.raises(validation.ValidationFailed) as exc:
            connector.run_libcal(AS_OF, "lc-bad", policy=None)
        assert exc.value.report["failed"]
        eng = create_engine(f"sqlite:///{connections.local_home() / 'warehouse.db'}")
        with eng.connect() as c:
            facts = c.execute(text("SELECT count(*) FROM program_facts")).scalar_one()
            audit = (
                c.execute(text("SELECT error FROM retention_audit WHERE run_id = 'lc-bad'"))
                .scalars()
                .all()
            )
        eng.dispose()
    assert facts == 0
    assert audit and all("validation failed" in e for e in audit)
    assert CANARY not in str(exc.value)


def test_thresholds_from_the_policy_reach_the_file_suites(world, tmp_path):
    root, _ = world
    write_csv(
        root / "signups/a.csv", SIGNUP_HEADER, [signup_row(1, "29990031", "D", AS_OF - 10 * D)]
    )
    text_ = policy_text(root).replace(
        "        max_field_chars: 200\n",
        "        max_field_chars: 200\n    validation: {freshness_days: 14}\n",
    )
    from patron_privacy.policy import parse_policy

    pol = parse_policy(text_, "p.yaml")
    assert pol.options("signups")["validation"] == {"freshness_days": 14}
    assert runner.validate_source("signups", AS_OF, "v-thr", policy=pol)["passed"]


def test_a_date_column_out_of_range_is_refused_before_the_suite(world):
    """Dates in 0000 or 2999 never reach the suite: the reader sets the file aside."""
    root, policy = world
    write_csv(root / "signups/good.csv", SIGNUP_HEADER, [signup_row(1, "29990041", "E", AS_OF - D)])
    write_csv(root / "signups/y2999.csv", SIGNUP_HEADER, [
        ["2", "29990042", "F", "MAIN-PC01", "MAIN", "2999-01-01 10:00", "2999-01-01 10:30"],
    ])  # fmt: skip
    write_csv(root / "signups/y0000.csv", SIGNUP_HEADER, [
        ["3", "29990043", "G", "MAIN-PC01", "MAIN", "0000-01-01 10:00", "0000-01-01 10:30"],
    ])  # fmt: skip
    report = runner.validate_source("signups", AS_OF, "v-dates", policy=policy)
    assert report["passed"] and report["rows"] == {"pc_signups": 1}
    assert {line.split(" line")[0] for line in report["set_aside"]} == {
        "signups/y0000.csv",
        "signups/y2999.csv",
    }
    assert date(2026, 11, 30) == AS_OF.date() and isinstance(AS_OF, datetime)
