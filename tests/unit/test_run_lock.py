"""One run per source at a time (issue 9, faults): the warehouse lock on SQLite,
PostgreSQL and MariaDB — a second holder waits or refuses, a killed holder frees it at
once, a lost session is noticed — and two real enforcement runs of the same source
started together change each record once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from koha_builders import AS_OF, T, add_old_issue, add_patron
from legal_builders import add_fresh_loan, cli, koha_home
from patron_privacy import locks, pipeline
from patron_privacy.connections import engine_for_url
from patron_privacy.policy import DEFAULT_POLICY
from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("mariadb", marks=pytest.mark.integration),
    ]
)
def lock_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url").render_as_string(hide_password=False)
    return request.getfixturevalue("mariadb_url")


@pytest.fixture
def engine(lock_url):
    eng = engine_for_url(lock_url)
    yield eng
    eng.dispose()


def _in_thread(fn):
    out: list = []

    def run():
        try:
            out.append(fn())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_a_second_holder_refuses_while_the_first_holds(engine):
    with locks.warehouse_lock(engine, "run:koha", wait_s=0):
        t, out = _in_thread(
            lambda: locks.warehouse_lock(engine, "run:koha", wait_s=0.3).__enter__()
        )
        t.join()
        assert isinstance(out[0], locks.LockBusy)
        assert "another run holds the lock run:koha; nothing was done" in str(out[0])
        # Another source's lock is independent.
        with locks.warehouse_lock(engine, "run:evergreen", wait_s=0):
            pass
    with locks.warehouse_lock(engine, "run:koha", wait_s=0):
        pass


def test_a_waiting_holder_gets_the_lock_when_it_is_released(engine):
    released: list[float] = []

    def second():
        with locks.warehouse_lock(engine, "run:koha", wait_s=30, poll_s=0.05):
            return time.monotonic()

    with locks.warehouse_lock(engine, "run:koha", wait_s=0):
        t, out = _in_thread(second)
        time.sleep(0.5)
        assert t.is_alive(), "it waits"
        released.append(time.monotonic())
    t.join(30)
    assert not isinstance(out[0], Exception), out
    assert out[0] >= released[0]


@pytest.mark.integration
@pytest.mark.parametrize(
    "url_fixtures",
    [("postgres_url", "second_postgres_url"), ("mariadb_url", "second_mariadb_url")],
    ids=["postgres", "mariadb"],
)
def test_two_warehouses_on_one_server_do_not_share_a_run_lock(request, url_fixtures):
    """Two libraries' warehouses on one database server each run their own nights:
    ``GET_LOCK`` names are server-wide, so the database is part of the lock's name."""
    engine, other = (
        engine_for_url(u if isinstance(u, str) else u.render_as_string(hide_password=False))
        for u in map(request.getfixturevalue, url_fixtures)
    )
    try:
        with locks.warehouse_lock(engine, "run:koha", wait_s=0):
            with locks.warehouse_lock(other, "run:koha", wait_s=0):
                pass
            with pytest.raises(locks.LockBusy):
                with locks.warehouse_lock(engine, "run:koha", wait_s=0):
                    pass
    finally:
        engine.dispose()
        other.dispose()


