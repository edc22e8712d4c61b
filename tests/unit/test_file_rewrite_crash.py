"""Kill a file rewrite at random moments: every file is either old or new, never torn or lost.

A child process runs the real enforcement (``run_squid`` then ``run_folder``) on
gzipped and plain logs and CSV exports; the parent SIGKILLs it after a random
delay, many times, each time from the same old files. After every kill each file
must be byte for byte its old content or its new content (a file whose new state
is "deleted" may also be gone; any other file must be there), and the temporaries
a kill leaves are never mistaken for a file and are cleaned up by the next run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from file_source_builders import (
    AS_OF,
    SIGNUP_HEADER,
    env_for,
    policy_text,
    signup_row,
    squid_line,
    write_csv,
    write_log,
)
from patron_privacy.files.atomic import is_temp, remove_stale_temps

REPO = Path(__file__).resolve().parents[2]
ITERATIONS = 25
D = timedelta(days=1)

CHILD = """
import sys
from datetime import datetime
from patron_privacy.files import runner
from patron_privacy.policy import load_policy
policy = load_policy(sys.argv[1])
as_of = datetime(2026, 11, 30)
print("ready", flush=True)
runner.run_squid(as_of, "crash", dry_run=False, policy=policy)
runner.run_folder("signups", as_of, "crash", dry_run=False, policy=policy)
print("done", flush=True)
"""


def _seed(root: Path) -> None:
    sq = root / "squid"
    rng = random.Random(5)

    def lines(n, days_lo, days_hi):
        out = []
        for _ in range(n):
            when = AS_OF - timedelta(minutes=rng.randrange(days_lo * 1440, days_hi * 1440))
            out.append(squid_line(when, url=f"http://s.example/q?term={rng.randrange(999)}"))
        return sorted(out)

    files = [
        write_log(sq / "access.log.4.gz", lines(8000, 31, 40), gz=True),  # deleted whole
        write_log(sq / "access.log.3", lines(15000, 20, 35)),  # strip + delete, plain
        write_log(sq / "access.log.2.gz", lines(15000, 0, 10), gz=True),  # strip, gzip
    ]
    for i, p in enumerate(files):
        os.utime(p, (1_700_000_000 + i, 1_700_000_000 + i))
    rows = [signup_row(i, f"2999{i:06d}", f"P {i}", AS_OF - (i % 120) * D - timedelta(hours=2))
            for i in range(3000)]  # fmt: skip
    write_csv(root / "signups" / "mixed.csv", SIGNUP_HEADER, rows)
    write_csv(root / "signups" / "old.csv", SIGNUP_HEADER, rows[100:110])  # 100..109 days old


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not is_temp(p)
    }


def _run_child(env, policy_file, kill_after: float | None):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(policy_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    started = time.perf_counter()
    if kill_after is None:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "done" in out, err
        return time.perf_counter() - started
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return None


@pytest.mark.xdist_group("file_crash")
def test_a_killed_rewrite_leaves_every_file_old_or_new(tmp_path):
    pristine = tmp_path / "pristine"
    for sub in ("signups", "programs", "squid"):
        (pristine / sub).mkdir(parents=True)
    _seed(pristine)
    work = tmp_path / "src"
    home = tmp_path / "home"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_text(work), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATRON_PRIVACY"))},
        **env_for(home),
        "PYTHONPATH": str(REPO / "include"),
    }

    def reset():
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work, copy_function=shutil.copy2)
        for f in home.glob("warehouse.db*"):
            f.unlink()

    reset()
    old = _snapshot(work)
    full = _run_child(env, policy_file, None)
    new = _snapshot(work)
    assert set(old) - set(new) == {"squid/access.log.4.gz", "signups/old.csv"}
    changed = {k for k in new if new[k] != old[k]}
    assert changed == {"squid/access.log.3", "squid/access.log.2.gz", "signups/mixed.csv"}

    rng = random.Random(20261130)
    outcomes = {"old": 0, "new": 0}
    for i in range(ITERATIONS):
        reset()
        _run_child(env, policy_file, rng.uniform(0, full * 1.1))
        for name, before in old.items():
            path = work / name
            if name not in new:  # its new state is "deleted"
                assert not path.exists() or path.read_bytes() == before, name
                continue
            assert path.exists(), f"{name} lost after a kill (iteration {i})"
            now = path.read_bytes()
            assert now in (before, new[name]), f"{name} torn after a kill (iteration {i})"
            outcomes["old" if now == before else "new"] += 1
        leftovers = [p for p in work.rglob("*") if is_temp(p)]
        for folder in {p.parent for p in leftovers}:
            remove_stale_temps(folder)
        assert not [p for p in work.rglob("*") if is_temp(p)]
        if i % 8 == 0:  # and the next run finishes the job
            _run_child(env, policy_file, None)
            assert _snapshot(work) == new
    assert outcomes["old"] > 0  # some kills landed before a rename
