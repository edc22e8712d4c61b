"""The Board's monthly report: which requests it lists, their status as of the month's
end (never the wall clock), counts, and the two renderings (HTML, PDF)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from legal_builders import cli, new_request
from patron_privacy import board_report, disclosure, requests_register

NY = "America/New_York"


@pytest.mark.parametrize(
    ("instant", "month"),
    [
        (datetime(2026, 12, 1, 12, 0, tzinfo=UTC), "2026-11"),  # 07:00 in Hartford
        (datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "2026-10"),  # still 30 November there
        (datetime(2027, 1, 1, 12, 0, tzinfo=UTC), "2026-12"),
        (datetime(2026, 11, 17, 15, 0, tzinfo=UTC), "2026-10"),  # a manual run
    ],
)
def test_period_is_the_month_before_the_data_interval_end(instant, month):
    assert board_report.previous_month(instant, NY) == month


def test_month_bounds():
    assert board_report.month_bounds("2028-02") == (date(2028, 2, 1), date(2028, 2, 29))
    for bad in ("2026-13", "2026-1", "26-11", "November"):
        with pytest.raises(ValueError, match="expected a month YYYY-MM"):
            board_report.month_bounds(bad)
    with pytest.raises(ValueError, match="timezone-aware"):
        board_report.previous_month(datetime(2026, 12, 1), NY)


@pytest.fixture
def register(home):
    """Requests around November 2026, each placed to test one rule of the listing."""
    refs = {
        # Closed before November: not listed.
        "old": new_request(
            received_on=date(2026, 9, 1),
            kind="informal",
            decision="refused",
            decided_on=date(2026, 9, 1),
        ),
        # Received earlier, still open in November: carried over.
        "carried": new_request(received_on=date(2026, 10, 20), counsel_reviewed_on=None),
        # Received earlier, decided in November: listed as closed, records counted.
        "released": new_request(
            received_on=date(2026, 10, 2),
            kind="court order",
            agency="Connecticut State Police",
            counsel_reviewed_on=date(2026, 10, 5),
            decision="partly released",
            decided_on=date(2026, 11, 12),
            records_released=4,
        ),
        # Received in November, refused in November.
        "refused": new_request(
            received_on=date(2026, 11, 25),
            kind="informal",
            counsel_reviewed_on=None,
            decision="refused",
            decided_on=date(2026, 11, 25),
        ),
        # Received in November, decided in December: open as of 30 November.
        "later": new_request(
            received_on=date(2026, 11, 21),
            agency="Agency <Special> & Co",
            kind="other",
            counsel_reviewed_on=date(2026, 11, 28),
        ),
    }
    requests_register.update_request(
        requests_register.warehouse_engine(),
        refs["later"],
        {"decision": "withdrawn", "decided_on": date(2026, 12, 3)},
        today=date(2026, 12, 31),
        updated_at=datetime(2026, 12, 3),
    )
    # A release rejected in December: not part of November's story.
    disclosure.record_rejection(
        refs["carried"], rejected_by="deputy", rejected_at=datetime(2026, 12, 2), dag_run_id="x"
    )
    return refs


def test_listing_and_status_as_of_the_month_end(register):
    rep = board_report.gather("2026-11", library="Demo Public Library")
    rows = {r.ref: r for r in rep.rows}
    assert set(rows) == {register[k] for k in ("carried", "released", "refused", "later")}
    assert [r.received_on for r in rep.rows] == sorted(r.received_on for r in rep.rows)
    assert rows[register["carried"]].status == "Open — with counsel"
    assert "rejected" not in rows[register["carried"]].response, "a December review is not shown"
    assert rows[register["released"]].status == "Closed — partly released"
    assert "4 records released" in rows[register["released"]].response
    assert rows[register["refused"]].status == "Closed — refused"
    assert rows[register["later"]].status == "Open — awaiting decision"
    assert rep.counts == {
        "listed": 4,
        "received": 2,
        "carried_over": 2,
        "closed": 2,
        "open_at_end": 2,
        "records_released": 4,
    }
    assert dict(rep.by_kind()) == {"informal": 1, "subpoena": 1, "court order": 1, "other": 1}
    assert dict(rep.by_decision()) == {"Pending": 2, "Partly released": 1, "Refused": 1}
    december = {r.ref: r for r in board_report.gather("2026-12").rows}
    assert december[register["later"]].status == "Closed — withdrawn"
    assert register["released"] not in december


def test_cli_writes_html_and_pdf(register, home, capsys):
    rc, out, err = cli(capsys, "board-report", "--month", "2026-11")
    assert rc == 0, err
    stem = home / "exports" / "board_reports" / "law-enforcement-requests-2026-11"
    html_path, pdf_path = stem.with_suffix(".html"), stem.with_suffix(".pdf")
    assert out.splitlines()[:2] == [str(html_path), str(pdf_path)]
    html = html_path.read_text()
    assert "November 2026" in html and "Agency &lt;Special&gt; &amp; Co" in html
    assert "loan history" not in html, "what a request asks for stays out of the report"
    pdf = pdf_path.read_bytes()
    assert pdf.startswith(b"%PDF")
    # Uncompressed: the text is there to read (and to scan for leaks).
    for ref in (register["carried"], register["released"]):
        assert ref.encode() in pdf
    first = pdf
    assert cli(capsys, "board-report", "--month", "2026-11")[0] == 0
    assert pdf_path.read_bytes() == first, "a month's report is rebuilt byte for byte"
    rc, _, err = cli(capsys, "board-report", "--month", "2026-13")
    assert rc == 2 and "expected a month YYYY-MM" in err


def test_empty_month(home, capsys):
    rc, out, _ = cli(capsys, "board-report", "--month", "2026-02")
    assert rc == 0 and "0 request(s)" in out
    html = home / "exports" / "board_reports" / "law-enforcement-requests-2026-02.html"
    assert "No request was received or open this month." in html.read_text()
