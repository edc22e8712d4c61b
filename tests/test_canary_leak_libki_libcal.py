"""The canary leak test for Libki and LibCal: known personal values go into a Libki
database and a LibCal fixture (usernames, card numbers, names, emails, phones, a printed
document, the usernames Libki's own job copied into ``statistics.info``), the runs go
end to end through the command line — enforce, verify, validate and summary for Libki;
the LibCal step (served from its fixture on 127.0.0.1, as in the demo) — with alerts on,
and not one value may turn up in anything they leave behind.

Artifacts searched (``leak_scan``): the warehouse (every cell, raw bytes of the file and
its -wal), PATRON_PRIVACY_HOME outside the sources themselves (keys, exports, ...),
AIRFLOW_HOME, stdout and stderr of every command (``-v``: the logs go to stderr), and
the body of every alert posted to the webhook. The sources are where the values may
stay: rows inside their window keep them, and LibCal keeps what it keeps.
"""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from leak_scan import digit_forms, files_scanned, scan_bytes, scan_sqlite, scan_text, scan_tree
from libki_builders import add_print, add_session_rows, add_stat, add_user, make_libki
from nightly_harness import Stack, run_cli, warehouse_rows, write_keys
from patron_privacy.connections import engine_for_url
from patron_privacy.sources.libcal.fixture import FIXTURE_FILE, Fixture
from patron_privacy.sources.libki import schema
from sqlalchemy import insert, update

AS_OF = "2026-11-30"
T0 = datetime(2026, 11, 30)
DAY = timedelta(days=1)

LIBKI_ACTIVE = {  # uses a PC every week: kept, but unlinked from yesterday's sessions
    "username": "29977300000421",
    "firstname": "Zqxcanarykiactivefirst",
    "lastname": "Zqxcanarykiactivelast",
    "notes": "Zqxcanarykinote: asked for help with an immigration form",
}
LIBKI_DORMANT = {  # not seen for two years: deleted, and no copy of the name kept
    "username": "29977300000512",
    "firstname": "Zqxcanarykidormantfirst",
    "lastname": "Zqxcanarykidormantlast",
}
LIBKI_DELETED_BY_LIBKI = "29977300000699"  # what Libki's own job wrote into statistics.info
PRINTED = {"filename": "Zqxcanary-custody-petition.pdf", "data": b"%PDF Zqxcanaryprintbody"}
MESSAGE = "Zqxcanarykimessage: your time is almost up"
REGISTRANTS = [
    {
        "first_name": "Zqxcanarycalfirst",
        "last_name": "Zqxcanarycallast",
        "email": "zqxcanary.cal@example.org",
        "phone": "(860) 555-7319",
        "barcode": "29977300000777",
    },
    {
        "first_name": "Zqxcanarycaltwofirst",
        "last_name": "Zqxcanarycaltwolast",
        "email": "zqxcanary.caltwo@example.org",
        "phone": "860-555-4410",
        "barcode": "29977300000888",
    },
]


def literal_values() -> list[str]:
    out = [*LIBKI_ACTIVE.values(), *LIBKI_DORMANT.values(), LIBKI_DELETED_BY_LIBKI]
    out += [PRINTED["filename"], MESSAGE]
    return out


def libcal_values() -> list[str]:
    return [v for r in REGISTRANTS for v in r.values()]


def needles() -> list[str]:
    out = ["zqxcanary"]
    for value in literal_values() + libcal_values():
        out += digit_forms(value)
    return list(dict.fromkeys(out))


def seed_libki(stack: Stack) -> None:
    eng = engine_for_url(f"sqlite:///{stack.pp_home / 'sources' / 'libki.db'}")
    make_libki(eng)
    with eng.begin() as c:
        add_user(
            c,
            10,
            created=T0 - 900 * DAY,
            **{k: v for k, v in LIBKI_ACTIVE.items() if k != "username"},
            username=LIBKI_ACTIVE["username"],
        )
        add_user(
            c,
            11,
            created=T0 - 1200 * DAY,
            updated=T0 - 700 * DAY,
            firstname=LIBKI_DORMANT["firstname"],
            lastname=LIBKI_DORMANT["lastname"],
            username=LIBKI_DORMANT["username"],
        )
        name = LIBKI_ACTIVE["username"]
        add_session_rows(c, 1, name, T0 - DAY + timedelta(hours=10), 50)  # yesterday
        add_session_rows(c, 3, name, T0 - 120 * DAY + timedelta(hours=11), 20)  # deleted
        add_session_rows(c, 5, name, T0 + timedelta(hours=9), None)  # today: inside window
        add_stat(
            c,
            7,
            None,
            T0 - 5 * DAY,
            action="USERS_DELETE",
            info={"deleted_from": "cronjobs/libki_nightly", "usernames": LIBKI_DELETED_BY_LIBKI},
        )
        add_stat(
            c,
            8,
            "staffer",
            T0 - 2 * DAY,
            action="MODIFY_TIME",
            info={"username": name, "minutes": 15},
        )
        add_print(c, 1, 10, name, T0 - 2 * DAY)
        c.execute(
            update(schema.print_files)
            .where(schema.print_files.c.id == 1)
            .values(filename=PRINTED["filename"], data=PRINTED["data"])
        )
        c.execute(insert(schema.messages), [{"user_id": 11, "content": MESSAGE}])
    eng.dispose()


