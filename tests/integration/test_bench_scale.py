"""The scale benchmark's harness, at a tiny size: every stage runs and every check holds.

Real MariaDB (the Koha source) and PostgreSQL (the warehouse, a database of the
benchmark's own). The figures themselves are `make bench`'s, not a test's.
"""

from __future__ import annotations

import json

import pytest
from patron_privacy import bench_scale
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.integration


def test_scale_bench_tiny(mariadb_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PATRON_PRIVACY_HOME", str(tmp_path / "home"))
    out = tmp_path / "scale.json"
    report = bench_scale.run(
        koha_url=mariadb_url,
        patrons=300,
        loans=4_000,
        past=1_500,
        repeats=1,
        out=str(out),
        start_method="forkserver",
    )

    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    assert report["errors"] == []
    nightly = report["nightly"]
    assert nightly["finished"] is True
    assert list(nightly["stages_s"]) == [
        "validate",
        "inventory",
        "record_facts",
        "categories",
        "enforce_one_category",
        "enforce_retention_policy",
        "verify",
        "audit",
    ]
    assert nightly["wall_s"] == pytest.approx(sum(nightly["stages_s"].values()), abs=0.01)
    # Koha on MariaDB fans out: one process per category, each measured.
    assert nightly["categories_fanned_out"] > 10
    mapped = [k for k in nightly["tasks"] if k.startswith("enforce_one_category[")]
    assert len(mapped) == nightly["categories_fanned_out"]
    assert all(t["max_rss_kb"] > 10_000 for t in nightly["tasks"].values())
    # Every loan returned before the as-of became a fact; the loans eligible changed.
    assert nightly["facts_recorded"] == report["data"]["loans_before_as_of"] > 0
    enforcement = report["enforcement"]
    assert enforcement["rows_changed"] == report["data"]["eligible"] > 0
    assert set(enforcement["floors"]) == {"floor_single", "floor_ranged"}
    assert all(m["end_state_matches"] for m in enforcement["floors"].values())
    # The engine's task again, alone as the floors run, reaches the same end state.
    alone = enforcement["engine_alone"]["engine_alone"]
    assert alone["end_state_matches"] and alone["rows_changed"] == enforcement["rows_changed"]
    assert alone["max_rss_kb"] > 10_000
    assert enforcement["engine_vs_floor"] == pytest.approx(
        alone["rows_per_s"] / enforcement["floor_rows_per_s"], rel=0.01
    )
    assert enforcement["engine_in_nightly_vs_floor"] > 0
    # Koha's per-patron loop on the same data, its end state checked too.
    loop = enforcement["loop"]["loop"]
    assert loop["end_state_matches"] and loop["rows_changed"] == enforcement["rows_changed"]
    assert enforcement["engine_vs_loop"] == pytest.approx(
        alone["rows_per_s"] / loop["rows_per_s"], rel=0.01
    )
    assert report["summary"]["engine_vs_loop"] == enforcement["engine_vs_loop"]
    release = report["release"]
    assert release["facts_counted"]["circulation_facts"] > 0
    assert release["audit_passed"] is True
    assert release["ratio_release_to_raw"] > 0
    assert release["build_release_task_max_rss_kb"] > 0
    assert release["publish_release_task_max_rss_kb"] > 0
    assert report["memory"]["max_task_rss_kb"] >= max(
        t["max_rss_kb"] for t in nightly["tasks"].values()
    )


def test_scale_bench_enforcement_only(mariadb_url, tmp_path, monkeypatch):
    """No nightly and no release: the loans task alone against the floors, all checked."""
    monkeypatch.setenv("PATRON_PRIVACY_HOME", str(tmp_path / "home"))
    report = bench_scale.run(
        koha_url=mariadb_url,
        patrons=200,
        loans=2_000,
        past=800,
        enforcement_only=True,
        start_method="forkserver",
    )
    assert report["errors"] == []
    assert "nightly" not in report and "release" not in report
    enforcement = report["enforcement"]
    alone = enforcement["engine_alone"]["engine_alone"]
    assert alone["end_state_matches"] and alone["rows_changed"] == report["data"]["eligible"] > 0
    assert enforcement["rows_changed"] == alone["rows_changed"]
    assert enforcement["engine_in_nightly_rows_per_s"] is None
    assert all(m["end_state_matches"] for m in enforcement["floors"].values())
    assert report["summary"]["engine_vs_floor"] == enforcement["engine_vs_floor"] > 0
    assert enforcement["loop"]["loop"]["end_state_matches"]
    assert report["summary"]["engine_vs_loop"] == enforcement["engine_vs_loop"] > 0


def test_scale_bench_drops_its_warehouse(mariadb_url, tmp_path, monkeypatch):
    """A failed run still drops the PostgreSQL database it created."""
    monkeypatch.setenv("PATRON_PRIVACY_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(bench_scale, "nightly", _boom)
    created: list[str] = []
    make = bench_scale._warehouse

    def recording(root_url):
        name, url = make(root_url)
        created.append(name)
        return name, url

    monkeypatch.setattr(bench_scale, "_warehouse", recording)
    with pytest.raises(RuntimeError, match="stop here"):
        bench_scale.run(koha_url=mariadb_url, patrons=50, loans=300, past=100, out=None)
    assert len(created) == 1
    root = create_engine(bench_scale.bench_release.PG_ROOT)
    try:
        assert created[0] not in _scale_databases(root)
    finally:
        root.dispose()


def _boom(run_id, workers, start_method, progress):
    raise RuntimeError("stop here")


def _scale_databases(root) -> set[str]:
    with root.connect() as c:
        return set(
            c.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'pp_scale_wh_%'")
            ).scalars()
        )
