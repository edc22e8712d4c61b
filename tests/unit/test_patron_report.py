"""A patron's own records: the package holds that patron's rows and nobody else's, the
files are private, the HTML is escaped, and the warehouse log of the request holds no
patron value (scanned with the canary leak scanner)."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from koha_builders import AS_OF, T, add_old_issue, add_patron, make_koha
from leak_scan import digit_forms, scan_sqlite, scan_text
from patron_privacy import connections
from patron_privacy.cli import main
from patron_privacy.patron_report import PatronReportError, make_patron_report
from patron_privacy.warehouse import patron_record_requests
from sqlalchemy import create_engine, insert, select

A, B = 90817, 90818
A_VALUES = {
    "surname": "Qwertyuiopa",
    "firstname": "Asdfghjklz",
    "email": "canary-a@example.org",
    "cardnumber": "29990000123456",
    "phone": "860-555-0199",
    "userid": "canary_login_a",
}
B_VALUES = {
    "surname": "Mnbvcxzlkj",
    "firstname": "Poiuytrewq",
    "email": "canary-b@example.org",
    "cardnumber": "29990000654321",
    "phone": "860-555-0288",
    "userid": "canary_login_b",
}
A_CONTENT = ["canary query A", "<script>alert('A')</script> desk note", "suggest-reason-A"]
B_CONTENT = ["canary query B", "desk note for B", "suggest-reason-B"]


@pytest.fixture
def koha(home, monkeypatch):
    path = home / "sources" / "koha.db"
    path.parent.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{path}")
    make_koha(engine)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KOHA_DB", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    when = AS_OF - timedelta(days=3)
    with engine.begin() as c:
        add_patron(c, A, password="hash-canary-A", **A_VALUES)
        add_patron(c, B, **B_VALUES)
        add_old_issue(c, 1, A, when, item=1)
        add_old_issue(c, 2, B, when, item=2)
        c.execute(
            insert(T["statistics"]),
            [
                {"datetime": when, "type": "issue", "itemnumber": 1, "borrowernumber": A},
                {"datetime": when, "type": "issue", "itemnumber": 2, "borrowernumber": B},
            ],
        )
        for bn, q in ((A, A_CONTENT[0]), (B, B_CONTENT[0])):
            c.execute(
                insert(T["search_history"]),
                [
                    {
                        "userid": bn,
                        "sessionid": "s",
                        "query_desc": q,
                        "query_cgi": q,
                        "total": 1,
                        "time": when,
                    }
                ],
            )
        for bn, msg in ((A, A_CONTENT[1]), (B, B_CONTENT[1])):
            c.execute(
                insert(T["messages"]),
                [{"borrowernumber": bn, "message_type": "L", "message": msg, "manager_id": 2}],
            )
        for bn, why in ((A, A_CONTENT[2]), (B, B_CONTENT[2])):
            c.execute(
                insert(T["suggestions"]),
                [
                    {
                        "suggestedby": bn,
                        "suggesteddate": when.date(),
                        "STATUS": "ASKED",
                        "title": "A Title",
                        "patronreason": why,
                    }
                ],
            )
        c.execute(
            insert(T["action_logs"]),
            [
                {
                    "timestamp": when,
                    "user": 2,
                    "module": "MEMBERS",
                    "action": "MODIFY",
                    "object": A,
                },
                # object = A's number, but in a module where it means a biblio: not A's.
                {"timestamp": when, "user": 2, "module": "CATALOGUING", "action": "X", "object": A},
            ],
        )
        c.execute(
            insert(T["borrower_relationships"]),
            [{"guarantor_id": A, "guarantee_id": B, "relationship": "parent"}],
        )
        c.execute(
            insert(T["patronimage"]),
            [{"borrowernumber": A, "mimetype": "image/png", "imagefile": b"\x89PNG-A"}],
        )
        c.execute(
            insert(T["pseudonymized_transactions"]),
            [{"hashed_borrowernumber": "$2a$08$x", "datetime": when, "branchcode": "MAIN"}],
        )
    yield engine
    engine.dispose()


def _package(out: dict) -> dict:
    return json.loads(Path(out["json"]).read_text())


def test_package_holds_the_patrons_rows_and_nobody_elses(koha, home):
    out = make_patron_report("koha", str(A), "CONSENT-2026-0007")
    text = Path(out["json"]).read_text()
    for value in [*A_VALUES.values(), A_CONTENT[0], A_CONTENT[2]]:
        assert value in text, value
    for value in [*B_VALUES.values(), *B_CONTENT]:
        assert value not in text, value
    assert str(B) not in text  # not even B's number in a shared row
    pkg = _package(out)
    tables = {t["table"]: t for t in pkg["tables"]}
    assert tables["borrowers"]["row_count"] == 1
    assert {r["issue_id"] for r in tables["old_issues"]["rows"]} == {1}
    assert tables["statistics"]["row_count"] == 1
    assert tables["search_history"]["rows"][0]["query_desc"] == A_CONTENT[0]
    # Action logs: only the patron module row; CATALOGUING's object is a biblio.
    assert [r["module"] for r in tables["action_logs"]["rows"]] == ["MEMBERS"]
    # A shared row (A is B's guarantor): B's number is blanked.
    rel = tables["borrower_relationships"]["rows"]
    assert rel[0]["guarantor_id"] == A and rel[0]["guarantee_id"] is None
    assert "guarantee_id" in tables["borrower_relationships"]["blanked_columns_other_people"]
    # Staff who wrote the message: not A, so blanked.
    assert tables["messages"]["rows"][0]["manager_id"] is None
    # Credentials are withheld, the photo is there.
    assert tables["borrowers"]["rows"][0]["password"] == "[withheld: credential]"
    assert "hash-canary-A" not in text
    assert tables["patronimage"]["rows"][0]["imagefile"]["bytes"] == 6
    assert {"table": "pseudonymized_transactions", "column": "hashed_borrowernumber"} in [
        {k: n[k] for k in ("table", "column")} for n in pkg["not_searchable"]
    ]
    assert out["counts"] == {t: v["row_count"] for t, v in tables.items()}


def test_files_are_private_and_named_by_request(koha, home):
    out = make_patron_report("koha", str(A), "CONSENT-2026-0007")
    for key in ("json", "html"):
        path = Path(out[key])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert str(A) not in path.name and out["request_id"] in path.name
    directory = Path(out["json"]).parent
    assert directory == home / "exports" / "patron-reports"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_html_is_escaped(koha, tmp_path):
    out = make_patron_report("koha", str(A), "CONSENT-2026-0007", tmp_path / "out")
    page = Path(out["html"]).read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;A&#x27;)&lt;/script&gt; desk note" in page
    assert A_VALUES["surname"] in page and B_VALUES["surname"] not in page


def test_warehouse_log_holds_counts_and_no_patron_value(koha, home):
    out = make_patron_report("koha", str(A), "CONSENT-2026-0007")
    wh = connections.engine_for(connections.WAREHOUSE_DB)
    with wh.connect() as c:
        rows = c.execute(select(patron_record_requests)).mappings().all()
    wh.dispose()
    assert len(rows) == 1
    row = rows[0]
    assert row["request_id"] == out["request_id"] and row["consent_ref"] == "CONSENT-2026-0007"
    assert json.loads(row["counts_by_table"]) == out["counts"]
    assert row["total_rows"] == out["total_rows"]
    needles = [str(A), *A_CONTENT, "hash-canary-A"]
    for value in A_VALUES.values():
        needles += digit_forms(value)
    findings = scan_sqlite(home / "warehouse.db", needles)
    assert findings == [], [str(f) for f in findings]


def test_cli_prints_counts_only(koha, capsys):
    code = main(["patron-report", "--source", "koha", "--patron", str(A), "--consent-ref", "CR-7"])
    assert code == 0
    out = capsys.readouterr()
    needles = [*A_VALUES.values(), *A_CONTENT, "hash-canary-A"]
    assert scan_text(out.out + out.err, needles, "cli output") == []
    assert "request " in out.out and "0600" in out.out


@pytest.mark.parametrize(
    "ref",
    [f"CR-{A}", "for canary-a@example.org", f"card {A_VALUES['cardnumber']}", "x y", "", "a" * 65],
)
def test_consent_ref_must_not_carry_the_patrons_identifiers(koha, ref):
    with pytest.raises(PatronReportError):
        make_patron_report("koha", str(A), ref)


def test_consent_ref_with_a_name_is_refused_by_the_cli(koha, capsys):
    code = main(
        [
            "patron-report",
            "--source",
            "koha",
            "--patron",
            str(A),
            "--consent-ref",
            f"ref-{A_VALUES['surname']}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "consent-ref" in err and A_VALUES["surname"] not in err


def test_unknown_patron_gets_an_empty_package(koha, tmp_path):
    out = make_patron_report("koha", "123456789", "CR-8", tmp_path / "o")
    assert out["patron_record_found"] is False and out["total_rows"] == 0
    assert datetime.fromisoformat(_package(out)["generated_at"])