def seed_libcal(stack: Stack) -> None:
    def event(eid: int, day: date) -> dict:
        return {
            "id": eid,
            "title": "Program",
            "start": f"{day.isoformat()}T10:00:00-05:00",
            "end": f"{day.isoformat()}T11:00:00-05:00",
            "calendar": {"id": 5, "name": "Programs"},
            "campus": {"id": 1, "name": "Central Library"},
            "category": [{"id": 1, "name": "Health"}],
            "audience": [{"id": 1, "name": "Adults"}],
            "registration": True,
            "physical_seats": 20,
        }

    regs = [
        {
            **r,
            "booking_id": i,
            "registered_date": "2026-08-01T09:00:00-04:00",
            "attendance": "Attended",
        }
        for i, r in enumerate(REGISTRANTS, 1)
    ]
    fx = Fixture(
        client_id="canary-client",
        client_secret="canary-secret-0123",
        events=[event(301, date(2026, 11, 20)), event(302, date(2026, 9, 15))],
        registrations={"301": regs, "302": regs},  # 302: past the window, still held
        extra={"calendars": [5]},
    )
    fx.dump(stack.pp_home / "sources" / "libcal" / FIXTURE_FILE)


class Webhook:
    """Alerts posted to 127.0.0.1 are kept here, to be scanned like any other artifact."""

    def __init__(self):
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def conn(self) -> str:
        host, port = self.httpd.server_address[:2]
        return json.dumps({"conn_type": "http", "host": f"http://{host}:{port}/hook"})

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.xdist_group("canary_libki_libcal")
def test_no_canary_from_libki_or_libcal_reaches_any_artifact(tmp_path, monkeypatch):
    stack = Stack(tmp_path, tmp_path / "airflow", tmp_path / "pp")
    stack.airflow_home.mkdir(parents=True)
    (stack.pp_home / "sources").mkdir(parents=True)
    seed_libki(stack)
    seed_libcal(stack)
    write_keys(stack)
    seeded = {
        f.needle for f in scan_sqlite(stack.pp_home / "sources" / "libki.db", literal_values())
    }
    assert seeded == set(literal_values())
    raw = (stack.pp_home / "sources" / "libcal" / FIXTURE_FILE).read_bytes()
    assert {f.needle for f in scan_bytes(raw, libcal_values(), "fixture")} == set(libcal_values())

    hook = Webhook()
    env = {**stack.env, "AIRFLOW_CONN_ALERTS_WEBHOOK": hook.conn}
    monkeypatch.setattr(Stack, "env", property(lambda self: env))
    try:
        libki = ["--source", "libki", "--as-of", AS_OF]
        cli = {
            "libki enforce": run_cli(stack, "-v", "enforce", *libki, "--json", "--alert"),
            "libki verify": run_cli(stack, "-v", "verify", *libki, "--alert"),
            "libki validate": run_cli(stack, "-v", "validate", *libki, "--json"),
            "libki summary": run_cli(stack, "summary"),
            "libcal": run_cli(
                stack,
                "-v",
                "libcal",
                "--as-of",
                AS_OF,
                "--run-id",
                "canary-lc",
                "--json",
                "--alert",
            ),
            "libcal summary": run_cli(stack, "summary", "--run-id", "canary-lc"),
        }
    finally:
        hook.stop()
    expected_rc = {"libcal": 1, "libcal summary": 1}  # the vendor holds registrations past window
    for name, proc in cli.items():
        want = expected_rc.get(name, 0)
        assert proc.returncode == want, (
            f"{name}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )

    # The runs really worked on the canary rows (a run that did nothing leaks nothing).
    audit = warehouse_rows(stack, "retention_audit")
    changed = {r["category"]: r["changed"] for r in audit if r["mode"] == "enforce"}
    assert changed["session_statistics_link"] == 6 and changed["inactive_accounts"] == 1
    assert changed["print_files"] == 1 and changed["session_statistics"] == 2
    assert len(warehouse_rows(stack, "pc_session_facts")) == 2
    assert len(warehouse_rows(stack, "program_facts")) == 2
    libcal_rows = [r for r in audit if r["run_id"] == "canary-lc"]
    assert [r["remaining"] for r in libcal_rows] == [2]
    assert hook.bodies, "the LibCal findings were alerted"

    found = []
    found += scan_sqlite(stack.warehouse_db, needles())
    found += scan_tree(stack.pp_home, needles(), skip=[stack.pp_home / "sources"])
    found += scan_tree(stack.airflow_home, needles())
    assert files_scanned(stack.pp_home) >= 3
    for name, proc in cli.items():
        found += scan_text(proc.stdout, needles(), f"patron_privacy {name} stdout")
        found += scan_text(proc.stderr, needles(), f"patron_privacy {name} stderr")
    for i, body in enumerate(hook.bodies):
        found += scan_bytes(body, needles(), f"alert #{i + 1} posted to the webhook")
    assert not found, "personal values leaked:\n" + "\n".join(str(f) for f in found)
