"""The statistics release end to end on SQLite: outputs, reruns, bad input, the PII gate
(with canaries seeded into the Koha source and into the facts), differential privacy,
the annual release, planned tables plugging in, and a look at the rendered pages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from koha_builders import add_patron, make_koha
from leak_scan import digit_forms, files_scanned, scan_text, scan_tree
from libki_builders import add_user, make_libki
from patron_privacy import cli, connections
from patron_privacy.facts import write_circulation_facts
from patron_privacy.release import pii_gate
from patron_privacy.release.build import build
from patron_privacy.release.config import DisclosureConfigError
from patron_privacy.release.folder import StagedReleaseError
from patron_privacy.release.publish import publish, publish_staged
from patron_privacy.release.tables import ReleaseInputError
from patron_privacy.warehouse import create_warehouse
from sqlalchemy import inspect, text

AS_OF = date(2026, 11, 30)
REPO = Path(__file__).resolve().parents[2]
BRANCHES = ("MAIN", "NORTH", "EAST")
CANARIES = {
    "surname": "Quackenbushwhistle",
    "firstname": "Zebedaya",
    "email": "zebedaya.q@canary-mail.example.org",
    "card": "27771234567890",
    "phone": "860-555-0142",
}


def fact(i: int, day: date, **kw) -> dict:
    row = {
        "fact_key": f"{i:064x}",
        "source": "koha",
        "loan_date": day,
        "return_date": day,
        "branch": "MAIN",
        "item_type": "BK",
        "collection": "FIC",
        "patron_category": "ADULT",
        "category_type": "A",
        "age_band": "19-64",
        "patron_pseudonym": f"p{i % 97:062d}",
        "renewals": i % 2,
        "reporting_period": str(day.year),
    }
    row.update(kw)
    return row


def october_facts(extra: list[dict] | None = None) -> list[dict]:
    """A month with big and small cells: something to suppress and something to show."""
    rows, i = [], 0
    plan = [
        ("MAIN", "BK", "ADULT", "19-64", 120),
        ("MAIN", "BK", "CHILD", "0-11", 60),
        ("MAIN", "DVD", "ADULT", "65+", 40),
        ("MAIN", "DVD", "CHILD", "0-11", 3),
        ("NORTH", "BK", "ADULT", "19-64", 70),
        ("NORTH", "BK", "CHILD", "12-18", 2),
        ("NORTH", "DVD", "ADULT", "19-64", 25),
        ("EAST", "BK", "ADULT", "65+", 45),
        ("EAST", "DVD", "ADULT", "19-64", 1),
        ("EAST", "BK", "CHILD", "0-11", 30),
    ]
    for branch, itype, cat, band, n in plan:
        for _ in range(n):
            i += 1
            coll = "JUV" if cat == "CHILD" else "FIC"
            rows.append(
                fact(
                    i,
                    date(2026, 10, 1 + i % 28),
                    branch=branch,
                    item_type=itype,
                    patron_category=cat,
                    category_type=cat[0],
                    age_band=band,
                    collection=coll,
                )
            )
    return rows + (extra or [])


@pytest.fixture
def library(home):
    """Koha with patrons (canaries among them) and a warehouse with October's facts."""
    koha = connections.engine_for(connections.KOHA_DB)
    make_koha(koha)
    with koha.begin() as c:
        for bn in range(10, 40):
            add_patron(c, bn)
        add_patron(
            c,
            99,
            surname=CANARIES["surname"],
            firstname=CANARIES["firstname"],
            email=CANARIES["email"],
            cardnumber=CANARIES["card"],
            phone=CANARIES["phone"],
        )
    koha.dispose()
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(wh)
    with wh.begin() as c:
        write_circulation_facts(c, october_facts())
    wh.dispose()
    return home


@pytest.fixture
def out(tmp_path):
    return tmp_path / "exports"


def add_facts(rows: list[dict]) -> None:
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    with wh.begin() as c:
        write_circulation_facts(c, rows)
    wh.dispose()


def needles() -> list[str]:
    out = [CANARIES["surname"], CANARIES["firstname"], CANARIES["email"]]
    out += digit_forms(CANARIES["card"]) + digit_forms(CANARIES["phone"])
    return out


