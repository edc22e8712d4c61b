"""The facts benchmark at a tiny size: every way of writing ends with exactly the facts
generated, the rerun writes none, and a failed way is reported, not fatal. No timing
is asserted."""

from __future__ import annotations

import json

import pytest
from patron_privacy import bench_facts

pytestmark = pytest.mark.integration


def test_bench_facts_tiny(tmp_path):
    out = tmp_path / "results" / "bench_facts.json"
    report = bench_facts.run(facts=2_500, batch=1_000, patrons=300, out=str(out))

    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    assert report["errors"] == []
    assert set(report["measurements"]) == set(bench_facts.WAYS)
    for way, m in report["measurements"].items():
        assert m["stored"] == 2_500 and m["first"]["written"] == 2_500, way
    assert report["measurements"]["code"]["rerun"]["written"] == 0
    assert report["summary"]["code_vs_floor"] > 0
    assert report["summary"]["code_vs_insert_before"] > 0


def test_the_generated_facts_are_the_same_every_time():
    first = [r for b in bench_facts.batches(30, 7, 5) for r in b]
    assert first == [r for b in bench_facts.batches(30, 7, 5) for r in b]
    assert len({r["fact_key"] for r in first}) == 30
    assert len({r["patron_pseudonym"] for r in first}) == 5


def test_a_way_that_fails_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    def boom(conn, rows):
        raise RuntimeError("refused")

    monkeypatch.setitem(bench_facts.WAYS, "insert_before", boom)
    report = bench_facts.run(facts=300, batch=100, patrons=30)
    assert report["errors"] == ["insert_before: RuntimeError: refused"]
    assert report["measurements"]["code"]["stored"] == 300
    assert report["summary"]["code_vs_insert_before"] is None
