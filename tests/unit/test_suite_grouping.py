"""The suite's time depends on ``--dist loadgroup`` keeping each ``xdist_group`` on one
worker: the Airflow and Celery modules build their servers once per module, and a group
spread over both workers builds them twice. pytest 9.2.0 broke that silently with
pytest-xdist 3.8.0 (the group suffix never reached the node id); this notices."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("grouping_check")
def test_loadgroup_tags_grouped_tests_so_they_stay_on_one_worker(request):
    if not request.config.getvalue("loadgroup"):
        pytest.skip("not running under pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@grouping_check")
