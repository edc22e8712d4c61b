"""The Evergreen benchmark end to end at a tiny size: every measurement runs on PostgreSQL
and all end states agree.

No timing is asserted: at this size the numbers mean nothing. What must hold is that the
engine, the raw-SQL floor and the per-patron loop each reach the end state computed in
plain SQL from the pristine data, renewal chains included.
"""

from __future__ import annotations

import json

import pytest
from evergreen_builders import pg_database
from patron_privacy.sources.evergreen import bench

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("evergreen_pg")]

MEASUREMENTS = ("engine", "engine_no_facts", "floor_single", "floor_ranged", "loop")


@pytest.mark.parametrize("sampled", [False, True], ids=["full-loop", "sampled-loop"])
def test_evergreen_bench_tiny(tmp_path, sampled):
    out = tmp_path / "results" / "bench-evergreen.json"
    loop = {"loop_full_max": 50, "loop_sample": 40} if sampled else {}
    with pg_database("pp_eg_bench") as url:
        report = bench.run(
            url, rows=3_000, past=1_000, patrons=200, out=str(out), trace_memory=True, **loop
        )

    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    assert report["errors"] == []
    assert report["end_states_match"] is True
    data = report["data"]
    assert data["past_rows"] > 0
    # Chains are there, and some of them (still open) must not be aged.
    assert data["counts"]["renewals"] > 0 and data["counts"]["unfinished"] > 0
    assert 0 < data["eligible"] < data["counts"]["action.circulation"]
    for key in MEASUREMENTS:
        m = report["measurements"][key]
        assert m["end_state_matches"] is True, key
        assert m["rows_changed"] == data["eligible"], key
        assert m["rows_per_s"] is not None, key
    engine = report["measurements"]["engine"]
    assert engine["facts_in_warehouse"] > 0
    assert report["measurements"]["engine_no_facts"]["result"]["facts_recorded"] == 0
    assert report["engine_dry_run"]["remaining"] == data["eligible"]
    assert report["floor"]["method"] in ("floor_single", "floor_ranged")
    if sampled:
        assert report["loop_sampled_patrons"] == 40
        assert report["measurements"]["loop"]["seconds_is_extrapolated"] is True
    else:
        assert report["loop_sampled_patrons"] is None
    assert report["memory"]["engine_tracemalloc_peak_bytes"] > 0
    assert report["postgresql"]["version"].startswith("PostgreSQL")
