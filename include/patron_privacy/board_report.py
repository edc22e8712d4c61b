"""The CEO's monthly report to the Board on law-enforcement requests, in HTML and PDF.

The policy: "the Chief Executive Officer will report in writing to the Board
of Directors, at least monthly, describing each instance ... in which the
Library has received a request for information from state or federal law
enforcement agents, whether informally or by subpoena or court order,
including the Library's response to such request and the current status of
each request."

A month's report lists every request received in the month or still open at
any point of it: received date, agency, kind, the library's response and the
status, all as of the last day of the month (a decision taken later shows as
still open), with counts. It is built from the register alone and names no
patron: it never reads the holds' subjects, and it leaves out the free-text
description of what a request asks for (the register's identifier checks
cannot catch a name). The period comes from the caller — the DAG's data
interval or ``--month`` — never from the wall clock, so a month's report can
be rebuilt identically at any time.
"""

from __future__ import annotations

import calendar
import html
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import and_, or_, select

from patron_privacy import connections
from patron_privacy.requests_register import (
    COMPULSORY,
    DECISIONS,
    KINDS,
    RELEASES,
    label,
    warehouse_engine,
)
from patron_privacy.timebase import library_zone
from patron_privacy.warehouse import disclosure_reviews, request_register

DECISION_LABELS = {
    "released": "Released",
    "partly_released": "Partly released",
    "refused": "Refused",
    "withdrawn": "Withdrawn",
    "pending": "Pending",
}


def month_bounds(month: str) -> tuple[date, date]:
    """``2026-11`` -> (2026-11-01, 2026-11-30); ValueError for anything else."""
    try:
        year, mon = (int(x) for x in month.split("-"))
        if len(month) != 7 or not 1 <= mon <= 12 or year < 1900:
            raise ValueError
    except ValueError:
        raise ValueError(f"expected a month YYYY-MM, got {month!r}") from None
    return date(year, mon, 1), date(year, mon, calendar.monthrange(year, mon)[1])


def previous_month(instant: datetime, zone: str) -> str:
    """The month before the one ``instant`` falls in, in the library's zone (``YYYY-MM``).

    A run on the first of December (its data interval end) reports on November.
    """
    if instant.tzinfo is None:
        raise ValueError("the instant must be timezone-aware")
    local = instant.astimezone(library_zone(zone)).date()
    year, mon = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return f"{year:04d}-{mon:02d}"


@dataclass
class Row:
    ref: str
    received_on: date
    agency: str
    kind: str
    response: str
    status: str
    is_open: bool
    received_in_month: bool
    closed_in_month: bool
    decision: str  # as of the period end
    released_in_month: int


@dataclass
class BoardReport:
    month: str
    first: date
    last: date
    library: str
    rows: list[Row] = field(default_factory=list)

    @property
    def title_month(self) -> str:
        return f"{calendar.month_name[self.first.month]} {self.first.year}"

    @property
    def counts(self) -> dict[str, int]:
        return {
            "listed": len(self.rows),
            "received": sum(r.received_in_month for r in self.rows),
            "carried_over": sum(not r.received_in_month for r in self.rows),
            "closed": sum(r.closed_in_month for r in self.rows),
            "open_at_end": sum(r.is_open for r in self.rows),
            "records_released": sum(r.released_in_month for r in self.rows),
        }

    def by_kind(self) -> list[tuple[str, int]]:
        c = Counter(r.kind for r in self.rows)
        return [(label(k), c[k]) for k in KINDS if c[k]]

    def by_decision(self) -> list[tuple[str, int]]:
        c = Counter(r.decision for r in self.rows)
        return [(DECISION_LABELS[d], c[d]) for d in DECISIONS if c[d]]


def _response(req: dict, reviews: list[dict], last: date) -> str:
    parts = []
    if req["referred_to"]:
        parts.append(f"Referred to {req['referred_to']}.")
    if req["kind"] not in COMPULSORY:
        parts.append("No subpoena or court order presented.")
    if req["counsel_reviewed_on"] and req["counsel_reviewed_on"] <= last:
        parts.append(f"Counsel reviewed {req['counsel_reviewed_on']}.")
    for r in reviews:
        verb = "approved" if r["outcome"] == "approved" else "rejected"
        parts.append(f"Release {verb} by {r['reviewed_by']} on {r['reviewed_at']:%Y-%m-%d}.")
    decided = req["decided_on"] and req["decided_on"] <= last
    if decided:
        text = f"{DECISION_LABELS[req['decision']]} on {req['decided_on']}"
        if req["decision"] in RELEASES:
            n = req["records_released"] or 0
            text += f": {n} record{'s' if n != 1 else ''} released"
        parts.append(text + ".")
    return " ".join(parts) or "Received; under review."


