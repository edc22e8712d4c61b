"""A LibCal-shaped HTTP server on 127.0.0.1, for the demo and the tests.

It answers the three requests the connector makes, in the documented shapes:
``POST /1.1/oauth/token`` (client credentials, form or JSON body), ``GET /1.1/events``
(``cal_id``, ``date``, ``days``, ``limit``, ``page``; ``{"events": [...]}``) and
``GET /1.1/events/{id,id,...}/registrations`` (``[{"event_id", "registrants"}]``), with
a bearer token required on the last two (401 without one). Data comes from a fixture:
a JSON document (``libcal_fixture.json``, written by the demo) or a dict.

Faults can be queued for tests — an HTTP status with headers (429 with Retry-After,
500, 503), a delay longer than the client's timeout, a body that is HTML or garbage —
each matched on the request path and used a given number of times. The server logs
nothing (a request line could carry ids; the bodies it serves hold registrant data).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURE_FILE = "libcal_fixture.json"


@dataclass
class Fault:
    """One queued misbehaviour: used for the next ``times`` requests whose path matches."""

    path_contains: str
    times: int = 1
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = "application/json"
    delay_s: float = 0.0


@dataclass
class Fixture:
    client_id: str
    client_secret: str
    events: list[dict]
    registrations: dict[str, list[dict]]
    extra: dict = field(default_factory=dict)  # what the libcal_api connection's extra holds

    @classmethod
    def load(cls, path: str | Path) -> Fixture:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            client_id=doc["client_id"],
            client_secret=doc["client_secret"],
            events=doc["events"],
            registrations={str(k): v for k, v in doc["registrations"].items()},
            extra=doc.get("extra", {}),
        )

    def dump(self, path: str | Path) -> None:
        doc = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "extra": self.extra,
            "events": self.events,
            "registrations": self.registrations,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(target)


def _start_date(ev: dict) -> date | None:
    # The day as the vendor files the event (its first ten characters), so an event whose
    # time is otherwise malformed is still served: bad input for the client to handle.
    try:
        return date.fromisoformat(str(ev.get("start"))[:10])
    except ValueError:
        return None


class LibCalFixtureServer:
    """``with LibCalFixtureServer(fixture) as server: server.url`` — a thread, port chosen."""

    def __init__(self, fixture: Fixture, *, default_limit: int = 20, max_limit: int = 500):
        self.fixture = fixture
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.faults: list[Fault] = []
        self.requests: list[str] = []  # "METHOD path" of every request, in order
        self.tokens: set[str] = set()
        self.ignore_paging = False
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control -------------------------------------------------------------------------------

    def fail(self, path_contains: str, **kw) -> None:
        with self._lock:
            self.faults.append(Fault(path_contains, **kw))

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LibCalFixtureServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # no request lines anywhere
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                server._handle(self, "POST")

            def do_GET(self):  # noqa: N802
                server._handle(self, "GET")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LibCalFixtureServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- serving -------------------------------------------------------------------------------

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.path_contains in path:
                    f.times -= 1
                    return f
        return None

    def _send(self, h, status: int, body: bytes, ctype="application/json", headers=None):
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    def _json(self, h, status: int, doc) -> None:
        self._send(h, status, json.dumps(doc).encode("utf-8"))

    def _handle(self, h, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(f"{method} {h.path}")
        fault = self._fault_for(h.path)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.status != 200 or fault.body is not None:
                body = fault.body if fault.body is not None else b'{"error": "fault"}'
                self._send(h, fault.status, body, fault.content_type, fault.headers)
                return
        parts = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if method == "POST" and parts.path == "/1.1/oauth/token":
            self._token(h, raw)
            return
        auth = h.headers.get("Authorization", "")
        with self._lock:
            ok = auth.startswith("Bearer ") and auth[7:] in self.tokens
        if not ok:
            self._json(h, 401, {"error": "invalid_token"})
            return
        if method == "GET" and parts.path == "/1.1/events":
            self._events(h, query)
        elif (
            method == "GET"
            and parts.path.startswith("/1.1/events/")
            and parts.path.endswith("/registrations")
        ):
            ids = parts.path[len("/1.1/events/") : -len("/registrations")]
            self._registrations(h, urllib.parse.unquote(ids).split(","))
        else:
            self._json(h, 404, {"error": "not found"})

    def _token(self, h, raw: bytes) -> None:
        ctype = h.headers.get("Content-Type", "")
        if "json" in ctype:
            try:
                form = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                form = {}
        else:
            form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace")))
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.fixture.client_id
            or form.get("client_secret") != self.fixture.client_secret
        ):
            self._json(h, 401, {"error": "invalid_client"})
            return
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens.add(token)
        self._json(
            h,
            200,
            {"access_token": token, "expires_in": 3600, "token_type": "Bearer", "scope": "ev_r"},
        )

    def _events(self, h, q: dict) -> None:
        try:
            cal = str(q["cal_id"])
            start = date.fromisoformat(q.get("date") or date.today().isoformat())
            days = min(int(q.get("days", 30)), 365)
            limit = min(max(int(q.get("limit", self.default_limit)), 1), self.max_limit)
            page = max(int(q.get("page", 1)), 1)
        except (KeyError, ValueError):
            self._json(h, 400, {"error": "bad request"})
            return
        end = start + timedelta(days=days)
        chosen = [
            ev
            for ev in self.fixture.events
            if str((ev.get("calendar") or {}).get("id")) == cal
            and (d := _start_date(ev)) is not None
            and start <= d < end
        ]
        chosen.sort(key=lambda ev: (str(ev.get("start")), str(ev.get("id"))))
        if self.ignore_paging:
            page = 1
        self._json(h, 200, {"events": chosen[(page - 1) * limit : page * limit]})

    def _registrations(self, h, ids: list[str]) -> None:
        out = [
            {
                "event_id": int(i) if i.isdigit() else i,
                "registrants": self.fixture.registrations.get(i, []),
            }
            for i in ids
            if i
        ]
        self._json(h, 200, out)


@contextmanager
def serve(fixture: Fixture | str | Path):
    """The fixture (or a fixture file) served for the length of a ``with`` block."""
    fx = fixture if isinstance(fixture, Fixture) else Fixture.load(fixture)
    server = LibCalFixtureServer(fx).start()
    try:
        yield server
    finally:
        server.stop()
