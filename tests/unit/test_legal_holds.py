"""Legal holds through the command line and the warehouse, as staff use them:
placing and releasing, every refusal writing nothing, and holds binding the
retention run (``enforce``) — including a hold placed while a run is under way. Every
test runs with the warehouse on SQLite and on PostgreSQL (``warehouse_db``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from koha_builders import AS_OF, T, add_old_issue, add_patron
from legal_builders import (
    CANARY_BN,
    FRESH_PATRON,
    add_canary,
    add_fresh_loan,
    cli,
    koha_home,
    new_request,
)
from patron_privacy import connections, pipeline
from patron_privacy.policy import DEFAULT_POLICY
from patron_privacy.warehouse import legal_hold_subjects, legal_holds
from sqlalchemy import select


@pytest.fixture
def koha(home, warehouse_db):
    return koha_home(home)


def loans(eng) -> dict[int, int | None]:
    with eng.connect() as c:
        return dict(
            c.execute(select(T["old_issues"].c.issue_id, T["old_issues"].c.borrowernumber)).all()
        )


def hold_tables(home) -> tuple[list, list]:
    eng = connections.engine_for(connections.WAREHOUSE_DB)
    try:
        with eng.connect() as c:
            return (
                c.execute(select(legal_holds).order_by(legal_holds.c.hold_id)).all(),
                c.execute(
                    select(legal_hold_subjects).order_by(
                        legal_hold_subjects.c.hold_id, legal_hold_subjects.c.patron_id
                    )
                ).all(),
            )
    finally:
        eng.dispose()


def small_batches(tmp_path, size: int = 3) -> str:
    text = DEFAULT_POLICY.read_text()
    assert "batch_size: 10000" in text
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("batch_size: 10000", f"batch_size: {size}"))
    return str(path)


def test_place_list_release(koha, home, capsys):
    ref = new_request()
    rc, out, err = cli(
        capsys, "holds", "place", "--source", "koha", "--patron", f"{CANARY_BN},10",
        "--patron", "10", "--categories", "returned_loans,hold_history",
        "--from", "2026-09-01", "--to", "2026-10-31", "--request", ref,
    )  # fmt: skip
    assert (rc, out.strip(), err) == (0, "1", "")
    rc, out, _ = cli(capsys, "holds", "list")
    assert rc == 0
    line = out.splitlines()[2].split()
    assert line[:6] == ["1", "koha", ref, "hold_history,returned_loans", "2026-09-01", "2026-10-31"]
    assert line[-1] == "2", "two patrons, counted"
    assert str(CANARY_BN) not in out
    rc, out, _ = cli(capsys, "requests", "show", ref)
    assert "1 active holding 2 patron(s)" in out and str(CANARY_BN) not in out

    holds, subjects = hold_tables(home)
    assert holds[0].date_to == datetime(2026, 10, 31, 23, 59, 59, 999999), (
        "--to covers the whole last day"
    )
    assert len(subjects) == 2
    rc, out, err = cli(capsys, "holds", "release", "1")
    assert rc == 0 and "released" in out
    holds, subjects = hold_tables(home)
    assert holds[0][-1] is not None and subjects == []
    rc, out, _ = cli(capsys, "holds", "list")
    assert "no active legal holds" in out
    rc, out, _ = cli(capsys, "holds", "list", "--all")
    assert out.splitlines()[2].split()[-1] == "0"


@pytest.mark.parametrize(
    ("flags", "extra", "message"),
    [
        ({"--source": "nosuch"}, [], "unknown source 'nosuch' (expected one of koha"),
        ({}, ["--categories", "returned_loans", "loans"], "unknown category 'loans' for source"),
        ({}, ["--from", "2026-10-01", "--to", "2026-09-01"], "the date range is inverted"),
        ({"--request": "LE-2026-404"}, [], "no request 'LE-2026-404' in the register"),
        ({"--request": "LE-2026-002"}, [], "request LE-2026-002 was refused on 2026-11-04"),
        ({"--patron": "2999-0048-2139"}, [], "1 of the ids given is not a koha patron number"),
    ],
)
def test_bad_holds_are_refused_and_nothing_is_written(koha, home, capsys, flags, extra, message):
    ref = new_request()
    new_request(kind="informal", decision="refused", decided_on=datetime(2026, 11, 4).date())
    argv = ["holds", "place"]
    for k, v in (
        {"--source": "koha", "--patron": str(CANARY_BN), "--request": ref} | flags
    ).items():
        argv += [k, v]
    rc, out, err = cli(capsys, *argv, *extra)
    assert rc == 2 and out == ""
    assert message in err, err
    assert err.count("\n") == 1, "one line"
    assert "2999-0048-2139" not in err, "a refused id is never repeated"
    assert hold_tables(home) == ([], [])


def test_release_of_a_missing_or_released_hold_is_refused(koha, home, capsys):
    rc, _, err = cli(capsys, "holds", "release", "7")
    assert rc == 2 and "error: no hold 7" in err
    ref = new_request()
    cli(capsys, "holds", "place", "--source", "koha", "--patron", "10", "--request", ref)
    assert cli(capsys, "holds", "release", "1")[0] == 0
    rc, _, err = cli(capsys, "holds", "release", "1")
    assert rc == 2 and "hold 1 was already released on" in err


def test_hold_keeps_loans_through_a_run_and_releases_them_the_run_after(koha, home, capsys):
    with koha.begin() as c:
        add_canary(c)
        add_patron(c, 10)
        add_old_issue(c, 1, CANARY_BN, AS_OF - timedelta(days=100))
        add_old_issue(c, 2, CANARY_BN, AS_OF - timedelta(days=60), item=2)
        add_old_issue(c, 3, 10, AS_OF - timedelta(days=60), item=3)
        add_old_issue(c, 4, CANARY_BN, AS_OF - timedelta(days=5), item=4)  # inside its window
        add_fresh_loan(c)
    ref = new_request()
    rc, out, _ = cli(
        capsys, "holds", "place", "--source", "koha", "--patron", str(CANARY_BN),
        "--categories", "returned_loans", "--request", ref,
    )  # fmt: skip
    hold_id = out.strip()

    rc, out, err = cli(capsys, "enforce", "--source", "koha", "--as-of", "2026-11-30")
    assert rc == 0, err
    assert loans(koha) == {1: CANARY_BN, 2: CANARY_BN, 3: 1, 4: CANARY_BN, 900: FRESH_PATRON}
    row = next(x for x in out.splitlines() if x.startswith("koha.returned_loans"))
    assert "legal_hold=2" in row
    assert str(CANARY_BN) not in out + err

    assert cli(capsys, "holds", "release", hold_id)[0] == 0
    rc, out, err = cli(capsys, "enforce", "--source", "koha", "--as-of", "2026-11-30")
    assert rc == 0, err
    assert loans(koha) == {1: 1, 2: 1, 3: 1, 4: CANARY_BN, 900: FRESH_PATRON}, (
        "the window still protects loan 4"
    )
    row = next(x for x in out.splitlines() if x.startswith("koha.returned_loans"))
    assert "legal_hold" not in row


def test_hold_placed_during_a_run_binds_the_batches_after_it(
    koha, home, capsys, tmp_path, monkeypatch
):
    with koha.begin() as c:
        add_canary(c)
        add_patron(c, 10)
        for i in range(1, 13):
            add_old_issue(c, i, CANARY_BN if i % 2 else 10, AS_OF - timedelta(days=100 + i))
        add_fresh_loan(c)
    ref = new_request()
    placed: list[int] = []
    real = pipeline.enforce_rule

    def enforce_rule(engine, rule, ctx, **kw):
        def after_batch(n: int) -> None:
            # A clerk places the hold from another process while batch 1 is done:
            # through the CLI, on its own warehouse connection.
            if rule.category.name == "returned_loans" and n == 1:
                rc, out, err = cli(
                    capsys, "holds", "place", "--source", "koha", "--patron", str(CANARY_BN),
                    "--request", ref,
                )  # fmt: skip
                assert rc == 0, err
                placed.append(int(out))

        return real(engine, rule, ctx, after_batch=after_batch, **kw)

    monkeypatch.setattr(pipeline, "enforce_rule", enforce_rule)
    rc, out, err = cli(
        capsys, "enforce", "--source", "koha", "--as-of", "2026-11-30",
        "--policy", small_batches(tmp_path), "--json",
    )  # fmt: skip
    assert rc == 0, err
    assert placed == [1]
    state = loans(koha)
    # Batches run in issue_id order, 3 rows each: 1-3 went before the hold existed.
    assert [state[i] for i in (1, 2, 3)] == [1, 1, 1]
    assert all(state[i] == CANARY_BN for i in (5, 7, 9, 11)), state
    assert all(state[i] == 1 for i in (4, 6, 8, 10, 12))
    results = json.loads(out.splitlines()[-1])["results"]
    loans_result = next(r for r in results if r["category"] == "returned_loans")
    assert loans_result["kept"] == {"legal_hold": 4} and loans_result["remaining"] == 0
