"""The benchmark end to end at a tiny size: every measurement runs and all end states agree.

No timing is asserted: at this size the numbers mean nothing. What must hold is
that the engine, the raw-SQL floor and the per-patron loop each reach the end
state computed in plain SQL from the pristine data.
"""

from __future__ import annotations

import json

import pytest
from patron_privacy import bench

pytestmark = pytest.mark.integration

MEASUREMENTS = (
    "engine",
    "engine_no_facts",
    "engine_one_worker",
    "floor_single",
    "floor_ranged",
    "loop",
)


@pytest.mark.parametrize("sampled", [False, True], ids=["full-loop", "sampled-loop"])
def test_bench_tiny(mariadb_url, tmp_path, sampled):
    out = tmp_path / "results" / "bench.json"
    loop = {"loop_full_max": 50, "loop_sample": 40} if sampled else {}
    report = bench.run(
        mariadb_url, rows=3_000, past=1_000, patrons=200, out=str(out), trace_memory=True, **loop
    )

    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    assert report["errors"] == []
    assert report["end_states_match"] is True
    data = report["data"]
    assert data["past_rows"] == 1_000
    # Both blockers keep something, so the comparison covers them.
    assert data["keep_history"] > 0
    assert data["outstanding_balance"] > 0
    assert 0 < data["eligible"] < 1_000
    for key in MEASUREMENTS:
        m = report["measurements"][key]
        assert m["end_state_matches"] is True, key
        assert m["rows_changed"] == data["eligible"], key
        assert m["end_state"] == report["expected_end_state"], key
        assert m["rows_per_s"] is not None, key
    engine = report["measurements"]["engine"]
    assert engine["facts_recorded"] == engine["facts_in_warehouse"] == data["eligible"]
    assert report["measurements"]["engine_no_facts"]["result"]["facts_recorded"] == 0
    # The policy's sessions, and one, measured on the same data.
    workers = report["params"]["workers"]
    assert workers > 1
    assert engine["workers"] == report["measurements"]["engine_no_facts"]["workers"] == workers
    one = report["measurements"]["engine_one_worker"]
    assert one["workers"] == 1 and one["facts_in_warehouse"] == data["eligible"]
    assert report["floor"]["method"] in ("floor_single", "floor_ranged")
    assert set(report["ratios"]) >= {
        "engine_vs_floor",
        "engine_one_worker_vs_floor",
        "engine_vs_loop",
    }
    if sampled:
        assert report["loop_sampled_patrons"] == 40
        assert report["measurements"]["loop"]["seconds_is_extrapolated"] is True
    else:
        assert report["loop_sampled_patrons"] is None
    assert report["memory"]["engine_tracemalloc_peak_bytes"] > 0
    assert report["mariadb"]["version"]
    assert report["machine"]["cpu_count"] >= 1
