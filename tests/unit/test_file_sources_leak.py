"""The canary leak test for the file sources: known personal values go into sign-up and
registration exports and Squid logs, the CLI enforces, verifies and summarizes, and not
one value may turn up in the warehouse (every cell, raw bytes), in CLI output or logs
(``-v``: the log goes to stderr), or — for values past their window — in the rewritten
files. Values inside their window may stay in the source files (that is their point),
never anywhere else. An unreadable export full of canaries proves error messages quote
nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from file_source_builders import (
    AS_OF,
    PROGRAM_HEADER,
    SIGNUP_HEADER,
    env_for,
    policy_text,
    signup_row,
    squid_line,
    write_csv,
    write_log,
)
from leak_scan import digit_forms, files_scanned, scan_sqlite, scan_text, scan_tree

REPO = Path(__file__).resolve().parents[2]
D = timedelta(days=1)
PAST = {
    "card": "29977100000777",
    "name": "Zqxcanarypastsignup",
    "reg_name": "Zqxcanarypastregistrant",
    "email": "zqxcanary.past@example.org",
    "ip": "10.213.77.142",
    "user": "zqxcanarypastuser",
    "term": "zqxcanarypastsearch",
}
INSIDE = {
    "card": "29977100000888",
    "name": "Zqxcanaryinsidesignup",
    "reg_name": "Zqxcanaryinsideregistrant",
    "email": "zqxcanary.inside@example.org",
    "ip": "10.213.77.143",
    "user": "zqxcanaryinsideuser",
    "term": "zqxcanaryinsidesearch",
}


def needles(values: dict) -> list[str]:
    out = []
    for k, v in values.items():
        out += digit_forms(v) if k == "card" else [v]
    return out


def seed(root: Path) -> None:
    for sub in ("signups", "programs", "squid"):
        (root / sub).mkdir(parents=True)
    write_csv(root / "signups/week.csv", SIGNUP_HEADER, [
        signup_row(1, PAST["card"], PAST["name"], AS_OF - 100 * D),
        signup_row(2, PAST["card"], PAST["name"], AS_OF - 10 * D),
        signup_row(3, INSIDE["card"], INSIDE["name"], AS_OF - timedelta(hours=3)),
    ])  # fmt: skip
    # Unreadable (a row with an extra field): left alone, and its error quotes nothing.
    (root / "signups/broken.csv").write_text(
        ",".join(SIGNUP_HEADER)
        + "\n"
        + f"9,{INSIDE['card']},{INSIDE['name']},MAIN-PC01,MAIN,x,y,{INSIDE['email']}\n",
        encoding="utf-8",
    )
    past_day = f"{AS_OF - 40 * D:%Y-%m-%d} 10:00"
    next_day = f"{AS_OF + 3 * D:%Y-%m-%d} 10:00"
    club = ["Lego Club", "Kids", "In person", "MAIN"]
    write_csv(root / "programs/reg.csv", PROGRAM_HEADER, [
        [club[0], past_day, *club[1:], PAST["reg_name"], PAST["email"], "yes"],
        [club[0], next_day, *club[1:], INSIDE["reg_name"], INSIDE["email"], ""],
    ])  # fmt: skip
    sq = root / "squid"
    old = write_log(sq / "access.log.1.gz", [
        squid_line(AS_OF - 5 * D, PAST["ip"], f"http://s.example/search?q={PAST['term']}",
                   PAST["user"]),
        squid_line(AS_OF - 40 * D, PAST["ip"], "http://s.example/x", PAST["user"]),
        b"garbage " + PAST["ip"].encode() + b" " + PAST["term"].encode() + b"\n",
    ], gz=True)  # fmt: skip
    live = write_log(sq / "access.log", [
        squid_line(AS_OF - timedelta(hours=4), INSIDE["ip"],
                   f"http://s.example/search?q={INSIDE['term']}", INSIDE["user"]),
    ])  # fmt: skip
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(live, (1_700_000_100, 1_700_000_100))


def cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "patron_privacy", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_no_canary_reaches_the_warehouse_output_logs_or_past_window_files(tmp_path):
    root, home = tmp_path / "src", tmp_path / "home"
    seed(root)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(root), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PATRON_PRIVACY"))},
        **env_for(home),
        "PYTHONPATH": str(REPO / "include"),
    }
    # The seed is really there: a scan that finds nothing below means something.
    assert {f.needle for f in scan_tree(root, needles(PAST))} >= {PAST["name"], PAST["email"]}

    procs = {}
    for source in ("signups", "programs", "squid"):
        common = ["--source", source, "--as-of", "2026-11-30", "--policy", str(policy)]
        procs[f"{source} dry-run"] = cli(env, "-v", "enforce", *common, "--dry-run", "--json")
        procs[f"{source} enforce"] = cli(env, "-v", "enforce", *common, "--json",
                                         "--run-id", "leak")  # fmt: skip
        procs[f"{source} verify"] = cli(env, "-v", "verify", *common)
    procs["summary"] = cli(env, "summary", "--run-id", "leak")
    for name, p in procs.items():
        assert p.returncode in (0, 1), f"{name}: {p.returncode}\n{p.stderr[-2000:]}"
    # It worked on the canaries: the enforce runs changed something and facts exist.
    assert "signups.signup_identities" in procs["signups enforce"].stdout
    assert "broken.csv line 2" in procs["signups enforce"].stderr  # the error, by file and line
    assert "access.log.1.gz line 3" in procs["squid enforce"].stderr

    everything = needles(PAST) + needles(INSIDE)
    found = []
    found += scan_sqlite(home / "warehouse.db", everything)
    found += scan_tree(home, everything, skip=[home / "warehouse.db", home / "warehouse.db-wal"])
    for name, p in procs.items():
        found += scan_text(p.stdout, everything, f"{name} stdout")
        found += scan_text(p.stderr, everything, f"{name} stderr (logs)")
    # Past their window: gone from the rewritten files (but the unreadable file and the
    # unreadable line are left as they are, on purpose: nothing is changed on bad data).
    assert files_scanned(root) >= 5
    for f in scan_tree(root, needles(PAST), skip=[root / "signups/broken.csv"]):
        if f.where.endswith("access.log.1.gz"):
            continue  # gzip: scanned decompressed below
        found.append(f)
    import gzip

    body = gzip.decompress((root / "squid/access.log.1.gz").read_bytes()).decode()
    readable = "\n".join(ln for ln in body.splitlines() if not ln.startswith("garbage"))
    found += scan_text(readable, needles(PAST), "squid/access.log.1.gz (decompressed)")
    assert not found, "personal values leaked:\n" + "\n".join(str(f) for f in found)
