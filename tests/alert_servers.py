"""Real servers on 127.0.0.1 for alert tests: SMTP (aiosmtpd) and an HTTP webhook
endpoint (http.server in a thread), with the connections that point at them."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

RECIPIENTS = ["privacy-officer@library.example", "systems@library.example"]
SENDER = "patron-privacy@library.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """Every message the SMTP server accepted, as received."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self):
        return [
            (e.rcpt_tos, email.message_from_bytes(e.content, policy=email.policy.default))
            for e in self.envelopes
        ]


def body_text(msg) -> str:
    return msg.get_body(preferencelist=("plain", "html")).get_content().replace("\r\n", "\n")


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, str]]:
    """An SMTP server on 127.0.0.1 and the ``smtp_default`` connection (JSON) that reaches
    it: no TLS, as a relay on localhost. For a child process's environment."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    extra = {
        "disable_ssl": True,
        "disable_tls": True,
        "from_email": SENDER,
        "alert_to": ", ".join(RECIPIENTS),
        "retry_limit": 0,
        "timeout": 10,
    }
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra}
    try:
        yield inbox, json.dumps(conn)
    finally:
        controller.stop()


@contextmanager
def smtp_inbox(monkeypatch) -> Iterator[Inbox]:
    """An SMTP server, and ``smtp_default`` pointing at it in this process."""
    with smtp_server() as (inbox, conn):
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", conn)
        yield inbox


@contextmanager
def webhook_server(monkeypatch) -> Iterator[list[tuple[str, dict]]]:
    """An HTTP endpoint recording POSTed JSON, and ``alerts_webhook`` pointing at it."""
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/notify/apprise"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTS_WEBHOOK", json.dumps({"conn_type": "http", "extra": {"url": url}})
    )
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


class FakeTI:
    """What a failure callback reads from its task instance: ids and XCom."""

    dag_id = "koha_nightly_retention"
    run_id = "manual__2026-11-30"

    def __init__(self, task_id: str, xcom: dict):
        self.task_id = task_id
        self._xcom = xcom

    def xcom_pull(self, task_ids=None, key="return_value"):
        return self._xcom.get(key)
