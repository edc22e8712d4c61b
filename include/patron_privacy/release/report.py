"""The human side of a release: charts, an HTML report and the same as a PDF for the board.

Everything drawn here comes from the release's own published tables (after
suppression or noise) — never from facts — so a chart cannot show what a
table hides. Suppressed cells are marked "s" in tables and left out of
charts, with a note saying so. Charts are PNG files without metadata; the
PDF uses the standard Helvetica font and uncompressed pages, so every string
in it can be read back by the PII gate and by any byte scan.
"""

from __future__ import annotations

import calendar
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from patron_privacy.release.sdc import TOTAL
from patron_privacy.release.tables import Period, Table

SUPPRESSED = "s"
NOTE_SUPPRESSED = (
    "s = suppressed: a small count, or a count hidden so that no small count can be worked "
    "out from the totals."
)
PALETTE = [
    "#1b5e8a",
    "#e07b39",
    "#3c9d5d",
    "#b8405e",
    "#7d5ba6",
    "#8c6d31",
    "#4aa3b5",
    "#d4a017",
    "#5f6b73",
    "#c45c9a",
]


@dataclass
class View:
    """What the report shows: the release as published."""

    kind: str  # "month" or "year"
    period: Period
    library: str
    tables: list[tuple[Table, pd.DataFrame]]
    unavailable: list[dict]
    rule: str
    mode: str
    audit: dict
    dp: dict | None
    empty: bool
    generated_at: str
    policy_version: str
    trend: pd.DataFrame | None = None  # month, branch, value (None = suppressed / not published)
    trend_note: str = ""
    definitions: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def table(self, name: str) -> pd.DataFrame | None:
        for t, df in self.tables:
            if t.name == name:
                return df
        return None


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
        return SUPPRESSED
    return f"{int(v):,}"


def month_label(m: str) -> str:
    y, mo = m.split("-")
    return f"{calendar.month_abbr[int(mo)]} {y}"


# -- pivots ------------------------------------------------------------------------------------


def pivot(df: pd.DataFrame, rows: str, cols: str, value: str, where: dict | None = None):
    """A two-way view (rows x cols, totals included) from the long published table."""
    d = df
    for k, v in (where or {}).items():
        d = d[d[k] == v]
    d = d[[rows, cols, value]]
    row_keys = [r for r in dict.fromkeys(d[rows]) if r != TOTAL] + [TOTAL]
    col_keys = [c for c in dict.fromkeys(d[cols]) if c != TOTAL] + [TOTAL]
    cell = {(r, c): v for r, c, v in d.itertuples(index=False)}
    body = [
        [r] + [fmt(cell.get((r, c))) for c in col_keys]
        for r in row_keys
        if any((r, c) in cell for c in col_keys)
    ]
    return [rows.replace("_", " ").capitalize(), *col_keys], body


def _only(df: pd.DataFrame, keep: dict) -> pd.DataFrame:
    d = df
    for k, v in keep.items():
        d = d[d[k] == v] if v != "!Total" else d[d[k] != TOTAL]
    return d