def scan_release(folder: Path) -> list:
    """Raw bytes of every file, and every decoded piece (Parquet cells, PDF strings)."""
    assert files_scanned(folder) > 0
    found = scan_tree(folder, needles())
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        for piece in pii_gate.pieces_of(f):
            found += scan_text(piece, needles(), str(f))
    return found


# -- a normal release ------------------------------------------------------------------------


def test_monthly_release_writes_every_output_with_a_passing_audit(library, out):
    result = publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    folder = out / "2026-10"
    assert result.path == folder
    m = json.loads((folder / "manifest.json").read_text())
    assert m["period"] == "2026-10" and m["release"] == "monthly" and not m["empty"]
    assert m["suppression"]["threshold"] == 5
    assert m["suppression"]["suppressed_range"] == [1, 4]
    assert m["audit"]["passed"] is True
    assert m["audit"]["suppressed_cells"] == m["suppression"]["suppressed_cells"] > 0
    for cell in m["audit"]["cells"]:
        assert cell["passes"] and cell["why"]
        assert cell["min"] <= 1 or cell["min"] >= 5
    assert m["policy_version"] and m["generated_at"]
    assert m["pii_gate"]["passed"] is True and m["pii_gate"]["patron_names_checked"] >= 30
    available = [t for t in m["tables"] if t["available"]]
    assert {t["name"] for t in available} == {
        "circulation_by_branch_item_type_patron_category",
        "circulation_by_branch_item_type_age_band",
        "active_borrowers_by_branch",
    }
    planned = {t["name"]: t for t in m["tables"] if not t["available"]}
    assert "pc_sessions_by_branch_weekday_hour" in planned
    reason = planned["pc_sessions_by_branch_weekday_hour"]["reason"]
    # Before issue 4's facts the table is missing; once its schema lands, it is empty.
    assert "no fact table pc_session_facts" in reason or "no facts recorded yet" in reason
    assert not list(folder.glob("pc_sessions*"))  # not faked
    for t in available:
        csv = pd.read_csv(folder / f"{t['name']}.csv", keep_default_na=False, na_values=[""])
        pq = pd.read_parquet(folder / f"{t['name']}.parquet")
        assert len(csv) == len(pq) == t["rows"] == m["row_counts"][t["name"]]
        assert list(csv.columns) == list(pq.columns) == t["columns"]
    t1 = pd.read_parquet(folder / "circulation_by_branch_item_type_patron_category.parquet")
    row = t1[(t1.branch == "MAIN") & (t1.item_type == "DVD") & (t1.patron_category == "CHILD")]
    assert row["loans"].isna().all() and (row["status"] == "suppressed").all()
    grand = t1[(t1.branch == "Total") & (t1.item_type == "Total") & (t1.patron_category == "Total")]
    assert int(grand["loans"].iloc[0]) == 396
    shown = t1["loans"].dropna()
    assert not ((shown >= 1) & (shown <= 4)).any()
    for f in ("report.html", "report.pdf", "charts/trend_by_month.png"):
        assert (folder / f).stat().st_size > 0
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_strict_preset_suppresses_up_to_ten(library, tmp_path, out):
    publish("month", "2026-10", as_of=AS_OF, base_dir=out, preset="strict")
    m = json.loads((out / "2026-10" / "manifest.json").read_text())
    assert m["suppression"]["threshold"] == 11 and m["suppression"]["preset"] == "strict"
    t = pd.read_parquet(out / "2026-10" / "active_borrowers_by_branch.parquet")
    shown = t["borrowers"].dropna()
    assert not ((shown >= 1) & (shown <= 10)).any()


def test_a_rerun_replaces_the_release_whole_and_a_failed_one_leaves_it(
    library, tmp_path, monkeypatch, out
):
    publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    folder = out / "2026-10"
    (folder / "stale-from-an-old-run.txt").write_text("x")
    first = json.loads((folder / "manifest.json").read_text())
    add_facts([fact(10_000 + i, date(2026, 10, 5), branch="NORTH") for i in range(20)])
    publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    second = json.loads((folder / "manifest.json").read_text())
    assert not (folder / "stale-from-an-old-run.txt").exists()
    assert (
        second["facts_counted"]["circulation_facts"]
        == first["facts_counted"]["circulation_facts"] + 20
    )

    from patron_privacy.release import report

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render_pdf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert json.loads((folder / "manifest.json").read_text()) == second
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["2026-10"]


