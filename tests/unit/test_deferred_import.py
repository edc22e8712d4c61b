"""Deferred imports: a module GX imports but our suites never use is not executed until
something uses it, and then it is the real module, whole.

* on a package of the test's own, which records each time it is executed: ``import``
  and ``import ... as`` leave it unexecuted; the first attribute executes it once and
  puts the real module in ``sys.modules``; a submodule is reached through its parent;
  a module that fails to load fails at each use, as an eager import would; a module
  already imported or not installed is left alone;
* on Great Expectations, in a fresh interpreter as a task runs: after GX's import and a
  whole validation, SciPy's statistics and Altair have not been executed, and GX's own
  reference to them works when used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from patron_privacy import deferred_import

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def heavy(tmp_path, monkeypatch):
    """A package ``heavy_pp`` (with a submodule ``sub`` and a broken one) on sys.path."""
    runs = tmp_path / "runs"
    pkg = tmp_path / "heavy_pp"
    pkg.mkdir()
    record = f"open({str(runs)!r}, 'a').write(__name__ + '\\n')\n"
    (pkg / "__init__.py").write_text(record + "VALUE = 42\ndef f():\n    return 'real'\n")
    (pkg / "sub.py").write_text(record + "NAME = 'sub'\n")
    (pkg / "broken.py").write_text(record + "raise ImportError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield lambda: runs.read_text().split() if runs.exists() else []
    for name in [m for m in sys.modules if m == "heavy_pp" or m.startswith("heavy_pp.")]:
        del sys.modules[name]


def test_import_leaves_it_unexecuted_and_first_use_executes_it_once(heavy):
    assert deferred_import.defer("heavy_pp") == ["heavy_pp"]
    import heavy_pp
    import heavy_pp as again

    assert heavy() == []
    assert not deferred_import.is_loaded("heavy_pp")
    assert heavy_pp.VALUE == 42
    assert heavy() == ["heavy_pp"]
    assert deferred_import.is_loaded("heavy_pp")
    assert sys.modules["heavy_pp"] is not heavy_pp  # the real module took its place
    assert again.f() == "real" and sys.modules["heavy_pp"].f() == "real"
    assert heavy() == ["heavy_pp"]


def test_a_submodule_is_deferred_under_its_imported_parent(heavy):
    assert deferred_import.defer("heavy_pp.sub") == ["heavy_pp.sub"]
    assert heavy() == ["heavy_pp"]  # the parent, to find where the submodule lives
    from heavy_pp import sub

    assert heavy() == ["heavy_pp"]
    assert sub.NAME == "sub"
    assert heavy() == ["heavy_pp", "heavy_pp.sub"]
    assert sys.modules["heavy_pp"].sub is sys.modules["heavy_pp.sub"]


def test_a_module_that_fails_to_load_fails_at_every_use(heavy):
    deferred_import.defer("heavy_pp.broken")
    from heavy_pp import broken

    for _ in range(2):
        with pytest.raises(ImportError, match="broken on purpose"):
            broken.anything  # noqa: B018 - the use is the point
    assert heavy() == ["heavy_pp", "heavy_pp.broken", "heavy_pp.broken"]
    assert not deferred_import.is_loaded("heavy_pp.broken")


def test_imported_or_missing_modules_are_left_alone(heavy):
    import heavy_pp

    assert deferred_import.defer("heavy_pp", "no_such_module_pp") == []
    assert sys.modules["heavy_pp"] is heavy_pp
    assert "no_such_module_pp" not in sys.modules


PROBE = """
import json
from datetime import datetime
import pandas as pd
from patron_privacy import deferred_import, validation
from patron_privacy.validation import CheckContext, Col, Dataset, Extract, Suite, Thresholds

ds = Dataset("loans", (Col("issue_id", "int", key=True), Col("returned", "datetime")))
frame = pd.DataFrame({"issue_id": [1, 2, 3], "returned": ["2026-11-01"] * 3})
suite = Suite("loans", (ds,), read=lambda h, d, n, tolerant=False: Extract(chunks=iter([frame])))
cc = CheckContext("loans", datetime(2026, 11, 30), Thresholds())
results, rows = validation.validate_dataset(
    suite, None, ds, cc, known={}, runner=validation.GXRunner("loans")
)
out = {"rows": rows, "passed": all(r.passed for r in results)}
out["unused"] = {n: deferred_import.is_loaded(n) for n in validation.GX_DEFERRED}
from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl
out["entropy"] = float(kl.stats.entropy([0.5, 0.5], [0.5, 0.5]))
out["chart"] = kl.alt.Chart.__name__
out["used"] = {n: deferred_import.is_loaded(n) for n in validation.GX_DEFERRED}
print(json.dumps(out))
"""


def test_gx_validates_without_executing_what_no_suite_uses_and_it_works_when_used():
    env = os.environ | {"PYTHONPATH": str(REPO / "include")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["rows"] == 3 and got["passed"]
    assert got["unused"] == {"scipy.stats": False, "altair": False}
    assert got["entropy"] == 0.0
    assert got["chart"] == "Chart"
    assert got["used"] == {"scipy.stats": True, "altair": True}