def _status(req: dict, last: date) -> tuple[str, bool]:
    if req["decided_on"] and req["decided_on"] <= last:
        return f"Closed — {DECISION_LABELS[req['decision']].lower()}", False
    if req["kind"] in COMPULSORY and not (
        req["counsel_reviewed_on"] and req["counsel_reviewed_on"] <= last
    ):
        return "Open — with counsel", True
    return "Open — awaiting decision", True


def gather(month: str, *, library: str = "") -> BoardReport:
    first, last = month_bounds(month)
    report = BoardReport(month, first, last, library)
    rr, dr = request_register, disclosure_reviews
    engine = warehouse_engine()
    with engine.connect() as conn:
        reqs = (
            conn.execute(
                select(rr)
                .where(
                    rr.c.received_on <= last,
                    or_(rr.c.decided_on.is_(None), rr.c.decided_on >= first),
                )
                .order_by(rr.c.received_on, rr.c.ref)
            )
            .mappings()
            .all()
        )
        for req in reqs:
            reviews = (
                conn.execute(
                    select(dr.c.outcome, dr.c.reviewed_by, dr.c.reviewed_at)
                    .where(
                        and_(dr.c.request_ref == req["ref"], dr.c.reviewed_at < _day_after(last))
                    )
                    .order_by(dr.c.reviewed_at, dr.c.id)
                )
                .mappings()
                .all()
            )
            status, is_open = _status(req, last)
            decided_in_month = bool(req["decided_on"] and first <= req["decided_on"] <= last)
            report.rows.append(
                Row(
                    ref=req["ref"],
                    received_on=req["received_on"],
                    agency=req["agency"],
                    kind=req["kind"],
                    response=_response(req, list(reviews), last),
                    status=status,
                    is_open=is_open,
                    received_in_month=req["received_on"] >= first,
                    closed_in_month=decided_in_month,
                    decision="pending" if is_open else req["decision"],
                    released_in_month=(
                        int(req["records_released"] or 0)
                        if decided_in_month and req["decision"] in RELEASES
                        else 0
                    ),
                )
            )
    engine.dispose()
    return report


def _day_after(day: date) -> datetime:
    return datetime.fromordinal(day.toordinal() + 1)


COLUMNS = ("Ref", "Received", "Agency", "Kind", "Library's response", "Status")
NOTE = (
    "Prepared from the library's request register, which holds no patron identifiers. "
    "What each request asks for is recorded in the register and left out of this report, "
    "which names no patron."
)


def _summary(rep: BoardReport) -> list[tuple[str, int]]:
    c = rep.counts
    return [
        ("Received in the month", c["received"]),
        ("Carried over", c["carried_over"]),
        ("Closed in the month", c["closed"]),
        ("Open at month end", c["open_at_end"]),
        ("Records released in the month", c["records_released"]),
    ]


def _breakdown(rep: BoardReport) -> list[tuple[str, str]]:
    kinds = ", ".join(f"{k} {n}" for k, n in rep.by_kind()) or "none"
    decisions = ", ".join(f"{k} {n}" for k, n in rep.by_decision()) or "none"
    return [("By kind", kinds), ("By response (as of month end)", decisions)]


