"""The Squid benchmark runs end to end on a small file (its timings are not asserted)."""

from __future__ import annotations

import json

from patron_privacy import bench_squid


def test_bench_squid_reports_throughput_against_the_floor_and_memory(tmp_path, monkeypatch):
    monkeypatch.delenv("PATRON_PRIVACY_HOME", raising=False)
    out = tmp_path / "bench-squid.json"
    report = bench_squid.run(lines=4000, out=str(out), repeats=1)
    assert json.loads(out.read_text())["lines"] == 4000
    assert set(report["lines_per_s"]) == {"floor_read_split", "scan", "scan_write",
                                          "run_squid_end_to_end"}  # fmt: skip
    assert all(v > 0 for v in report["lines_per_s"].values())
    assert report["lines_past_strip_window"] > report["lines_past_delete_window"] > 0
    assert all(r["remaining"] == 0 for r in report["results"])
    assert len(report["peak_python_bytes"]) == 2
