"""The Privacy page without a running Airflow: what it shows from the warehouse, the
policy and the release manifests; that every route of the plugin's app asks for the
login; that only files a release's manifest names can be downloaded; and that no
canary patron value reaches the HTML.

The same app behind a real Airflow API server, and in a browser, is tested in
``tests/e2e/test_privacy_page_airflow.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta

import pytest
from koha_builders import AS_OF, add_old_issue
from leak_scan import scan_text
from legal_builders import CANARY, CANARY_BN, add_canary, add_fresh_loan, canary_needles, cli
from legal_builders import koha_home as make_home
from patron_privacy import privacy_page
from patron_privacy.bench_privacy_page import (
    PLUGIN,
    authenticated_client,
    fill_history,
    fill_legal,
    fill_releases,
    load_plugin,
)
from patron_privacy.policy import load_policy
from patron_privacy.warehouse import retention_audit, validation_runs
from sqlalchemy import insert, update

END = date(2026, 11, 30)


@pytest.fixture
def warehouse(home):
    return privacy_page.warehouse_engine()


def page(engine, home, days: int = 30) -> tuple[privacy_page.PageData, str]:
    data = privacy_page.gather(engine, load_policy(), home / "exports", days=days)
    return data, privacy_page.render_html(data)


def test_empty_warehouse_says_nothing_ran_yet(warehouse, home):
    data, html = page(warehouse, home)
    assert {s.verdict for s in data.sources} == {"never run"}
    assert data.trend_days == []
    assert html.count("never run") >= len(data.sources)
    assert "no history yet" in html
    assert "No statistics release published yet." in html
    # The schedule is the policy file's, rule by rule.
    policy = load_policy()
    assert len(data.schedule) == len(policy.rules)
    assert 'data-rule="koha.returned_loans"' in html


def test_last_night_per_source_with_findings_in_red(warehouse, home):
    fill_history(
        warehouse,
        end=END,
        days=30,
        findings_last_night={"koha.returned_loans": 3, "libcal.program_registrations": 12},
    )
    data, html = page(warehouse, home)
    by_source = {s.source: s for s in data.sources}
    koha = by_source["koha"]
    assert koha.as_of == datetime(2026, 11, 30)
    assert koha.verdict == "findings" and koha.remaining == 3
    assert by_source["evergreen"].verdict == "passed"
    libcal = by_source["libcal"]
    assert libcal.vendor_held and libcal.verdict == "findings" and libcal.remaining == 12
    assert "held by the vendor past window" in html
    assert "12 vendor still holds" in html
    assert "3 still identifying" in html
    # The summary card turns red with the total.
    assert 'class="card bad" data-card="Past window, still identifying">' in html
    # Thirty nights of trends per source, one point a night.
    assert len(data.trend_days) == 30
    assert all(v is not None for v in data.nightly_changed["koha"])
    assert data.held_past_window["koha"][-1] == 3
    assert html.count("<polyline") >= 2 * 6


def test_a_later_dry_run_is_not_the_last_run(warehouse, home):
    fill_history(warehouse, end=END, days=3)
    with warehouse.begin() as c:
        c.execute(
            insert(retention_audit),
            [
                {
                    "run_id": "manual__preview",
                    "policy_version": "x",
                    "as_of": datetime(2026, 12, 1),
                    "source": "koha",
                    "category": "returned_loans",
                    "mode": "dry_run",
                    "action": "anonymize",
                    "window": "P30D",
                    "cutoff": "-",
                    "matched": 50,
                    "changed": 0,
                    "kept_by_blocker": "{}",
                    "remaining": 50,
                    "data_errors": 0,
                    "facts_recorded": 0,
                    "batches": 0,
                    "duration_s": 0.0,
                    "recorded_at": datetime(2026, 12, 1, 9),
                }
            ],
        )
    data, _ = page(warehouse, home)
    koha = next(s for s in data.sources if s.source == "koha")
    assert koha.run_id.startswith("scheduled__2026-11-30")
    assert koha.verdict == "passed"
    assert data.held_past_window["koha"][-1] == 0


def test_an_incomplete_run_is_red_with_its_error(warehouse, home):
    fill_history(warehouse, end=END, days=2)
    with warehouse.begin() as c:
        c.execute(
            update(retention_audit)
            .where(
                retention_audit.c.source == "evergreen",
                retention_audit.c.as_of == datetime(2026, 11, 30),
            )
            .values(error="did not run: table action.circulation is missing")
        )
    data, html = page(warehouse, home)
    evergreen = next(s for s in data.sources if s.source == "evergreen")
    assert evergreen.verdict == "incomplete"
    assert "did not run: table action.circulation is missing" in html


def test_data_quality_shows_the_failed_checks_and_the_last_good_run(warehouse, home):
    fill_history(warehouse, end=END, days=5)
    with warehouse.begin() as c:
        c.execute(
            update(validation_runs)
            .where(
                validation_runs.c.source == "koha",
                validation_runs.c.as_of == datetime(2026, 11, 30),
                validation_runs.c.check_name == "check_3",
            )
            .values(passed=False, unexpected_count=17)
        )
    data, html = page(warehouse, home)
    koha = next(q for q in data.quality if q.source == "koha")
    assert koha.passed is False
    assert koha.failed == [{"check": "check_3", "column": "column_3", "unexpected": 17}]
    assert koha.last_good_as_of == datetime(2026, 11, 29)
    assert "1 of 24 checks failed" in html
    assert "check_3(column_3): 17 unexpected" in html


def test_new_rows_are_picked_up_between_requests(warehouse, home):
    fill_history(warehouse, end=END, days=3)
    first, _ = page(warehouse, home)
    fill_history(warehouse, end=END + timedelta(days=1), days=1, findings_last_night={})
    second, _ = page(warehouse, home)
    koha = [next(s for s in d.sources if s.source == "koha") for d in (first, second)]
    assert koha[0].as_of == datetime(2026, 11, 30)
    assert koha[1].as_of == datetime(2026, 12, 1)
    assert second.trend_days[-1] == date(2026, 12, 1)


def test_holds_and_requests_are_counts(warehouse, home):
    fill_legal(warehouse, today=END)
    data, html = page(warehouse, home)
    assert data.holds == {"active": 2, "by_source": {"koha": 2}, "patrons": 6}
    assert data.requests["open"] == 2
    assert data.requests["awaiting_counsel"] == 1
    assert data.requests["total"] == 3
    assert 'id="holds-active">2<' in html and 'id="requests-open">2<' in html
    for pid in ("9000", "9001", "9010"):  # the held patrons' ids are counted, never shown
        assert pid not in html
    assert "A police department" not in html  # nor the register's text


def test_releases_with_their_audit_and_download_links(warehouse, home):
    fill_releases(home / "exports", end=END, months=8)
    (home / "exports" / "board_reports").mkdir()  # not a release: no manifest
    data, html = page(warehouse, home)
    assert [r["period"] for r in data.releases] == [
        "2026-10",
        "2026-09",
        "2026-08",
        "2026-07",
        "2026-06",
        "2026-05",
    ]
    assert data.releases[0]["audit_passed"] is True
    assert 'href="/releases/2026-10/report.html"' in html


def test_every_route_asks_for_the_login_and_docs_are_off():
    from fastapi.routing import APIRoute  # noqa: PLC0415

    plugin = load_plugin()
    app = plugin.create_app()
    routes = list(app.routes)
    assert routes and all(isinstance(r, APIRoute) for r in routes), routes
    for r in routes:
        assert plugin.require_login in [d.call for d in r.dependant.dependencies], r.path
    view = plugin.PrivacyPagePlugin.external_views[0]
    assert view["href"] == "/privacy/" and view["url_route"] == "privacy"
    assert plugin.PrivacyPagePlugin.fastapi_apps[0]["url_prefix"] == "/privacy"


def test_the_login_is_airflows_get_user(monkeypatch):
    """require_login hands the request and its bearer credentials to Airflow's get_user."""
    import asyncio  # noqa: PLC0415

    from airflow.api_fastapi.core_api import security  # noqa: PLC0415

    seen = []

    async def fake_get_user(request, token, credentials):
        seen.append((request, token, credentials))
        return "the user"

    monkeypatch.setattr(security, "get_user", fake_get_user)
    plugin = load_plugin()
    assert asyncio.run(plugin.require_login("req", "creds")) == "the user"
    assert seen == [("req", None, "creds")]


