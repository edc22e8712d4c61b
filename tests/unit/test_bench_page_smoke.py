"""The Privacy page benchmark runs end to end on a few nights (the timings themselves
live in bench-results/, never in tests)."""

from __future__ import annotations

import json

from patron_privacy import bench_privacy_page


def test_bench_page_runs_on_a_small_history(home, tmp_path):
    out = tmp_path / "bench_page.json"
    result = bench_privacy_page.run(days=3, requests=2, out=out, auth="override")
    assert json.loads(out.read_text()) == result
    assert result["audit_rows"] > 0 and result["validation_rows"] > 0
    assert result["page_ms"]["median"] > 0 and result["floor_queries_ms"]["median"] > 0
    assert set(result["after_a_new_night_ms"]) == {"median", "max"}