def sections(v: View) -> list[dict]:
    """The report's content, shared by the HTML and the PDF: headings, text, tables, charts."""
    out: list[dict] = []
    if v.kind == "month":
        t1 = v.table("circulation_by_branch_item_type_patron_category")
        t2 = v.table("circulation_by_branch_item_type_age_band")
        tb = v.table("active_borrowers_by_branch")
        if t1 is not None and not t1.empty:
            grand = _only(t1, {"branch": TOTAL, "item_type": TOTAL, "patron_category": TOTAL})
            out.append(
                {
                    "kind": "figures",
                    "items": [
                        ("Loans", fmt(grand["loans"].iloc[0]) if len(grand) else "0"),
                        (
                            "Active borrowers",
                            fmt(_only(tb, {"branch": TOTAL})["borrowers"].iloc[0])
                            if tb is not None and len(tb)
                            else "0",
                        ),
                        ("Branches", str(len(_only(t1, {"branch": "!Total"})["branch"].unique()))),
                    ],
                }
            )
            out.append(
                {
                    "kind": "chart",
                    "name": "trend_by_month",
                    "caption": "Loans by month and branch. " + v.trend_note,
                }
            )
            out.append(
                {
                    "kind": "chart",
                    "name": "loans_by_branch",
                    "caption": "Loans by branch this month.",
                }
            )
            out.append(
                {
                    "kind": "chart",
                    "name": "loans_by_item_type",
                    "caption": "Loans by item type this month, all branches.",
                }
            )
            out.append({"kind": "heading", "text": "Loans by branch and item type"})
            head, body = pivot(t1, "branch", "item_type", "loans", {"patron_category": TOTAL})
            out.append({"kind": "table", "head": head, "body": body})
            out.append({"kind": "heading", "text": "Loans by branch and patron category"})
            head, body = pivot(t1, "branch", "patron_category", "loans", {"item_type": TOTAL})
            out.append({"kind": "table", "head": head, "body": body})
            if t2 is not None:
                out.append(
                    {
                        "kind": "chart",
                        "name": "loans_by_age_band",
                        "caption": "Loans by the borrower's age band, all branches.",
                    }
                )
                out.append({"kind": "heading", "text": "Loans by branch and age band"})
                head, body = pivot(t2, "branch", "age_band", "loans", {"item_type": TOTAL})
                out.append({"kind": "table", "head": head, "body": body})
            if tb is not None:
                out.append(
                    {
                        "kind": "chart",
                        "name": "borrowers_by_branch",
                        "caption": "Distinct borrowers by branch (one person may borrow "
                        "at more than one branch).",
                    }
                )
                out.append({"kind": "heading", "text": "Active borrowers by branch"})
                out.append(
                    {
                        "kind": "table",
                        "head": ["Branch", "Borrowers"],
                        "body": [
                            [b, fmt(n)]
                            for b, n in tb[["branch", "borrowers"]].itertuples(index=False)
                        ],
                    }
                )
    else:
        sr = v.table("state_report")
        bm = v.table("circulation_by_branch_month")
        tb = v.table("active_borrowers_by_branch")
        if sr is not None and not v.empty:
            tot = _only(sr, {"element": "TOTCIR", "branch": TOTAL})
            kid = _only(sr, {"element": "KIDCIRCL", "branch": TOTAL})
            out.append(
                {
                    "kind": "figures",
                    "items": [
                        ("TOTCIR", fmt(tot["value"].iloc[0]) if len(tot) else "0"),
                        ("KIDCIRCL", fmt(kid["value"].iloc[0]) if len(kid) else "0"),
                        (
                            "Active borrowers",
                            fmt(_only(tb, {"branch": TOTAL})["borrowers"].iloc[0])
                            if tb is not None and len(tb)
                            else "0",
                        ),
                    ],
                }
            )
            out.append({"kind": "heading", "text": "State report elements"})
            rows = [r for r in sr.itertuples(index=False)]
            out.append(
                {
                    "kind": "table",
                    "head": ["Element", "Branch", "Value", "Status"],
                    "body": [
                        [
                            r.element,
                            r.branch,
                            fmt(r.value) if r.status != "not available" else "n/a",
                            r.status or "",
                        ]
                        for r in rows
                    ],
                }
            )
            out.append(
                {
                    "kind": "chart",
                    "name": "elements_by_branch",
                    "caption": "Total circulation and children's circulation by branch.",
                }
            )
        if bm is not None and not v.empty:
            out.append(
                {
                    "kind": "chart",
                    "name": "trend_by_month",
                    "caption": "Checkouts by month and branch.",
                }
            )
            out.append({"kind": "heading", "text": "Checkouts by month and branch"})
            head, body = pivot(bm, "month", "branch", "checkouts")
            out.append({"kind": "table", "head": head, "body": body})
        if tb is not None and not v.empty:
            out.append(
                {
                    "kind": "chart",
                    "name": "borrowers_by_branch",
                    "caption": "Distinct borrowers in the year by branch.",
                }
            )
        out.append({"kind": "heading", "text": "Definitions"})
        for d in v.definitions:
            out.append({"kind": "text", "text": f"{d['element']}: {d['definition']}"})
    if v.empty:
        out.insert(
            0,
            {
                "kind": "notice",
                "text": (
                    f"No activity was recorded for {v.period.title()}: the warehouse holds no "
                    "circulation facts for this period. This release is empty on purpose."
                ),
            },
        )
    return out


def notes(v: View) -> list[str]:
    out = []
    if v.mode == "suppression":
        a = v.audit
        out.append(f"Disclosure control: {v.rule}. {NOTE_SUPPRESSED}")
        out.append(
            f"Audit: {'passed' if a.get('passed') else 'FAILED'} — for each of the "
            f"{a.get('suppressed_cells', 0)} suppressed cells, the smallest and largest value "
            "it can take given everything in this release was computed by linear programming; "
            f"each covers the whole suppressed range {a.get('required_interval')} or cannot be "
            "a small count."
        )
    else:
        out.append(
            f"Differential privacy: counts carry random noise (epsilon {v.dp['epsilon']:g} for "
            f"this release; {v.dp['spent_after']:g} of the {v.dp['annual_budget']:g} budget "
            f"for {v.dp['reporting_year']} spent). Small differences between figures are noise. "
            f"{v.dp['mechanism']}: loans beyond the cap are not counted, so heavy borrowing "
            "is undercounted."
        )
    for u in v.unavailable:
        out.append(f"Not available: {u['title']} — {u['reason']}.")
    return out


