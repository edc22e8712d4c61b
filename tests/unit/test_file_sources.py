"""Drop-folder CSV exports and Squid logs: facts, enforcement, verification, bad input."""

from __future__ import annotations

import gzip
import os
from datetime import timedelta

import pytest
from file_source_builders import (
    AS_OF,
    PROGRAM_HEADER,
    SIGNUP_HEADER,
    file_home,
    make_policy,
    read_log,
    signup_row,
    squid_line,
    write_csv,
    write_log,
)
from patron_privacy import connections, locks
from patron_privacy.files import runner
from patron_privacy.files.atomic import FileStamp
from patron_privacy.warehouse import place_hold
from sqlalchemy import create_engine, text

D = timedelta(days=1)


@pytest.fixture
def world(tmp_path):
    with file_home(tmp_path / "home"):
        yield tmp_path / "src", make_policy(tmp_path / "src")


def by_cat(results):
    return {r["category"]: r for r in results}


def warehouse_count(table: str) -> int:
    eng = create_engine(f"sqlite:///{connections.local_home() / 'warehouse.db'}")
    with eng.connect() as c:
        n = c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    eng.dispose()
    return n


# --- sign-up exports ----------------------------------------------------------------------------


def test_signups_strip_delete_facts_and_verification(world):
    root, policy = world
    old = write_csv(root / "signups/old.csv", SIGNUP_HEADER, [
        signup_row(1, "29990001", "Ann Old", AS_OF - 100 * D),
        signup_row(2, "29990002", "Bob Old", AS_OF - 95 * D),
    ])  # fmt: skip
    mixed = write_csv(root / "signups/mixed.csv", SIGNUP_HEADER, [
        signup_row(3, "29990003", "Cy Past", AS_OF - 95 * D - 2 * timedelta(hours=1)),
        signup_row(4, "29990004", "Di Strip", AS_OF - 10 * D),
        signup_row(5, "29990005", "Ed Inside", AS_OF - timedelta(hours=3)),
    ])  # fmt: skip
    fresh = write_csv(root / "signups/fresh.csv", SIGNUP_HEADER, [
        signup_row(6, "29990006", "Fay New", AS_OF - timedelta(hours=2)),
    ])  # fmt: skip
    fresh_bytes, fresh_stamp = fresh.read_bytes(), FileStamp.of(fresh)

    dry = by_cat(runner.run_folder("signups", AS_OF, "r-dry", dry_run=True, policy=policy))
    assert dry["signup_identities"]["remaining"] == 4 and dry["signup_records"]["remaining"] == 3
    assert old.exists() and warehouse_count("pc_session_facts") == 0

    res = by_cat(runner.run_folder("signups", AS_OF, "r1", dry_run=False, policy=policy))
    assert res["signup_identities"]["changed"] == 4
    assert res["signup_records"]["changed"] == 3
    assert all(r["remaining"] == 0 and r["data_errors"] == 0 for r in res.values())
    assert res["signup_identities"]["facts_recorded"] == 6  # every session is over
    assert not old.exists()  # every row past the delete window: the file goes
    text_mixed = mixed.read_text()
    assert "Cy Past" not in text_mixed and "Di Strip" not in text_mixed
    assert "29990005" in text_mixed and "Ed Inside" in text_mixed  # inside its window
    assert fresh.read_bytes() == fresh_bytes and FileStamp.of(fresh) == fresh_stamp  # untouched
    again = by_cat(runner.run_folder("signups", AS_OF, "r2", dry_run=False, policy=policy))
    assert [again[c]["changed"] for c in again] == [0, 0]
    assert warehouse_count("pc_session_facts") == 6  # a rerun writes no fact twice
    assert warehouse_count("retention_audit") == 6


def test_a_file_wholly_past_the_strip_window_loses_its_identifying_columns(world):
    root, policy = world
    f = write_csv(root / "signups/week.csv", SIGNUP_HEADER, [
        signup_row(1, "29990011", "Gil Gone", AS_OF - 5 * D),
        signup_row(2, "29990012", "Hal Gone", AS_OF - 4 * D),
    ])  # fmt: skip
    runner.run_folder("signups", AS_OF, "r", dry_run=False, policy=policy)
    assert f.read_text().splitlines()[0] == "Reservation Id,Computer,Branch,Start Time,End Time"
    res = by_cat(runner.verify_source("signups", AS_OF, "v", policy=policy))
    assert all(r["remaining"] == 0 and r["mode"] == "verify" for r in res.values())


