"""The disclosure package without Airflow: exactly what the request's holds cover (same
selection as the engine's legal-hold blocker), private files, the approval recorded,
and every reason to refuse checked before anything is written."""

from __future__ import annotations

import json
import stat
from datetime import date, datetime

import pytest
from koha_builders import T, add_old_issue, add_patron
from legal_builders import CANARY, CANARY_BN, add_canary, koha_home, new_request
from patron_privacy import disclosure, legal_holds, requests_register
from sqlalchemy import insert, update


@pytest.fixture
def koha(home):
    eng = koha_home(home)
    with eng.begin() as c:
        add_canary(c, dateexpiry=date(2022, 1, 1), password="$2a$08$secrethash")
        add_patron(c, 10)
        add_old_issue(c, 1, CANARY_BN, datetime(2026, 8, 20))  # before the range
        add_old_issue(c, 2, CANARY_BN, datetime(2026, 9, 1), item=2)  # first day
        add_old_issue(c, 3, CANARY_BN, datetime(2026, 10, 31, 23, 59, 59), item=3)  # last second
        add_old_issue(c, 4, CANARY_BN, datetime(2026, 11, 1), item=4)  # after the range
        add_old_issue(c, 5, 10, datetime(2026, 9, 15), item=5)  # someone else
        c.execute(
            insert(T["old_reserves"]),
            [
                {
                    "reserve_id": 1,
                    "borrowernumber": CANARY_BN,
                    "biblionumber": 1,
                    "branchcode": "MAIN",
                    "reservedate": date(2026, 9, 2),
                    "timestamp": datetime(2026, 9, 10),
                }
            ],
        )
    return eng


def hold(ref, **kw) -> int:
    args = {
        "source": "koha",
        "patron_ids": [str(CANARY_BN)],
        "request_ref": ref,
        "categories": ["returned_loans"],
        "date_from": date(2026, 9, 1),
        "date_to": date(2026, 10, 31),
    } | kw
    return legal_holds.place(
        requests_register.warehouse_engine(),
        legal_holds.validate_hold(**args),
        placed_at=datetime(2026, 11, 6),
    )


def test_package_holds_exactly_what_the_hold_covers(koha, home):
    ref = new_request()
    hold(ref)
    preview = disclosure.preview(ref)
    assert preview["records"] == {"koha.returned_loans": 2}
    body = disclosure.approval_body(preview)
    assert "2 records" in body and "1 patron(s)" in body
    assert all(v.lower() not in body.lower() for v in [*CANARY.values(), str(CANARY_BN)])

    out = disclosure.build_package(
        ref, approved_by="ceo", approved_at=datetime(2026, 11, 7, 10, 30), dag_run_id="run-1"
    )
    assert out["total_records"] == 2
    folder = home / "exports" / "disclosures" / ref
    package = json.loads((folder / "package.json").read_text())
    records = package["categories"]["koha.returned_loans"]["records"]
    assert [r["issue_id"] for r in records] == [2, 3]
    assert package["approved_by"] == "ceo" and package["total_records"] == 2
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in ("package.json", "manifest.json"):
        assert stat.S_IMODE((folder / f).stat().st_mode) == 0o600
    manifest = (folder / "manifest.json").read_text()
    assert str(CANARY_BN) not in manifest and "records" in manifest
    with requests_register.warehouse_engine().connect() as c:
        reviews = requests_register.reviews(c, ref)
    assert [(r["outcome"], r["reviewed_by"], r["package_records"]) for r in reviews] == [
        ("approved", "ceo", 2)
    ]
    assert reviews[0]["reviewed_at"] == datetime(2026, 11, 7, 10, 30)


def test_all_categories_and_no_secrets(koha, home):
    ref = new_request()
    hold(ref, categories=None, date_from=None, date_to=None)
    out = disclosure.build_package(
        ref, approved_by="ceo", approved_at=datetime(2026, 11, 7), dag_run_id="run-1"
    )
    package = json.loads((home / "exports" / "disclosures" / ref / "package.json").read_text())
    counts = {k: v["count"] for k, v in package["categories"].items()}
    assert counts["koha.returned_loans"] == 4
    assert counts["koha.hold_history"] == 1
    assert counts["koha.expired_patrons"] == 1
    assert out["total_records"] == sum(counts.values())
    patron = package["categories"]["koha.expired_patrons"]["records"][0]
    assert patron["surname"] == CANARY["surname"]
    assert not any("password" in k or "secret" in k for k in patron)
    assert "secrethash" not in json.dumps(package)


def test_two_holds_on_one_request_disclose_a_record_once(koha, home):
    ref = new_request()
    hold(ref)
    hold(ref, date_from=date(2026, 10, 1), date_to=None)
    out = disclosure.build_package(
        ref, approved_by="ceo", approved_at=datetime(2026, 11, 7), dag_run_id="run-1"
    )
    assert out["total_records"] == 3  # loans 2, 3 and 4; loan 3 only once


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "informal"}, "records are released only on a subpoena"),
        ({"counsel_reviewed_on": None}, "has no counsel review date"),
    ],
)
def test_not_ready_requests_build_nothing(koha, home, overrides, message):
    ref = new_request(**overrides)
    hold(ref)
    with pytest.raises(disclosure.DisclosureError, match=message):
        disclosure.build_package(
            ref, approved_by="ceo", approved_at=datetime(2026, 11, 7), dag_run_id="r"
        )
    assert not (home / "exports" / "disclosures" / ref).exists()
    with requests_register.warehouse_engine().connect() as c:
        assert requests_register.reviews(c, ref) == []


def test_released_hold_or_closed_request_builds_nothing(koha, home):
    ref = new_request()
    with pytest.raises(disclosure.DisclosureError, match="no active legal hold cites"):
        disclosure.preview(ref)
    hold_id = hold(ref)
    legal_holds.release(
        requests_register.warehouse_engine(), hold_id, released_at=datetime(2026, 11, 8)
    )
    with pytest.raises(disclosure.DisclosureError, match="no active legal hold cites"):
        disclosure.build_package(
            ref, approved_by="ceo", approved_at=datetime(2026, 11, 9), dag_run_id="r"
        )
    hold(ref)
    with requests_register.warehouse_engine().begin() as c:
        c.execute(
            update(requests_register.request_register)
            .where(requests_register.request_register.c.ref == ref)
            .values(decision="withdrawn", decided_on=date(2026, 11, 9))
        )
    with pytest.raises(disclosure.DisclosureError, match="was withdrawn"):
        disclosure.preview(ref)
    with pytest.raises(disclosure.DisclosureError, match="no request 'LE-2026-404'"):
        disclosure.preview("LE-2026-404")
    assert not (home / "exports" / "disclosures").exists()


def test_rejection_is_recorded_and_builds_nothing(koha, home):
    ref = new_request()
    hold(ref)
    disclosure.record_rejection(
        ref, rejected_by="deputy", rejected_at=datetime(2026, 11, 7, 9), dag_run_id="run-2"
    )
    with requests_register.warehouse_engine().connect() as c:
        reviews = requests_register.reviews(c, ref)
    assert [(r["outcome"], r["reviewed_by"], r["package_path"]) for r in reviews] == [
        ("rejected", "deputy", None)
    ]
    assert not (home / "exports" / "disclosures").exists()