def test_a_period_with_no_data_publishes_an_empty_release_that_says_so(library, tmp_path, out):
    publish("month", "2026-07", as_of=AS_OF, base_dir=out)
    folder = out / "2026-07"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["empty"] is True
    assert "no circulation facts for 2026-07" in m["note"]
    assert m["audit"]["passed"] is True
    for t in (t for t in m["tables"] if t["available"]):
        d = pd.read_parquet(folder / t["files"]["parquet"])
        assert len(d) <= 1  # at most the grand total, which is zero
        assert all(int(v) == 0 for c in d.columns if d[c].dtype == "Int64" for v in d[c])
    assert "No activity was recorded" in (folder / "report.html").read_text()
    assert (folder / "report.pdf").stat().st_size > 0


# -- bad input: refused, nothing published ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"when": "2026-13"}, ReleaseInputError, "unknown period '2026-13'"),
        ({"when": "October"}, ReleaseInputError, "expected a month as YYYY-MM"),
        ({"when": "2026-11"}, ReleaseInputError, "not complete as of 2026-11-30"),
        ({"threshold": 1}, DisclosureConfigError, "--threshold: expected a whole number"),
        ({"threshold": 0}, DisclosureConfigError, "--threshold"),
        ({"threshold": "five"}, DisclosureConfigError, "--threshold"),
        ({"threshold": 5.5}, DisclosureConfigError, "--threshold"),
        ({"epsilon": 0}, DisclosureConfigError, "--epsilon: expected a number"),
        ({"epsilon": -1.0}, DisclosureConfigError, "--epsilon"),
        ({"epsilon": float("nan")}, DisclosureConfigError, "--epsilon"),
        ({"epsilon": 50}, DisclosureConfigError, "--epsilon"),
        ({"preset": "lenient"}, DisclosureConfigError, "unknown preset 'lenient'"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_publishes_nothing(
    library, out, kwargs, error, message
):
    when = kwargs.pop("when", "2026-10")
    with pytest.raises(error, match=message.replace("(", r"\(")):
        publish("month", when, as_of=AS_OF, base_dir=out, **kwargs)
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert written == []


def test_a_missing_fact_table_is_refused(home, tmp_path, out):
    make_koha(connections.engine_for(connections.KOHA_DB))
    connections.engine_for(connections.WAREHOUSE_DB).dispose()
    with pytest.raises(ReleaseInputError, match="no fact table circulation_facts"):
        publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert not list(out.rglob("*.csv"))


def test_an_invalid_config_file_lists_every_problem(library, tmp_path, out):
    bad = tmp_path / "disclosure.yaml"
    bad.write_text("suppression: {threshold: 1}\ndifferential_privacy: {epsilon: 0}\n")
    with pytest.raises(DisclosureConfigError) as exc:
        publish("month", "2026-10", as_of=AS_OF, base_dir=out, config_path=bad)
    assert "suppression.threshold" in str(exc.value)
    assert "differential_privacy.epsilon" in str(exc.value)


def test_cli_refuses_bad_input_with_exit_2(library, tmp_path, capsys, out):
    rc = cli.main(["publish", "--period", "2026-13", "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown period '2026-13'" in err and "nothing was published" in err
    rc = cli.main(
        [
            "publish",
            "--period",
            "2026-10",
            "--as-of",
            "2026-11-30",
            "--threshold",
            "0",
            "--out-dir",
            str(out),
        ]
    )
    assert rc == 2 and "--threshold" in capsys.readouterr().err
    rc = cli.main(
        ["publish", "--period", "2026-10", "--as-of", "2026-11-30", "--out-dir", str(out)]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "audit: passed" in out and "PII gate: passed" in out


# -- the PII gate and the canaries --------------------------------------------------------------


def test_canaries_in_the_source_never_reach_any_output(library, out):
    publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    publish("year", "2026", as_of=date(2027, 1, 15), base_dir=out)
    for period in ("2026-10", "2026"):
        assert scan_release(out / period) == []


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("patron_category", f"{CANARIES['firstname']} {CANARIES['surname']}", "PATRON_NAME"),
        ("age_band", CANARIES["surname"], "PATRON_NAME"),
        ("branch", CANARIES["email"], "EMAIL_ADDRESS"),
        ("item_type", CANARIES["card"], "CARD_NUMBER"),
        ("patron_category", CANARIES["phone"], "PHONE_NUMBER"),
    ],
)
def test_a_canary_in_the_facts_blocks_the_release_and_alerts(
    library, out, caplog, column, value, kind
):
    add_facts([fact(50_000 + i, date(2026, 10, 3), **{column: value}) for i in range(12)])
    with pytest.raises(pii_gate.PiiFound) as exc:
        publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert kind in exc.value.counts
    assert "nothing was published" in str(exc.value)
    assert not (out / "2026-10").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    assert any("blocked by the PII gate" in r.getMessage() for r in caplog.records)
    # The alert and the error carry counts only, never the value.
    assert all(value.lower() not in r.getMessage().lower() for r in caplog.records)
    assert value.lower() not in str(exc.value).lower()
    assert scan_tree(out, needles()) == []


def test_a_canary_in_a_column_no_table_publishes_goes_nowhere(library, out):
    add_facts(
        [fact(60_000 + i, date(2026, 10, 3), collection=CANARIES["email"]) for i in range(12)]
    )
    publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert scan_release(out / "2026-10") == []


def test_the_gate_fails_closed_when_koha_cannot_be_read(library, tmp_path, monkeypatch, out):
    monkeypatch.setenv("AIRFLOW_CONN_KOHA_DB", "mysql://root@127.0.0.1:1/koha")
    with pytest.raises(pii_gate.PiiGateUnavailable, match="failing closed"):
        publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert not (out / "2026-10").exists()


def test_names_from_the_public_computers_block_a_release_too(library, out, caplog):
    # A name only Libki knows (the sign-up system keeps walk-in users the ILS never saw).
    libki = connections.engine_for(connections.LIBKI_DB)
    make_libki(libki)
    with libki.begin() as c:
        add_user(c, 500, firstname="Ottoline", lastname="Brackenridgeworth")
    libki.dispose()
    name = "Ottoline Brackenridgeworth"
    add_facts([fact(70_000 + i, date(2026, 10, 3), patron_category=name) for i in range(12)])
    with pytest.raises(pii_gate.PiiFound) as exc:
        publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert exc.value.counts.get("PATRON_NAME")
    assert not (out / "2026-10").exists()
    assert all(name.lower() not in r.getMessage().lower() for r in caplog.records)


def test_the_manifest_names_the_systems_the_names_came_from(library, out):
    libki = connections.engine_for(connections.LIBKI_DB)
    make_libki(libki)
    libki.dispose()
    publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    manifest = json.loads((out / "2026-10" / "manifest.json").read_text())
    assert manifest["pii_gate"]["patron_names_from"] == ["koha_db", "libki_db"]


def test_a_defined_system_that_cannot_be_read_closes_the_gate(library, monkeypatch, out):
    monkeypatch.setenv("AIRFLOW_CONN_EVERGREEN_DB", "postgresql://nobody@127.0.0.1:1/evergreen")
    with pytest.raises(pii_gate.PiiGateUnavailable, match="evergreen_db.*failing closed"):
        publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert not (out / "2026-10").exists()


def test_without_an_ils_to_read_names_from_nothing_is_published(home, out):
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    create_warehouse(wh)
    with wh.begin() as c:
        write_circulation_facts(c, october_facts())
    wh.dispose()
    with pytest.raises(pii_gate.PiiGateUnavailable, match="no ILS"):
        publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert not (out / "2026-10").exists()


def test_names_that_are_ordinary_words_of_the_release_do_not_block_it(library, tmp_path, out):
    # A patron called "June Young": both are words of the report (a month, an age band
    # title); alone they do not block, but the full name would.
    koha = connections.engine_for(connections.KOHA_DB)
    with koha.begin() as c:
        add_patron(c, 100, surname="Young", firstname="June")
        add_patron(c, 101, surname="Main", firstname="Total")
    koha.dispose()
    result = publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert result.manifest["pii_gate"]["single_names_not_checked_alone"] >= 2
    gate = pii_gate.PiiGate.from_sources({"young", "june", "main", "total"})
    assert gate.scan_texts(["June Young"])["PATRON_NAME"] == 1
    assert not gate.scan_texts(["Young adult", "June 2026", "MAIN", "Total"])


# -- differential privacy -----------------------------------------------------------------------


def test_dp_mode_publishes_noisy_counts_and_spends_the_budget(library, tmp_path, out):
    cfg = tmp_path / "dp.yaml"
    cfg.write_text("differential_privacy: {enabled: true, epsilon: 1.0, annual_budget: 1.5}\n")
    result = publish("month", "2026-10", as_of=AS_OF, base_dir=out, config_path=cfg)
    d = result.manifest["differential_privacy"]
    assert d["epsilon"] == pytest.approx(1.0) and d["spent_after"] == pytest.approx(1.0)
    assert result.manifest["audit"]["passed"] is True
    assert result.manifest["suppression"]["suppressed_cells"] == 0
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    with wh.connect() as c:
        rows = c.execute(
            text("SELECT reporting_year, release_period, epsilon FROM dp_budget_ledger")
        ).all()
    wh.dispose()
    assert [(r[0], r[1]) for r in rows] == [("2026", "2026-10")]
    assert rows[0][2] == pytest.approx(1.0)
    with pytest.raises(ReleaseInputError, match="budget for 2026 would be exceeded"):
        publish("month", "2026-09", as_of=AS_OF, base_dir=out, config_path=cfg)
    assert not (out / "2026-09").exists()


# -- the annual release -------------------------------------------------------------------------


def test_annual_release_reports_state_elements_per_branch_and_in_total(library, tmp_path, out):
    result = publish("year", "2026", as_of=date(2027, 1, 15), base_dir=out)
    folder = out / "2026"
    sr = pd.read_csv(folder / "state_report.csv", keep_default_na=False, na_values=[""])
    tot = sr[(sr.element == "TOTCIR") & (sr.branch == "Total")]["value"].iloc[0]
    assert tot == 396 + sum(i % 2 for i in range(1, 397))  # checkouts + renewals
    kid = sr[(sr.element == "KIDCIRCL") & (sr.branch == "Total")]
    assert kid["value"].iloc[0] > 0
    assert set(sr[sr.element == "TOTCIR"]["branch"]) == {*BRANCHES, "Total"}
    regbor = sr[sr.element == "REGBOR"]
    assert regbor["status"].iloc[0] == "not available" and pd.isna(regbor["value"].iloc[0])
    els = {e["element"]: e for e in result.manifest["elements"]}
    assert set(els) == {"TOTCIR", "KIDCIRCL", "REGBOR"}
    assert "not derivable" in els["REGBOR"]["definition"]
    assert result.manifest["audit"]["passed"] is True
    with pytest.raises(ReleaseInputError, match="not complete"):
        publish("year", "2026", as_of=AS_OF, base_dir=out)


# -- planned tables plug in as their facts appear -----------------------------------------------


def test_a_planned_table_is_counted_once_its_fact_table_exists(library, tmp_path, out):
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    with wh.begin() as c:
        if not inspect(c).has_table("pc_session_facts"):  # until the Libki facts land
            c.execute(
                text(
                    "CREATE TABLE pc_session_facts (session_date DATE, branch TEXT, "
                    "weekday INTEGER, hour INTEGER, duration_minutes_band TEXT)"
                )
            )
        columns = {col["name"] for col in inspect(c).get_columns("pc_session_facts")}
        # Only the columns the release needs, plus whatever the real table requires.
        extra = {
            "fact_key": None,
            "source": "libki",
            "patron_type": "patron",
            "reporting_period": "2026",
        }
        extra = {k: v for k, v in extra.items() if k in columns}
        names = ["session_date", "branch", "weekday", "hour", "duration_minutes_band", *extra]
        insert = text(
            f"INSERT INTO pc_session_facts ({', '.join(names)}) "
            f"VALUES ({', '.join(':' + n for n in names)})"
        )
        for i in range(60):
            row = {
                "session_date": date(2026, 10, 1 + i % 28),
                "branch": "MAIN" if i % 5 else "EAST",
                "weekday": i % 7,
                "hour": 10 + i % 3,
                "duration_minutes_band": "<30" if i % 2 else "30-60",
                **extra,
            }
            if "fact_key" in row:
                row["fact_key"] = f"{i:064x}"
            c.execute(insert, row)
    wh.dispose()
    result = publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    by_name = {t["name"]: t for t in result.manifest["tables"]}
    assert by_name["pc_sessions_by_branch_weekday_hour"]["available"] is True
    assert by_name["pc_sessions_by_duration_band"]["available"] is True
    assert by_name["internet_use_by_branch"]["available"] is False
    d = pd.read_parquet(out / "2026-10" / "pc_sessions_by_duration_band.parquet")
    total = d[(d.branch == "Total") & (d.duration_minutes_band == "Total")]
    assert int(total["sessions"].iloc[0]) == 60
    assert result.manifest["audit"]["passed"] is True


# -- what the pages look like -------------------------------------------------------------------


def _not_blank(png: Path) -> bool:
    from PIL import Image, ImageStat

    with Image.open(png) as im:
        stat = ImageStat.Stat(im.convert("L"))
    return stat.stddev[0] > 5 and stat.mean[0] < 254


def test_the_html_and_pdf_render(library, tmp_path, out):
    publish("month", "2026-10", as_of=AS_OF, base_dir=out)
    folder = out / "2026-10"
    html = (folder / "report.html").read_text()
    charts = sorted((folder / "charts").glob("*.png"))
    assert len(charts) >= 4
    for png in charts:
        assert f"charts/{png.name}" in html
        assert _not_blank(png)
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(folder / "report.pdf"))
    assert len(pdf) >= 2
    assert len(pdf) == json.loads((folder / "manifest.json").read_text())["report"]["pdf_pages"]
    page = pdf[0].render(scale=1).to_pil()
    png = tmp_path / "page1.png"
    page.save(png)
    assert _not_blank(png)
    assert "Library statistics" in pdf[0].get_textpage().get_text_range()
    pdf.close()
    if shutil.which("pdftoppm"):
        subprocess.run(
            [
                "pdftoppm",
                "-r",
                "50",
                "-png",
                "-f",
                "1",
                "-l",
                "1",
                str(folder / "report.pdf"),
                str(tmp_path / "poppler"),
            ],
            check=True,
        )
        assert _not_blank(next(tmp_path.glob("poppler*.png")))
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:
        shot = tmp_path / "html.png"
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1000,1400",
                f"--screenshot={shot}",
                (folder / "report.html").as_uri(),
            ],
            check=False,
            timeout=120,
            capture_output=True,
        )
        if shot.exists():
            assert _not_blank(shot)