HOLDER = """
import sys, time
from patron_privacy import locks
from patron_privacy.connections import engine_for_url
with locks.warehouse_lock(engine_for_url(sys.argv[1]), "run:koha", wait_s=0):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_holder_frees_the_lock_at_once(engine, lock_url):
    """SIGKILL leaves no stale lock: the server (or kernel) ends the session with it."""
    proc = _holder(lock_url)
    try:
        with pytest.raises(locks.LockBusy):
            with locks.warehouse_lock(engine, "run:koha", wait_s=0):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    started = time.monotonic()
    with locks.warehouse_lock(engine, "run:koha", wait_s=15, poll_s=0.1):
        waited = time.monotonic() - started
    assert waited < 10


@pytest.mark.integration
def test_a_lost_session_is_noticed_before_the_next_batch(postgres_url):
    eng = engine_for_url(postgres_url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with locks.warehouse_lock(eng, "run:koha", wait_s=0) as held:
            held.check()
            with admin.connect() as c:
                c.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                )
            with pytest.raises(locks.LockLost, match="lost with its database session"):
                held.check()
            # The server released it with the session: another run may start.
            with locks.warehouse_lock(eng, "run:koha", wait_s=5):
                pass
    finally:
        eng.dispose()
        admin.dispose()


# --- two enforcement runs of one source at once ---------------------------------------------

LOANS = 24  # past their window, 3 per batch: 8 batches


@pytest.fixture
def koha(home, warehouse_db, tmp_path):
    eng = koha_home(home)
    with eng.begin() as c:
        add_patron(c, 10)
        for i in range(1, LOANS + 1):
            add_old_issue(c, i, 10, AS_OF - timedelta(days=60 + i))
        add_fresh_loan(c)
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY.read_text().replace("batch_size: 10000", "batch_size: 3"))
    return eng, str(policy)


def _linked(eng) -> int:
    oi = T["old_issues"]
    with eng.connect() as c:
        return len(c.execute(select(oi.c.issue_id).where(oi.c.borrowernumber == 10)).all())


def _two_runs_at_once(policy: str, monkeypatch) -> tuple[list, list]:
    """Start two real runs of koha together; returns their outcomes and every batch as
    (run, time) in the order it finished."""
    batches: list[tuple[int, float]] = []
    real = pipeline.enforce_rule
    who = threading.local()

    def enforce_rule(engine, rule, ctx, **kw):
        def after_batch(n: int) -> None:
            batches.append((who.run, time.monotonic()))
            time.sleep(0.05)  # widen the window in which two unguarded runs would overlap

        return real(engine, rule, ctx, after_batch=after_batch, **kw)

    monkeypatch.setattr(pipeline, "enforce_rule", enforce_rule)
    start = threading.Barrier(2)
    outcomes: list = [None, None]

    def run(n: int) -> None:
        who.run = n
        r = pipeline.open_run("koha", AS_OF, policy)
        start.wait()
        try:
            outcomes[n] = pipeline.enforce(r, dry_run=False)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcomes[n] = exc
        finally:
            r.source_engine.dispose()
            r.warehouse.dispose()

    threads = [threading.Thread(target=run, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return outcomes, batches


def _changed(results: list[dict], category: str = "returned_loans") -> int:
    return next(r["changed"] for r in results if r["category"] == category)


def test_two_runs_at_once_one_waits_and_nothing_is_done_twice(koha, monkeypatch):
    eng, policy = koha
    assert _linked(eng) == LOANS
    monkeypatch.setenv("PATRON_PRIVACY_LOCK_WAIT_S", "120")
    outcomes, batches = _two_runs_at_once(policy, monkeypatch)
    assert all(isinstance(o, list) for o in outcomes), outcomes
    assert sorted(_changed(o) for o in outcomes) == [0, LOANS], "each loan changed once"
    first = 0 if _changed(outcomes[0]) else 1
    assert all(r["changed"] == 0 for r in outcomes[1 - first]), "the second found nothing to do"
    # The second run's batches all came after the first run's: they never interleaved.
    runs = [run for run, _ in batches]
    assert runs == sorted(runs, key=lambda n: n != first), runs
    assert _linked(eng) == 0


def test_two_runs_at_once_one_refuses_when_it_may_not_wait(koha, monkeypatch):
    eng, policy = koha
    monkeypatch.setenv("PATRON_PRIVACY_LOCK_WAIT_S", "0")
    outcomes, _ = _two_runs_at_once(policy, monkeypatch)
    refused = [o for o in outcomes if isinstance(o, locks.LockBusy)]
    done = [o for o in outcomes if isinstance(o, list)]
    assert (len(refused), len(done)) == (1, 1), outcomes
    assert _changed(done[0]) == LOANS and _linked(eng) == 0


def _one_loan_past_its_window(home):
    eng = koha_home(home)
    with eng.begin() as c:
        add_patron(c, 10)
        add_old_issue(c, 1, 10, AS_OF - timedelta(days=60))
        add_fresh_loan(c)
    return eng


def test_cli_enforce_refuses_while_another_run_holds_the_source(home, monkeypatch, capsys):
    eng = _one_loan_past_its_window(home)
    warehouse = f"sqlite:///{home / 'warehouse.db'}"
    monkeypatch.setenv("PATRON_PRIVACY_LOCK_WAIT_S", "0")
    proc = _holder(warehouse)
    try:
        rc, out, err = cli(capsys, "enforce", "--source", "koha", "--as-of", "2026-11-30")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert rc == 2, (out, err)
    assert "error: another run holds the lock run:koha; nothing was done" in err
    assert _linked(eng) == 1, "nothing changed"
    rc, _, err = cli(capsys, "enforce", "--source", "koha", "--as-of", "2026-11-30")
    assert rc == 0, err
    assert _linked(eng) == 0


# --- the nightly DAG's fan-out: one task per category, each under its own lock --------------


def test_a_category_task_and_a_whole_source_run_exclude_each_other(koha, monkeypatch):
    eng, policy = koha
    monkeypatch.setenv("PATRON_PRIVACY_LOCK_WAIT_S", "0.3")
    run = pipeline.open_run("koha", AS_OF, policy)
    try:
        assert pipeline.fan_out_categories(run) == [], "SQLite: one writer, nothing to spread"
        held_name = locks.category_lock_name("koha", "returned_loans")
        with locks.warehouse_lock(run.warehouse, held_name, wait_s=0):
            # A whole-source run needs every category's lock: it refuses, changing nothing.
            with pytest.raises(locks.LockBusy, match="run:koha:returned_loans"):
                pipeline.enforce(run, dry_run=False)
            assert _linked(eng) == LOANS
            # The same category waits for its own lock, then refuses ...
            with pytest.raises(locks.LockBusy):
                pipeline.enforce_category(run, "returned_loans")
            # ... while another category goes on meanwhile.
            other = pipeline.enforce_category(run, "hold_history")
            assert other["category"] == "hold_history" and other["mode"] == "enforce"
            assert _linked(eng) == LOANS
        done = pipeline.enforce_category(run, "returned_loans")
        assert done["changed"] == LOANS and _linked(eng) == 0
        with pytest.raises(KeyError, match="no rule for category nonesuch"):
            pipeline.enforce_category(run, "nonesuch")
    finally:
        run.source_engine.dispose()
        run.warehouse.dispose()


def test_the_whole_pass_adds_what_the_category_tasks_did(koha):
    eng, policy = koha
    run = pipeline.open_run("koha", AS_OF, policy)
    try:
        fanned = [pipeline.enforce_category(run, "returned_loans")]
        whole = pipeline.enforce(run, dry_run=False)
    finally:
        run.source_engine.dispose()
        run.warehouse.dispose()
    merged = {r["category"]: r for r in pipeline.merge_fanned(fanned, whole)}
    alone = {r["category"]: r for r in whole}
    assert alone["returned_loans"]["changed"] == 0, "the category task left nothing"
    loans = merged["returned_loans"]
    assert (
        loans["changed"] == LOANS
        and loans["batches"] == fanned[0]["batches"] + (alone["returned_loans"]["batches"])
    )
    assert loans["matched"] == LOANS + sum(loans["kept"].values()) + loans["remaining"]
    assert {k: v for k, v in merged.items() if k != "returned_loans"} == {
        k: v for k, v in alone.items() if k != "returned_loans"
    }


def test_cli_enforce_one_category_as_a_mapped_task_does(home, monkeypatch, capsys):
    eng = _one_loan_past_its_window(home)
    args = ("enforce", "--source", "koha", "--as-of", "2026-11-30", "--category")
    rc, _, err = cli(capsys, *args, "nonesuch")
    assert rc == 2 and "no rule for category nonesuch" in err
    rc, _, err = cli(capsys, "enforce", "--source", "squid", "--as-of", "2026-11-30",
                     "--category", "access_log_lines")  # fmt: skip
    assert rc == 2 and "--category is for database sources" in err
    assert _linked(eng) == 1
    rc, out, err = cli(capsys, *args, "returned_loans", "--json")
    assert rc == 0, err
    assert [r["category"] for r in json.loads(out.splitlines()[-1])["results"]] == [
        "returned_loans"
    ]
    assert _linked(eng) == 0