def test_a_legal_hold_keeps_a_patrons_rows(world):
    root, policy = world
    f = write_csv(root / "signups/a.csv", SIGNUP_HEADER, [
        signup_row(1, "29990021", "Ivy Held", AS_OF - 100 * D),
        signup_row(2, "29990022", "Jo Free", AS_OF - 100 * D),
    ])  # fmt: skip
    eng = connections.engine_for(connections.WAREHOUSE_DB)
    from patron_privacy.warehouse import create_warehouse

    create_warehouse(eng)
    with eng.begin() as c:
        place_hold(c, source="signups", patron_ids=["29990021"], request_ref="LE-1",
                   placed_at=AS_OF)  # fmt: skip
    res = by_cat(runner.run_folder("signups", AS_OF, "r", dry_run=False, policy=policy))
    assert res["signup_records"]["kept"] == {"legal_hold": 1}
    assert res["signup_identities"]["kept"] == {"legal_hold": 1}
    assert res["signup_records"]["remaining"] == 0
    body = f.read_text()
    assert "Ivy Held" in body and "Jo Free" not in body


# --- program registrations ----------------------------------------------------------------------


def test_programs_facts_count_registrants_once_and_strip_after_the_window(world):
    root, policy = world
    when = f"{AS_OF - 40 * D:%Y-%m-%d} 10:00"
    rows = [
        ["Lego Club", when, "Kids", "In person", "MAIN", "Kim A", "kim@example.org", "yes"],
        ["Lego Club", when, "Kids", "In person", "MAIN", "Lou B", "lou@example.org", "no"],
    ]
    write_csv(root / "programs/a.csv", PROGRAM_HEADER, rows)
    write_csv(root / "programs/b.csv", PROGRAM_HEADER, rows[:1])  # re-exported: counts once
    res = by_cat(runner.run_folder("programs", AS_OF, "r", dry_run=False, policy=policy))
    assert res["registrant_identities"]["changed"] == 3
    assert res["registrant_identities"]["remaining"] == 0
    eng = create_engine(f"sqlite:///{connections.local_home() / 'warehouse.db'}")
    with eng.connect() as c:
        got = c.execute(
            text("SELECT audience, delivery_mode, registered, attended FROM program_facts")
        ).all()
    assert [tuple(r) for r in got] == [("children", "onsite", 2, 1)]
    assert "kim@example.org" not in (root / "programs/a.csv").read_text()


# --- Squid --------------------------------------------------------------------------------------


def test_squid_strips_deletes_keeps_the_live_log_and_preserves_gzip(world):
    root, policy = world
    sq = root / "squid"
    old = write_log(sq / "access.log.3.gz", [squid_line(AS_OF - 40 * D)], gz=True)
    mid = write_log(sq / "access.log.2.gz", [
        squid_line(AS_OF - 31 * D, ident="zed"),
        squid_line(AS_OF - 5 * D, url="http://s.example/search?q=secret+term", ident="zed"),
        squid_line(AS_OF - 5 * D, client="-", url="http://s.example/plain", ident="-"),
    ], gz=True)  # fmt: skip
    recent = write_log(sq / "access.log.1", [squid_line(AS_OF - timedelta(hours=5))])
    live = write_log(sq / "access.log", [squid_line(AS_OF - 2 * D), squid_line(AS_OF)])
    for i, p in enumerate((old, mid, recent, live)):
        os.utime(p, (1_700_000_000 + i, 1_700_000_000 + i))  # rotation order
    recent_bytes, live_bytes = recent.read_bytes(), live.read_bytes()

    res = by_cat(runner.run_squid(AS_OF, "r", dry_run=False, policy=policy))
    strip, dele = res["client_identifiers"], res["access_log_lines"]
    assert (strip["changed"], dele["changed"]) == (3, 2)
    assert strip["kept"] == {"live_log": 1} and strip["remaining"] == 0
    assert not old.exists()
    assert mid.read_bytes()[:2] == b"\x1f\x8b"  # still gzip
    lines = read_log(mid).splitlines()
    assert len(lines) == 2
    assert lines[0].split()[2] == b"-" and lines[0].split()[7] == b"-"
    assert lines[0].split()[6] == b"http://s.example/search"
    assert recent.read_bytes() == recent_bytes and live.read_bytes() == live_bytes
    assert warehouse_count("internet_use_facts") >= 1