# -- charts ------------------------------------------------------------------------------------


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "axes.titlesize": 11,
        }
    )
    return plt


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})


def _num(v):
    return None if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)) else int(v)


def chart_trend(v: View, path: Path) -> bool:
    plt = _plt()
    if v.kind == "month":
        d = v.trend
    else:
        bm = v.table("circulation_by_branch_month")
        d = bm.rename(columns={"checkouts": "value"}) if bm is not None else None
    if d is None or d.empty:
        return False
    months = sorted(m for m in d["month"].unique() if m != TOTAL)
    branches = [b for b in dict.fromkeys(d["branch"]) if b != TOTAL]
    if len(months) < 3:
        cell = {
            (m, b): _num(x) for m, b, x in d[["month", "branch", "value"]].itertuples(index=False)
        }
        _bars(
            path,
            "Loans by month and branch",
            [month_label(m) for m in months],
            {b: [cell.get((m, b)) for m in months] for b in branches},
            "Loans" if v.kind == "month" else "Checkouts",
        )
        return True
    fig, ax = plt.subplots(figsize=(8, 3.6))
    xs = list(range(len(months)))
    hidden = 0
    for i, b in enumerate([*branches, TOTAL]):
        s = d[d["branch"] == b].set_index("month")["value"]
        ys = [_num(s.get(m)) for m in months]
        hidden += sum(1 for y in ys if y is None)
        ax.plot(
            xs,
            [float("nan") if y is None else y for y in ys],
            marker="o",
            markersize=3,
            linewidth=2.4 if b == TOTAL else 1.4,
            color="#222222" if b == TOTAL else PALETTE[i % len(PALETTE)],
            label="All branches" if b == TOTAL else b,
        )
    ax.set_xticks(
        xs,
        [month_label(m) for m in months],
        rotation=45 if len(xs) > 6 else 0,
        ha="right" if len(xs) > 6 else "center",
    )
    if len(xs) == 1:
        ax.set_xlim(-0.5, 0.5)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Loans" if v.kind == "month" else "Checkouts")
    ax.set_title("Loans by month" if v.kind == "month" else f"Checkouts by month, {v.period.year}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if hidden:
        ax.annotate(
            f"{hidden} suppressed value(s) not drawn",
            (0, -0.32),
            xycoords="axes fraction",
            fontsize=7,
            color="#555555",
        )
    _save(fig, path)
    plt.close(fig)
    return True


def _bars(
    path: Path,
    title: str,
    cats: list[str],
    series: dict[str, list],
    ylabel: str,
    stacked: bool = False,
) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    n = max(1, len(series))
    width = 0.8 / (1 if stacked else n)
    bottom = [0.0] * len(cats)
    hidden = 0
    for i, (name, vals) in enumerate(series.items()):
        ys = [0.0 if x is None else float(x) for x in vals]
        hidden += sum(1 for x in vals if x is None)
        if stacked:
            ax.bar(
                range(len(cats)),
                ys,
                0.7,
                bottom=bottom,
                label=name,
                color=PALETTE[i % len(PALETTE)],
            )
            bottom = [a + b for a, b in zip(bottom, ys, strict=True)]
        else:
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(cats))]
            ax.bar(xs, ys, width, label=name, color=PALETTE[i % len(PALETTE)])
    if len(series) == 1 and not stacked:
        for j, x in enumerate(next(iter(series.values()))):
            ax.annotate(
                fmt(x),
                (j, 0 if x is None else x),
                ha="center",
                va="bottom",
                xytext=(0, 2),
                textcoords="offset points",
                fontsize=8,
            )
    ax.set_xticks(range(len(cats)), cats)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if hidden:
        ax.annotate(
            f"{hidden} suppressed value(s) not drawn",
            (0, -0.18),
            xycoords="axes fraction",
            fontsize=7,
            color="#555555",
        )
    _save(fig, path)
    plt.close(fig)


def _series(df, rows: str, cols: str, value: str, where: dict):
    d = _only(df, where)
    cats = [c for c in dict.fromkeys(d[rows]) if c != TOTAL]
    keys = [c for c in dict.fromkeys(d[cols]) if c != TOTAL]
    cell = {(r, c): _num(x) for r, c, x in d[[rows, cols, value]].itertuples(index=False)}
    return cats, {k: [cell.get((r, k)) for r in cats] for k in keys}


