"""The canary leak test for the legal side: a patron whose values are known goes into
Koha and under a legal hold, staff try to type those values into the register, runs
and reports happen — and no value may turn up in the register, the board report,
the command output or the logs. The patron's id may sit in ``legal_hold_subjects``
while the hold is active, and nowhere at all (not even in the warehouse file's raw
bytes) once it is released."""

from __future__ import annotations

import logging
from datetime import timedelta

from koha_builders import AS_OF, add_old_issue
from leak_scan import files_scanned, scan_sqlite, scan_text, scan_tree
from legal_builders import CANARY, CANARY_BN, add_canary, add_fresh_loan, canary_needles, cli
from legal_builders import koha_home as make_home


def test_no_canary_in_register_report_output_or_logs(home, capsys, caplog):
    caplog.set_level(logging.INFO)
    koha = make_home(home)
    with koha.begin() as c:
        add_canary(c)
        add_old_issue(c, 1, CANARY_BN, AS_OF - timedelta(days=90))
        add_old_issue(c, 2, CANARY_BN, AS_OF - timedelta(days=45), item=2)
        add_fresh_loan(c)
    outputs: list[str] = []

    def run(*args: str, expect: int = 0) -> str:
        # -v (log progress) re-raises errors instead of exiting 2: only for the runs that pass.
        rc, out, err = cli(capsys, *(("-v", *args) if expect == 0 else args))
        outputs.append(out + err)
        assert rc == expect, err
        return out

    # Staff try to put the patron into the register, every way a value can be typed.
    typed = [
        f"records of {CANARY['email']}",
        f"loans on card {CANARY['cardnumber']}",
        f"patron phone {CANARY['phone']}",
        f"patron #{CANARY_BN}",
        f"the reader at {CANARY['address']}",
    ]
    base = ["requests", "add", "--received", "2026-11-03", "--kind", "subpoena"]
    for text in typed:
        run(*base, "--agency", "Hartford Police Department", "--asks-for", text, expect=2)
        run(*base, "--agency", text, "--asks-for", "loan history", expect=2)
    ref = run(
        *base, "--agency", "Hartford Police Department", "--asks-for",
        "loan history of one patron named in the subpoena", "--counsel-reviewed", "2026-11-05",
    ).strip()  # fmt: skip
    hold_id = run(
        "holds", "place", "--source", "koha", "--patron", str(CANARY_BN), "--request", ref
    ).strip()
    run("enforce", "--source", "koha", "--as-of", "2026-11-30", "--json")
    for args in (("holds", "list"), ("requests", "list"), ("requests", "show", ref), ("summary",)):
        run(*args)
    run("board-report", "--month", "2026-11")

    # While the hold is active the id is in its restricted table, and only there.
    cells = [f for f in scan_sqlite(home / "warehouse.db", canary_needles()) if ":" in f.where]
    assert {(f.where, f.needle) for f in cells} == {
        ("warehouse.db:legal_hold_subjects.patron_id", str(CANARY_BN))
    }

    run("holds", "release", hold_id)
    run("enforce", "--source", "koha", "--as-of", "2026-11-30", "--json")
    run("board-report", "--month", "2026-11")

    needles = canary_needles()
    findings = scan_sqlite(home / "warehouse.db", needles)
    findings += scan_tree(home / "exports", needles)
    findings += scan_text("\n".join(outputs), needles, "command output")
    findings += scan_text(caplog.text, needles, "log records")
    assert not findings, "\n".join(map(str, findings))
    # A scan of nothing proves nothing.
    assert files_scanned(home / "exports" / "board_reports") == 2
    assert len(outputs) == 2 * len(typed) + 11 and caplog.records
    assert "legal_hold=2" in outputs[2 * len(typed) + 2], "the run did see the hold"
