"""The validation benchmark runs end to end on a small table (timings are never asserted:
they live in the JSON file ``python -m patron_privacy.bench_validation`` writes)."""

from __future__ import annotations

import json

from patron_privacy import bench_validation


def test_bench_validation_smoke(tmp_path):
    out = tmp_path / "validation.json"
    report = bench_validation.run(
        rows=3000, out=out, patrons=300, items=100, repeat=1, workdir=tmp_path
    )
    assert json.loads(out.read_text()) == report
    assert report["rows_read"] == report["rows_validated"] == 3000
    assert report["failed_checks"] == []  # the built table is clean
    assert report["read_s"] > 0 and report["validate_s"] > 0
    assert report["ratio_validate_to_read"] > 0 and len(report["ratios_paired"]) == 1
    assert set(report["parts_s"]) == {"read_and_coerce_s", "gx_suite_s", "sql_s"}