def render_charts(v: View, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    if v.empty:
        return made
    if chart_trend(v, folder / "trend_by_month.png"):
        made.append("trend_by_month")
    if v.kind == "month":
        t1 = v.table("circulation_by_branch_item_type_patron_category")
        t2 = v.table("circulation_by_branch_item_type_age_band")
        for name, title, df, dim in (
            ("loans_by_branch", f"Loans by branch, {v.period.title()}", t1, "branch"),
            ("loans_by_item_type", "Loans by item type, all branches", t1, "item_type"),
            ("loans_by_age_band", "Loans by age band, all branches", t2, "age_band"),
        ):
            if df is None:
                continue
            others = [c for c in df.columns if c not in (dim, "loans", "status")]
            d = _only(df, {**{c: TOTAL for c in others}, dim: "!Total"})
            _bars(
                folder / f"{name}.png",
                title,
                list(d[dim]),
                {"Loans": [_num(x) for x in d["loans"]]},
                "Loans",
            )
            made.append(name)
    else:
        sr = v.table("state_report")
        d = sr[sr["status"] != "not available"]
        cats, ser = _series(d, "branch", "element", "value", {})
        _bars(
            folder / "elements_by_branch.png",
            f"Circulation by branch, {v.period.year}",
            cats,
            ser,
            "Circulation",
        )
        made.append("elements_by_branch")
    tb = v.table("active_borrowers_by_branch")
    if tb is not None:
        d = tb[tb["branch"] != TOTAL]
        _bars(
            folder / "borrowers_by_branch.png",
            "Active borrowers by branch",
            list(d["branch"]),
            {"Borrowers": [_num(x) for x in d["borrowers"]]},
            "Borrowers",
        )
        made.append("borrowers_by_branch")
    return made


# -- HTML --------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;
 max-width:960px;margin:2em auto;padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.1em} h2{font-size:1.15em;margin-top:1.6em;
 border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#666;font-size:.9em}
.figures{display:flex;gap:1em;margin:1.2em 0}
.figure{flex:1;background:#f3f6f9;border-radius:6px;padding:.8em 1em}
.figure .n{font-size:1.8em;font-weight:600;color:#1b5e8a}
.figure .l{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0 1em}
th,td{padding:.25em .7em;border-bottom:1px solid #e4e4e4;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f6f9} tr:last-child td{font-weight:600}
figure{margin:1em 0} figure img{max-width:100%} figcaption{color:#555;font-size:.85em}
.notice{background:#fff4d6;border-left:4px solid #e0a800;padding:.7em 1em}
.notes li{margin-bottom:.4em;font-size:.9em}
"""


def render_html(v: View, charts: list[str], path: Path) -> None:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(_title(v))}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(_title(v))}</h1>",
        f"<p class='meta'>{e(v.library)} · generated {e(v.generated_at)} · policy version "
        f"{e(v.policy_version)} · {e(_mode_text(v))}</p>",
    ]
    for s in sections(v):
        k = s["kind"]
        if k == "figures":
            parts.append(
                "<div class='figures'>"
                + "".join(
                    f"<div class='figure'><div class='n'>{e(n)}</div>"
                    f"<div class='l'>{e(label)}</div></div>"
                    for label, n in s["items"]
                )
                + "</div>"
            )
        elif k == "chart" and s["name"] in charts:
            parts.append(
                f"<figure><img src='charts/{s['name']}.png' alt='{e(s['caption'])}'>"
                f"<figcaption>{e(s['caption'])}</figcaption></figure>"
            )
        elif k == "heading":
            parts.append(f"<h2>{e(s['text'])}</h2>")
        elif k == "table":
            parts.append(
                "<table><thead><tr>"
                + "".join(f"<th>{e(str(h))}</th>" for h in s["head"])
                + "</tr></thead><tbody>"
                + "".join(
                    "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>"
                    for row in s["body"]
                )
                + "</tbody></table>"
            )
        elif k == "text":
            parts.append(f"<p>{e(s['text'])}</p>")
        elif k == "notice":
            parts.append(f"<p class='notice'>{e(s['text'])}</p>")
    parts.append("<h2>About these figures</h2><ul class='notes'>")
    parts += [f"<li>{e(n)}</li>" for n in notes(v)]
    parts.append("</ul>")
    if v.files:
        parts.append(
            "<h2>Files</h2><p class='meta'>"
            + ", ".join(f"<a href='{e(f)}'>{e(f)}</a>" for f in v.files)
            + "</p>"
        )
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def _mode_text(v: View) -> str:
    return "differential privacy" if v.mode != "suppression" else "cell suppression"


def _title(v: View) -> str:
    if v.kind == "month":
        return f"Library statistics: {v.period.title()}"
    return f"Annual statistics for the state report: {v.period.year}"


# -- PDF ---------------------------------------------------------------------------------------


def render_pdf(v: View, charts: list[str], chart_dir: Path, path: Path) -> int:
    from reportlab.lib import colors  # noqa: PLC0415
    from reportlab.lib.pagesizes import letter  # noqa: PLC0415
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet  # noqa: PLC0415
    from reportlab.lib.units import inch  # noqa: PLC0415
    from reportlab.platypus import (  # noqa: PLC0415
        Image,
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        TableStyle,  # noqa: PLC0415
    )
    from reportlab.platypus import Table as RLTable  # noqa: PLC0415

    ss = getSampleStyleSheet()
    body = ParagraphStyle("b", parent=ss["BodyText"], fontName="Helvetica", fontSize=9, leading=12)
    small = ParagraphStyle("s", parent=body, fontSize=8, textColor=colors.HexColor("#555555"))
    h1 = ParagraphStyle(
        "h1", parent=ss["Title"], fontName="Helvetica-Bold", fontSize=18, alignment=0
    )
    h2 = ParagraphStyle(
        "h2",
        parent=ss["Heading2"],
        fontName="Helvetica-Bold",
        fontSize=12,
        textColor=colors.HexColor("#1b5e8a"),
    )
    e = html.escape
    story = [
        Paragraph(e(_title(v)), h1),
        Paragraph(
            e(f"{v.library} · generated {v.generated_at} · policy version {v.policy_version}"),
            small,
        ),
        Spacer(1, 10),
    ]
    page_w = letter[0] - 1.5 * inch
    for s in sections(v):
        k = s["kind"]
        if k == "figures":
            cells = [
                [
                    Paragraph(
                        f"<font size=16 color='#1b5e8a'><b>{e(n)}</b></font><br/>"
                        f"<font size=8>{e(label)}</font>",
                        body,
                    )
                    for label, n in s["items"]
                ]
            ]
            t = RLTable(cells, colWidths=[page_w / len(s["items"])] * len(s["items"]))
            t.setStyle(
                TableStyle(
                    [
                        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#f3f6f9")),
                        ("BOX", (0, 0), (-1, -1), 0.5, colors.white),
                        ("INNERGRID", (0, 0), (-1, -1), 4, colors.white),
                        ("TOPPADDING", (0, 0), (-1, -1), 8),
                        ("BOTTOMPADDING", (0, 0), (-1, -1), 8),
                    ]
                )
            )
            story += [t, Spacer(1, 8)]
        elif k == "chart" and s["name"] in charts:
            from PIL import Image as PILImage  # noqa: PLC0415

            p = chart_dir / f"{s['name']}.png"
            with PILImage.open(p) as im:
                w, h = im.size
            width = min(page_w, 6.8 * inch)
            story.append(
                KeepTogether(
                    [
                        Image(str(p), width=width, height=width * h / w),
                        Paragraph(e(s["caption"]), small),
                        Spacer(1, 8),
                    ]
                )
            )
        elif k == "heading":
            story.append(Paragraph(e(s["text"]), h2))
        elif k == "table":
            data = [s["head"], *s["body"]]
            t = RLTable(data, repeatRows=1, hAlign="LEFT")
            t.setStyle(
                TableStyle(
                    [
                        ("FONTNAME", (0, 0), (-1, -1), "Helvetica"),
                        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                        ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
                        ("FONTSIZE", (0, 0), (-1, -1), 8),
                        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f3f6f9")),
                        ("LINEBELOW", (0, 0), (-1, -1), 0.3, colors.HexColor("#dddddd")),
                        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                    ]
                )
            )
            story += [t, Spacer(1, 6)]
        elif k in ("text", "notice"):
            story.append(Paragraph(e(s["text"]), body))
    story.append(Paragraph("About these figures", h2))
    story += [Paragraph(e(n), body) for n in notes(v)]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=letter,
        leftMargin=0.75 * inch,
        rightMargin=0.75 * inch,
        topMargin=0.7 * inch,
        bottomMargin=0.7 * inch,
        title=_title(v),
        author=v.library,
        pageCompression=0,
        invariant=1,
    )
    pages = {"n": 0}

    def footer(canvas, _doc):
        pages["n"] += 1
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#777777"))
        canvas.drawString(0.75 * inch, 0.45 * inch, f"{_title(v)} · page {pages['n']}")

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    path.write_bytes(buf.getvalue())
    return pages["n"]