# --- bad input: a clear error naming file and line, nothing deleted, the rest goes on ------


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            b"1,2999,Ann,MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30,EXTRA\n",
            "line 2: 8 fields where the header has 7",
        ),
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            b"1,2999,Ren\xe9e,MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30\n",
            "line 2: not valid utf-8",
        ),
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            b"1,2999,A\x00n,MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30\n",
            "line 2: contains NUL bytes",
        ),
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            b"1,2999," + b"A" * 5000 + b",MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30\n",
            "line 2: field name is 5000 characters (limit 200)",
        ),
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            b'1,2999,"=HYPERLINK(""http://evil"")",MAIN-PC01,MAIN,'
            b"2026-08-01 10:00,2026-08-01 10:30\n",
            "line 2: field name starts like a spreadsheet formula",
        ),
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            b'1,2999,"Ann,MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30\n',
            "line 2: malformed CSV: unexpected end of data",
        ),
        (
            b"Zed Zedson,2999,Ann,MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30\n",
            "line 1: no column 'Computer' (mapped as pc) in the header",
        ),
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time,Notes\n"
            b"1,2999,Ann,MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30,x\n",
            "line 1: 1 column(s) of the header are neither mapped",
        ),
        (
            b"Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            b"1,2999,Ann,MAIN-PC01,MAIN,yesterday,2026-08-01 10:30\n",
            "line 2: field start is not a date",
        ),
        (
            "Reservation Id,Card Number,Patron Name,Computer,Branch,Start Time,End Time\n"
            "1,2999,Ann,MAIN-PC01,MAIN,2026-08-01 10:00,2026-08-01 10:30\n".encode("utf-16"),
            "line 1: contains NUL bytes",
        ),
    ],
    ids=[
        "extra-field",
        "latin1",
        "nul",
        "huge-field",
        "formula",
        "open-quote",
        "no-header",
        "unmapped-column",
        "bad-date",
        "utf16",
    ],  # fmt: skip
)
def test_a_bad_export_is_reported_by_file_and_line_and_left_alone(world, raw, expect):
    root, policy = world
    bad = root / "signups" / "bad.csv"
    bad.write_bytes(raw)
    good = write_csv(root / "signups/good.csv", SIGNUP_HEADER, [
        signup_row(1, "29990031", "Kay Good", AS_OF - 100 * D),
    ])  # fmt: skip
    res = by_cat(runner.run_folder("signups", AS_OF, "r", dry_run=False, policy=policy))
    assert bad.read_bytes() == raw  # nothing deleted or changed on unreadable data
    assert not good.exists()  # the rest of the run went on
    r = res["signup_records"]
    assert r["data_errors"] == 1 and r["changed"] == 1 and r["remaining"] == 0
    assert f"signups/bad.csv {expect}" in r["error"]
    for secret in ("Ann", "Zed", "evil", "Ren"):
        assert secret not in r["error"]  # an error never quotes a value


