"""The request register: what it accepts, what it refuses (and that a refusal writes
nothing and never repeats the offending text), and the free-text identifier checks. Tests
that touch the register run with the warehouse on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from legal_builders import TODAY, cli, new_request
from patron_privacy import requests_register as rr
from patron_privacy.identifiers import FORM_PATTERN, find_identifier
from sqlalchemy import func, select


def count_requests() -> int:
    with rr.warehouse_engine().connect() as c:
        return c.execute(select(func.count()).select_from(rr.request_register)).scalar_one()


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("records for jane.doe@example.org", "an email address"),
        ("patron called from (860) 555-0142 last week", "a phone number"),
        ("call 860.555.0142", "a phone number"),
        ("card 21234567890123 loans", "a card or barcode number"),
        ("card 2123 4567 8901 23", "a card or barcode number"),
        ("loans of patron #48213", "a patron, card or account number"),
        ("borrowernumber: 513", "a patron, card or account number"),
        ("everything about the user at 4417 Wethersfield Avenue", "a street address"),
        ("SSN 123-45-6789", "a social security number"),
        ("sessions from 10.1.22.7", "an IP address"),
    ],
)
def test_identifier_shapes_are_found(text, what):
    assert find_identifier(text) == what


@pytest.mark.parametrize(
    "text",
    [
        "loan history of one patron named in the order, March-May 2026",
        "Case No. 3:26-cr-00123, computer sign-up records for 2026-11-03",
        "Docket HHD-CV26-6012345-S",  # letters break the digit run
        "all records of two patrons between 2026-09-01 and 2026-10-31",
        "internet use at 3 branches; 12 prior court orders cited",
        "a fine of $1,000 paid in 2025",
    ],
)
def test_plain_descriptions_pass(text):
    assert find_identifier(text) is None


@pytest.mark.parametrize(
    "text",
    ["a@b.org", "21234567890123", "860-555-0142", "2123 4567 8901", "123-45-6789", "ok text"],
)
def test_form_pattern_refuses_nothing_the_task_would_accept(text):
    # The trigger form's JSON Schema pattern is a subset of the task's checks.
    if re.search(FORM_PATTERN, text):
        assert find_identifier(text) is not None


def test_add_assigns_references_by_year(warehouse_db):
    assert new_request() == "LE-2026-001"
    assert new_request() == "LE-2026-002"
    assert new_request(received_on=date(2025, 12, 30)) == "LE-2025-001"
    with rr.warehouse_engine().connect() as c:
        row = rr.get_request(c, "LE-2026-001")
    assert row["kind"] == "subpoena" and row["decision"] == "pending"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": None}, "kind: required, one of informal, subpoena, court order"),
        ({"kind": ""}, "kind: required"),
        ({"kind": "letter"}, "kind: 'letter' is not one of"),
        ({"agency": "  "}, "agency: required"),
        ({"received_on": None}, "received_on: required"),
        ({"received_on": date(2026, 12, 24)}, "received_on: 2026-12-24 is in the future"),
        ({"counsel_reviewed_on": date(2026, 11, 1)}, "is before the request was received"),
        ({"decision": "released"}, "decided_on: required when the decision is released"),
        (
            {"decision": "released", "decided_on": date(2026, 11, 10), "kind": "informal"},
            "records are released only on a subpoena, court order or warrant",
        ),
        (
            {
                "decision": "partly released",
                "decided_on": date(2026, 11, 10),
                "counsel_reviewed_on": None,
                "records_released": 3,
            },
            "counsel_reviewed_on: required before records are released",
        ),
        (
            {"decision": "released", "decided_on": date(2026, 11, 10)},
            "records_released: required (1 or more)",
        ),
        ({"decided_on": date(2026, 11, 10)}, "a pending request has no decision date"),
        ({"records_released": -1}, "records_released: expected a whole number"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_written(warehouse_db, overrides, message):
    with pytest.raises(rr.RegisterError, match=re.escape(message)):
        new_request(**overrides)
    assert count_requests() == 0


def test_identifier_in_free_text_is_refused_without_repeating_it(warehouse_db):
    for field in ("asks_for", "agency", "referred_to"):
        with pytest.raises(rr.RegisterError) as err:
            new_request(**{field: "records of ottoline.quillfeather@example.org"})
        assert f"{field}: looks like it contains an email address" in str(err.value)
        assert "quillfeather" not in str(err.value).lower()
        assert "holds place" in str(err.value)
    assert count_requests() == 0


def test_update_revalidates_the_whole_record(warehouse_db):
    ref = new_request()
    engine = rr.warehouse_engine()
    when = datetime(2026, 11, 20)
    rr.update_request(
        engine,
        ref,
        {"decision": "released", "decided_on": date(2026, 11, 12), "records_released": 7},
        today=TODAY,
        updated_at=when,
    )
    with pytest.raises(rr.RegisterError, match="kind: 'nothing' is not one of"):
        rr.update_request(engine, ref, {"kind": "nothing"}, today=TODAY, updated_at=when)
    with pytest.raises(rr.RegisterError, match="records are released only on a subpoena"):
        rr.update_request(engine, ref, {"kind": "informal"}, today=TODAY, updated_at=when)
    with pytest.raises(rr.RegisterError, match="no request 'LE-2026-404'"):
        rr.update_request(engine, "LE-2026-404", {"agency": "x"}, today=TODAY, updated_at=when)
    with engine.connect() as c:
        row = rr.get_request(c, ref)
    assert (row["kind"], row["decision"], row["records_released"]) == ("subpoena", "released", 7)


def test_cli_add_list_show_update(warehouse_db, capsys):
    rc, out, err = cli(
        capsys,
        "requests", "add", "--received", "2026-11-03", "--agency", "Hartford Police Department",
        "--kind", "court order", "--asks-for", "circulation records of one patron, 2026",
    )  # fmt: skip
    assert (rc, out.strip(), err) == (0, "LE-2026-001", "")
    rc, out, _ = cli(capsys, "requests", "list")
    assert rc == 0 and "LE-2026-001" in out and "court order" in out and "pending" in out
    rc, out, err = cli(
        capsys, "requests", "update", "LE-2026-001", "--counsel-reviewed", "2026-11-04",
        "--decision", "refused", "--decided", "2026-11-06",
    )  # fmt: skip
    assert rc == 0, err
    rc, out, _ = cli(capsys, "requests", "show", "LE-2026-001")
    assert "counsel reviewed:  2026-11-04" in out and "decision:          refused" in out
    rc, out, _ = cli(capsys, "requests", "list", "--open")
    assert "no requests" in out


def test_cli_request_with_no_kind_is_refused(warehouse_db, capsys):
    rc, _, err = cli(
        capsys, "requests", "add", "--received", "2026-11-03", "--agency", "HPD",
        "--asks-for", "records",
    )  # fmt: skip
    assert rc == 2 and "the following arguments are required: --kind" in err
    rc, _, err = cli(
        capsys, "requests", "add", "--received", "2026-11-03", "--agency", "HPD",
        "--kind", "", "--asks-for", "records",
    )  # fmt: skip
    assert rc == 2 and "error: kind: required" in err
    rc, _, err = cli(
        capsys, "requests", "add", "--received", "2026-11-03", "--agency", "HPD",
        "--kind", "subpoena", "--asks-for", "everything on card 29990048213977",
    )  # fmt: skip
    assert rc == 2 and "card or barcode number" in err and "29990048213977" not in err
    assert count_requests() == 0