def test_large_counts_are_not_phone_numbers_but_ten_digits_are():
    gate = pii_gate.PiiGate(pii_gate.Names())
    assert not gate.scan_texts(["10000150", "2,123,456", "999999999"])
    assert gate.scan_texts(["8605550142"])["PHONE_NUMBER"] == 1
    assert gate.scan_texts(["860-555-0142"])["PHONE_NUMBER"] == 1
    assert gate.scan_texts(["27771234567890"])["CARD_NUMBER"] == 1


# -- built and published in two steps, as the monthly DAG's two tasks do ------------------------


def _in_a_fresh_interpreter(code: str, arg: Path) -> dict:
    """Run ``code`` (which prints a JSON line last) in an interpreter of its own, as a
    DAG task runs: what it imported is what that task would carry."""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(arg)],
        env=os.environ | {"PYTHONPATH": str(REPO / "include")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


HEAVY = "heavy = [m for m in ('pandas', 'scipy', 'matplotlib') if m in sys.modules]\n"


def _staged_in_a_fresh_process(path: Path) -> dict:
    """Publish a staged release the way the DAG's second task does: in a process of its own."""
    code = (
        "import json, sys\n"
        "from patron_privacy.release.publish import publish_staged\n"
        "r = publish_staged(sys.argv[1])\n"
        + HEAVY
        + "print(json.dumps({'path': str(r.path), 'heavy': heavy}))\n"
    )
    return _in_a_fresh_interpreter(code, path)


def test_a_staged_release_is_published_by_a_step_that_loads_none_of_the_builds_libraries(
    library, out
):
    staged = build("month", "2026-10", as_of=AS_OF, base_dir=out)
    assert staged.path.parent == out and staged.path.name.startswith(".2026-10.tmp-")
    assert staged.manifest["pii_gate"] == {"passed": None}
    assert not (out / "2026-10").exists()
    done = _staged_in_a_fresh_process(staged.path)
    assert done["heavy"] == []
    assert Path(done["path"]) == out / "2026-10"
    manifest = json.loads((out / "2026-10" / "manifest.json").read_text())
    assert manifest["pii_gate"]["passed"] is True
    assert manifest["row_counts"] == staged.manifest["row_counts"]
    assert not staged.path.exists()
    assert scan_release(out / "2026-10") == []


def test_the_check_before_a_build_loads_none_of_the_builds_libraries(library, out):
    """The monthly DAG's first task: the same refusals as the command line, without pandas."""
    code = (
        "import json, sys\n"
        "from datetime import date\n"
        "from patron_privacy.release.plan import plan\n"
        "from patron_privacy.release.tables import ReleaseInputError\n"
        "ok = plan('month', '2026-10', as_of=date(2026, 11, 30), base_dir=sys.argv[1])\n"
        "try:\n"
        "    plan('month', '2026-11', as_of=date(2026, 11, 30), base_dir=sys.argv[1])\n"
        "    refused = None\n"
        "except ReleaseInputError as exc:\n"
        "    refused = str(exc)\n"
        + HEAVY
        + "print(json.dumps({'period': ok.period.label, 'refused': refused, 'heavy': heavy}))\n"
    )
    done = _in_a_fresh_interpreter(code, out)
    assert done["heavy"] == []
    assert done["period"] == "2026-10"
    assert "2026-11 is not complete as of 2026-11-30" in done["refused"]
    assert not out.exists() or not any(out.iterdir())


def test_a_staged_release_with_personal_data_is_deleted_not_published(library, out, caplog):
    add_facts([fact(70_000 + i, date(2026, 10, 3), branch=CANARIES["email"]) for i in range(12)])
    staged = build("month", "2026-10", as_of=AS_OF, base_dir=out)
    with pytest.raises(pii_gate.PiiFound):
        publish_staged(staged.path)
    assert not staged.path.exists() and not (out / "2026-10").exists()
    assert any("blocked by the PII gate" in r.getMessage() for r in caplog.records)
    assert scan_tree(out, needles()) == []


def test_a_staged_release_waits_for_a_retry_when_names_cannot_be_read(library, monkeypatch, out):
    staged = build("month", "2026-10", as_of=AS_OF, base_dir=out)
    with monkeypatch.context() as m:
        m.setenv("AIRFLOW_CONN_KOHA_DB", "mysql://root@127.0.0.1:1/koha")
        with pytest.raises(pii_gate.PiiGateUnavailable, match="failing closed"):
            publish_staged(staged.path)
    assert staged.path.exists() and not (out / "2026-10").exists()
    publish_staged(staged.path)
    assert (out / "2026-10" / "manifest.json").exists()


def test_only_a_staged_release_that_is_still_there_can_be_published(library, out, tmp_path):
    first = build("month", "2026-10", as_of=AS_OF, base_dir=out)
    second = build("month", "2026-10", as_of=AS_OF, base_dir=out)
    with pytest.raises(StagedReleaseError, match="build the release again"):
        publish_staged(first.path)  # the later build swept it
    publish_staged(second.path)
    with pytest.raises(StagedReleaseError, match="build the release again"):
        publish_staged(second.path)  # already published
    elsewhere = tmp_path / "not-a-release"
    (elsewhere / "charts").mkdir(parents=True)
    (elsewhere / "manifest.json").write_text("{}")
    with pytest.raises(StagedReleaseError, match="not a staged release folder"):
        publish_staged(elsewhere)
    with pytest.raises(StagedReleaseError, match="not a staged release folder"):
        publish_staged(out / "2026-10")
    assert (out / "2026-10" / "manifest.json").exists()


def test_a_staged_dp_release_is_refused_if_the_budget_moved_since_it_was_built(
    library, tmp_path, out
):
    cfg = tmp_path / "dp.yaml"
    cfg.write_text("differential_privacy: {enabled: true, epsilon: 0.5, annual_budget: 1.5}\n")
    october = build("month", "2026-10", as_of=AS_OF, base_dir=out, config_path=cfg)
    publish("month", "2026-09", as_of=AS_OF, base_dir=out, config_path=cfg)
    with pytest.raises(ReleaseInputError, match="changed since release 2026-10 was built"):
        publish_staged(october.path)
    assert not (out / "2026-10").exists()
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    with wh.connect() as c:
        periods = c.execute(text("SELECT release_period FROM dp_budget_ledger")).scalars().all()
    wh.dispose()
    assert periods == ["2026-09"]