def test_loading_the_plugin_does_not_import_the_api_server():
    """Every Airflow process, each task's included, loads the plugins folder."""
    code = (
        "import sys, importlib.util;"
        f"spec = importlib.util.spec_from_file_location('p', {str(PLUGIN)!r});"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        "print(sorted(k for k in sys.modules if k.startswith('airflow.api_fastapi')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert "airflow.api_fastapi.core_api.security" not in out
    assert "airflow.api_fastapi.app" not in out


def test_unauthenticated_requests_get_401(home):
    from fastapi.testclient import TestClient  # noqa: PLC0415

    fill_releases(home / "exports", end=END, months=1)
    client = TestClient(load_plugin().create_app())
    for path in ("/", "/releases/2026-10/report.html", "/nowhere", "/docs", "/openapi.json"):
        r = client.get(path)
        assert r.status_code in (401, 404), (path, r.status_code)
        if path in ("/", "/releases/2026-10/report.html"):
            assert r.status_code == 401, path
    assert "Privacy" not in client.get("/").text


def test_authenticated_page_and_downloads(home):
    fill_releases(home / "exports", end=END, months=1)
    (home / "exports" / "2026-10" / "secret.txt").write_text("not in the manifest")
    client = authenticated_client()
    r = client.get("/")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "<h1>Privacy — Demo Public Library</h1>" in r.text
    assert "<script" not in r.text and "http://" not in r.text and "https://" not in r.text
    ok = client.get("/releases/2026-10/report.html")
    assert ok.status_code == 200 and ok.text == "2026-10\n"
    for bad in (
        "/releases/2026-10/secret.txt",
        "/releases/2026-10/..%2F..%2Fwarehouse.db",
        "/releases/..%2F2026-10/report.html",
        "/releases/2026-09/report.html",
    ):
        assert client.get(bad).status_code == 404, bad


def test_release_file_refuses_paths_outside_the_release(tmp_path):
    fill_releases(tmp_path, end=END, months=1)
    manifest = tmp_path / "2026-10" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["report"]["html"] = "../../etc/passwd"
    manifest.write_text(json.dumps(m))
    assert privacy_page.release_file(tmp_path, "2026-10", "../../etc/passwd") is None
    assert privacy_page.release_file(tmp_path, "../x", "report.pdf") is None
    assert privacy_page.release_file(tmp_path, "2026-10", "report.pdf") is not None


def test_html_escapes_what_it_shows(warehouse, home):
    fill_history(warehouse, end=END, days=1)
    with warehouse.begin() as c:
        c.execute(
            update(retention_audit)
            .where(retention_audit.c.source == "squid")
            .values(error="<img src=x onerror=alert(1)>")
        )
    _, html = page(warehouse, home)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_no_canary_patron_value_on_the_page(home, capsys, warehouse):
    """A patron with known values is past every window, under a legal hold, and named
    (in vain) to the request register; the real pipeline runs — and the page shows
    none of the values."""
    koha = make_home(home)
    with koha.begin() as c:
        add_canary(c)
        add_old_issue(c, 1, CANARY_BN, AS_OF - timedelta(days=90))
        add_old_issue(c, 2, CANARY_BN, AS_OF - timedelta(days=45), item=2)
        add_fresh_loan(c)
    rc, ref, err = cli(
        capsys, "requests", "add", "--received", "2026-11-03", "--kind", "subpoena",
        "--agency", "Hartford Police Department", "--asks-for",
        "loan history of one patron named in the subpoena", "--counsel-reviewed", "2026-11-05",
    )  # fmt: skip
    assert rc == 0, err
    rc, _, err = cli(
        capsys, "requests", "add", "--received", "2026-11-03", "--kind", "subpoena",
        "--agency", "Hartford Police Department", "--asks-for", f"loans of {CANARY['email']}",
    )  # fmt: skip
    assert rc == 2  # refused: the register never holds a patron's value
    rc, _, err = cli(
        capsys, "holds", "place", "--source", "koha", "--patron", str(CANARY_BN),
        "--request", ref.strip(), "--categories", "returned_loans",
    )  # fmt: skip
    assert rc == 0, err
    for args in (("--dry-run",), ()):
        rc, _, err = cli(capsys, "enforce", "--source", "koha", "--as-of", "2026-11-30", *args)
        assert rc in (0, 1), err
    fill_releases(home / "exports", end=END, months=1)
    client = authenticated_client()
    html = client.get("/").text
    koha_run = next(s for s in privacy_page.page_data().sources if s.source == "koha")
    assert koha_run.run_id and koha_run.categories  # the page did show the run
    assert 'id="holds-active">1<' in html
    needles = [*canary_needles(), CANARY["email"].split("@")[0]]
    assert scan_text(html, needles, "privacy page") == []