def test_truncated_gzip_and_wrong_format_lines(world):
    root, policy = world
    sq = root / "squid"
    good_lines = [squid_line(AS_OF - 40 * D), squid_line(AS_OF - 35 * D)]
    full = gzip.compress(b"".join(good_lines * 200), mtime=0)
    trunc = sq / "access.log.4.gz"
    trunc.write_bytes(full[: len(full) // 2])
    mixed = write_log(sq / "access.log.3", [
        squid_line(AS_OF - 40 * D),
        b"this is not a squid line 10.213.77.142 http://x/?q=zz\n",
        squid_line(AS_OF - 5 * D),
    ])  # fmt: skip
    other = write_log(sq / "access.log.2.gz", [squid_line(AS_OF - 40 * D)], gz=True)
    for i, p in enumerate((trunc, mixed, other)):
        os.utime(p, (1_700_000_000 + i, 1_700_000_000 + i))
    trunc_bytes = trunc.read_bytes()
    res = by_cat(runner.run_squid(AS_OF, "r", dry_run=False, policy=policy))
    assert trunc.read_bytes() == trunc_bytes
    assert not other.exists()  # the rest of the run went on
    body = mixed.read_bytes().splitlines()
    assert body[0].startswith(b"this is not a squid line")  # kept verbatim, never deleted
    assert len(body) == 2 and body[1].split()[2] == b"-"
    err = res["access_log_lines"]["error"]
    assert "squid/access.log.3 line 2: not a Squid native access.log line" in err
    assert "squid/access.log.4.gz line" in err and "truncated gzip" in err
    assert "10.213.77.142" not in err and "zz" not in err
    assert res["access_log_lines"]["data_errors"] == 2
    assert res["access_log_lines"]["remaining"] == 0


def test_a_file_that_changes_while_it_is_processed_is_left_for_the_next_run(world, monkeypatch):
    root, policy = world
    f = write_csv(root / "signups/a.csv", SIGNUP_HEADER, [
        signup_row(1, "29990041", "Lee Late", AS_OF - 10 * D),
    ])  # fmt: skip
    from patron_privacy.sources.dropfolder import csvfiles

    real = csvfiles.apply_change

    def racing(scan, *a, **k):
        with open(scan.path, "a", encoding="utf-8") as fh:  # the exporter appends a row
            fh.write("2,29990042,Max More,MAIN-PC01,MAIN,2026-11-29 10:00,2026-11-29 10:30\n")
        return real(scan, *a, **k)

    monkeypatch.setattr(csvfiles, "apply_change", racing)
    res = by_cat(runner.run_folder("signups", AS_OF, "r", dry_run=False, policy=policy))
    assert "changed while it was being processed" in res["signup_identities"]["error"]
    assert "Lee Late" in f.read_text() and "Max More" in f.read_text()
    assert res["signup_identities"]["remaining"] == 1  # verification tells the truth


def test_cli_enforce_and_verify_for_a_file_source(world, capsys, tmp_path):
    from patron_privacy import cli

    root, policy = world
    (tmp_path / "policy.yaml").write_text(
        __import__("file_source_builders").policy_text(root), encoding="utf-8"
    )
    write_csv(root / "signups/a.csv", SIGNUP_HEADER, [
        # Two days old: past the strip window, and fresh enough for validation (7 days).
        signup_row(1, "29990051", "Nia Cli", AS_OF - 2 * D),
    ])  # fmt: skip
    args = [
        "--source",
        "signups",
        "--as-of",
        "2026-11-30",
        "--policy",
        str(tmp_path / "policy.yaml"),
    ]
    assert cli.main(["enforce", *args, "--dry-run"]) == 0
    assert (root / "signups/a.csv").read_text().count("Nia Cli") == 1
    assert cli.main(["enforce", *args]) == 0
    assert cli.main(["verify", *args]) == 0
    out = capsys.readouterr().out
    assert "signups.signup_identities" in out and "verification passed" in out
    assert "Nia Cli" not in out and "29990051" not in out


# --- one enforcing run per source at a time ----------------------------------------------------


@pytest.mark.parametrize("source", ["signups", "squid"])
def test_an_enforcing_run_waits_for_the_sources_lock_and_refuses_having_done_nothing(
    world, monkeypatch, source
):
    root, policy = world
    if source == "squid":
        f = write_log(root / "squid/access.log.2", [squid_line(AS_OF - 40 * D)])
    else:
        f = write_csv(
            root / "signups/old.csv",
            SIGNUP_HEADER,
            [signup_row(1, "29990001", "A", AS_OF - 99 * D)],
        )
    before = f.read_bytes()
    monkeypatch.setenv("PATRON_PRIVACY_LOCK_WAIT_S", "0.2")
    warehouse = connections.engine_for(connections.WAREHOUSE_DB)
    with locks.warehouse_lock(warehouse, locks.run_lock_name(source), wait_s=0):
        with pytest.raises(locks.LockBusy):
            runner.run_source(source, AS_OF, "second", dry_run=False, policy=policy)
        assert f.read_bytes() == before
        # A dry run reads only: it takes no lock and is not refused.
        preview = by_cat(runner.run_source(source, AS_OF, "preview", dry_run=True, policy=policy))
        assert sum(r["remaining"] for r in preview.values()) >= 1
    warehouse.dispose()
    runner.run_source(source, AS_OF, "after", dry_run=False, policy=policy)
    assert not f.exists()