def render_html(rep: BoardReport) -> str:
    e = html.escape
    title = f"Law-enforcement requests for patron records — {rep.title_month}"
    rows = (
        "\n".join(
            "<tr>"
            + "".join(
                f"<td>{e(str(v))}</td>"
                for v in (r.ref, r.received_on, r.agency, label(r.kind), r.response, r.status)
            )
            + "</tr>"
            for r in rep.rows
        )
        or f'<tr><td colspan="{len(COLUMNS)}">No request was received or open this month.</td></tr>'
    )
    summary_head = "".join(f"<th>{e(k)}</th>" for k, _ in _summary(rep))
    summary_row = "".join(f'<td class="n">{n}</td>' for _, n in _summary(rep))
    breakdown = "\n".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in _breakdown(rep))
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(title)}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; margin-bottom: 0.2em; }}
p.sub {{ color: #555; margin-top: 0; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1em; }}
th, td {{ border: 1px solid #bbb; padding: 0.35em 0.5em; vertical-align: top;
          text-align: left; font-size: 0.9em; }}
th {{ background: #e8ecf2; }}
table.counts {{ width: auto; }}
table.counts td.n {{ text-align: center; font-size: 1.1em; }}
tr:nth-child(even) td {{ background: #f7f8fa; }}
p.note {{ font-size: 0.8em; color: #555; margin-top: 1.5em; }}
</style>
</head>
<body>
<h1>{e(title)}</h1>
<p class="sub">{e(rep.library)} — Report of the Chief Executive Officer to the Board of
Directors, {e(rep.first.isoformat())} to {e(rep.last.isoformat())}; status as of
{e(rep.last.isoformat())}.</p>
<table class="counts">
<thead><tr>{summary_head}</tr></thead>
<tbody><tr>{summary_row}</tr></tbody>
</table>
<ul>
{breakdown}
</ul>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="note">{e(NOTE)}</p>
</body>
</html>
"""


def render_pdf(rep: BoardReport, path: Path) -> None:
    """Letter landscape; uncompressed and invariant, so the bytes are reproducible and
    a leak scan reads the text as it is."""
    from reportlab.lib import colors  # noqa: PLC0415 - only for the PDF
    from reportlab.lib.pagesizes import landscape, letter  # noqa: PLC0415
    from reportlab.lib.styles import getSampleStyleSheet  # noqa: PLC0415
    from reportlab.lib.units import inch  # noqa: PLC0415
    from reportlab.platypus import (  # noqa: PLC0415
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8.5, leading=10.5)
    head = small.clone("head", fontName="Helvetica-Bold")
    e = html.escape  # Paragraph markup is XML-like
    title = f"Law-enforcement requests for patron records — {rep.title_month}"
    story = [
        Paragraph(e(title), styles["Title"]),
        Paragraph(
            e(
                f"{rep.library} — Report of the Chief Executive Officer to the Board of "
                f"Directors, {rep.first} to {rep.last}; status as of {rep.last}."
            ),
            body,
        ),
        Spacer(1, 0.1 * inch),
    ]
    counts = Table(
        [[Paragraph(e(k), head) for k, _ in _summary(rep)], [str(n) for _, n in _summary(rep)]],
        colWidths=[1.45 * inch] * 5,
        hAlign="LEFT",
    )
    counts.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#bbbbbb")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf2")),
                ("ALIGN", (0, 1), (-1, 1), "CENTER"),
                ("FONTSIZE", (0, 1), (-1, 1), 11),
            ]
        )
    )
    story += [counts, Spacer(1, 0.1 * inch)]
    story += [Paragraph(f"<b>{e(k)}:</b> {e(v)}", body) for k, v in _breakdown(rep)]
    story.append(Spacer(1, 0.15 * inch))
    data = [[Paragraph(e(c), head) for c in COLUMNS]]
    for r in rep.rows:
        data.append(
            [
                Paragraph(e(str(v)), small)
                for v in (r.ref, r.received_on, r.agency, label(r.kind), r.response, r.status)
            ]
        )
    if not rep.rows:
        data.append([Paragraph("No request was received or open this month.", small)] + [""] * 5)
    widths = [x * inch for x in (0.95, 0.85, 1.9, 0.9, 3.6, 1.5)]
    table = Table(data, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#bbbbbb")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf2")),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f7f8fa")]),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [table, Spacer(1, 0.2 * inch), Paragraph(e(NOTE), small)]

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(
            0.6 * inch, 0.4 * inch, f"{rep.library} — confidential report to the Board"
        )
        canvas.drawRightString(
            landscape(letter)[0] - 0.6 * inch, 0.4 * inch, f"{rep.month} — page {doc.page}"
        )
        canvas.restoreState()

    doc = SimpleDocTemplate(
        str(path),
        pagesize=landscape(letter),
        leftMargin=0.6 * inch,
        rightMargin=0.6 * inch,
        topMargin=0.6 * inch,
        bottomMargin=0.7 * inch,
        title=title,
        author=rep.library,
        invariant=1,
        pageCompression=0,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)


def reports_root() -> Path:
    return connections.local_home() / "exports" / "board_reports"


def write_report(month: str, out_dir: str | Path | None = None) -> dict:
    """Write ``law-enforcement-requests-YYYY-MM.html`` and ``.pdf``; returns paths and counts."""
    from patron_privacy.policy import load_policy  # noqa: PLC0415

    rep = gather(month, library=load_policy().library_name)
    out = Path(out_dir) if out_dir else reports_root()
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"law-enforcement-requests-{rep.month}"
    html_path, pdf_path = stem.with_suffix(".html"), stem.with_suffix(".pdf")
    tmp_html, tmp_pdf = out / f".{html_path.name}.tmp", out / f".{pdf_path.name}.tmp"
    tmp_html.write_text(render_html(rep), encoding="utf-8")
    render_pdf(rep, tmp_pdf)
    os.replace(tmp_html, html_path)
    os.replace(tmp_pdf, pdf_path)
    return {"month": rep.month, "html": str(html_path), "pdf": str(pdf_path), **rep.counts}
