"""Alerts: a person hears about it when a source's data goes wrong or a run finds records
it should not be holding — without the alert itself becoming a leak.

Three kinds, one per failed source per run:

* **validation failed** — which checks failed, on which dataset and column, how many
  rows; nothing was enforced on that source in that run;
* **compliance findings** — verification counted records past their window that
  still identify a patron (per category), or data errors;
* **input set aside** — a file, line or request the run could not read was left
  exactly as it is and the rest was done; a person has to look at what is named.

Every alert says where to look (the run id, the warehouse rows, the CLI command that
reproduces it) and carries names and counts only — never a record's value. The
text is built here from the same count-only dicts the pipeline returns, so there is
nothing else it could quote.

Delivery:

* in Airflow, :func:`failure_notifier` — an ``SmtpNotifier`` (connection
  ``smtp_default``) for a task's ``on_failure_callback``; it builds the alert from the
  failed task's XCom (``validation`` or ``verification``) and also posts to the
  ``alerts_webhook`` connection when one exists;
* outside Airflow (the CLI), :func:`send` — the same text through ``smtplib`` and the
  same connections, resolved by ``patron_privacy.connections.get_conn``.

Recipients are the ``alert_to`` key (comma-separated) in the extra of ``smtp_default``;
the sender is its ``from_email``, as the SMTP provider reads it. The webhook
connection's extra holds ``url`` (or the host is the URL) and ``format``: ``apprise``
(default: ``{"title", "body", "type"}``) or ``slack`` (``{"text"}``).

This module imports nothing heavy: DAG files import it at parse time.
"""

from __future__ import annotations

import html
import json
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage

from patron_privacy import connections

SMTP_CONN = "smtp_default"
WEBHOOK_CONN = "alerts_webhook"
PREFIX = "[patron-privacy]"
FOOTER = "This alert carries names and counts only, never a record's values."
MAX_PROBLEMS_SHOWN = 20


class AlertConfigError(RuntimeError):
    """An alert cannot be sent as configured; the message names the connection."""


@dataclass(frozen=True)
class Alert:
    kind: str  # "validation" | "compliance" | "set_aside" | "task"
    source: str
    run_id: str
    subject: str
    body: str

    @property
    def html(self) -> str:
        return f"<pre>{html.escape(self.body)}</pre>"


def _day(as_of) -> str:
    return str(as_of or "")[:10] or "DATE"


def validation_alert(
    report: dict,
    *,
    dag_id: str | None = None,
    task_id: str = "validate_source_data",
) -> Alert:
    """The alert for a failed validation, from ``pipeline.validate``'s report dict."""
    from patron_privacy.validation import failure_lines  # noqa: PLC0415 - pandas, only when used

    source, run_id, day = report["source"], report.get("run_id") or "-", _day(report.get("as_of"))
    failed = report.get("failed") or []
    lines = [
        f"Source: {source}",
        f"As of: {str(report.get('as_of', ''))[:16].replace('T', ' ')}",
        f"Run: {run_id}",
        f"Result: data validation FAILED — nothing was enforced on {source} in this run.",
        "",
        f"Failed checks ({len(failed)} of {report.get('checks', '?')}):",
        *(f"  - {line}" for line in failure_lines(report)),
        "",
        "Rows per dataset: "
        + (", ".join(f"{k}={v}" for k, v in sorted((report.get("rows") or {}).items())) or "-"),
        "",
        "Where to look:",
    ]
    if dag_id:
        lines.append(f"  - Airflow: DAG {dag_id}, run {run_id}, task {task_id} (its log)")
    lines += [
        f"  - Warehouse: SELECT * FROM validation_runs WHERE run_id = '{run_id}' "
        "AND passed = 0;  (recent history: the same table, by source and as_of)",
        f"  - By hand: python -m patron_privacy validate --source {source} --as-of {day}",
        "",
        FOOTER,
    ]
    subject = (
        f"{PREFIX} {source}: data validation failed, {len(failed)} "
        f"check{'s' if len(failed) != 1 else ''} — nothing enforced (run {run_id})"
    )
    return Alert("validation", source, run_id, subject, "\n".join(lines))


def _verification_body(
    source: str, day: str, run_id: str, result: list[str], dag_id: str | None, task_id: str
) -> str:
    """An alert about what verification found: the run, the result, where to look."""
    lines = [f"Source: {source}", f"As of: {day}", f"Run: {run_id}", *result, "Where to look:"]
    if dag_id:
        lines.append(f"  - Airflow: DAG {dag_id}, run {run_id}, task {task_id} (its log)")
    lines += [
        f"  - Audit: python -m patron_privacy summary --run-id {run_id}",
        f"  - By hand: python -m patron_privacy verify --source {source} --as-of {day}",
        "",
        FOOTER,
    ]
    return "\n".join(lines)


def _set_aside_section(results: list[dict]) -> list[str]:
    problems = input_problems(results)
    if not problems:
        return []
    return ["Also set aside, left as it is:", *_problem_lines(problems), ""]


def compliance_findings(results: list[dict]) -> list[dict]:
    """Categories with records past their window that still identify a patron."""
    return [r for r in results if int(r.get("remaining") or 0) > 0]


def compliance_alert(
    source: str,
    results: list[dict],
    *,
    run_id: str,
    as_of=None,
    dag_id: str | None = None,
    task_id: str = "verify_nothing_past_its_window_identifies",
) -> Alert | None:
    """The alert for verification counts above zero; None when there is nothing to report."""
    findings = compliance_findings(results)
    if not findings:
        return None
    shown = [r for r in results if r.get("remaining") or r.get("data_errors")]
    day = _day(as_of)
    remaining = sum(int(r.get("remaining") or 0) for r in findings)
    body = _verification_body(
        source,
        day,
        run_id,
        [
            f"Result: COMPLIANCE FINDINGS — {remaining} record(s) past their retention window "
            "still identify a patron and nothing blocks them.",
            "",
            "Per category (still identifying past window; data errors = impossible dates):",
            *(
                f"  - {r.get('source', source)}.{r['category']}: "
                f"remaining={int(r.get('remaining') or 0)}, "
                f"data_errors={int(r.get('data_errors') or 0)}"
                for r in shown
            ),
            "",
            *_set_aside_section(results),
        ],
        dag_id,
        task_id,
    )
    subject = (
        f"{PREFIX} {source}: compliance findings, {remaining} record(s) past window (run {run_id})"
    )
    return Alert("compliance", source, run_id, subject, body)


def input_problems(results: list[dict]) -> list[str]:
    """The distinct problems a run reported with its input (file and line, or a request),
    in the order reported; each is a name and a reason, never a value read."""
    return list(dict.fromkeys(r["error"] for r in results if r.get("error")))


def _problem_lines(problems: list[str]) -> list[str]:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    return [
        *(f"  - {p}" for p in shown),
        *([f"  - and {more} more (the audit rows and the task log name them all)"] if more else []),
    ]


def set_aside_alert(
    source: str,
    results: list[dict],
    *,
    run_id: str,
    as_of=None,
    dag_id: str | None = None,
    task_id: str = "verify_nothing_past_its_window_identifies",
) -> Alert | None:
    """The alert for input a run set aside (unreadable file, line or request), left as it
    is while the rest was done; None when nothing was set aside."""
    problems = input_problems(results)
    if not problems:
        return None
    day = _day(as_of)
    body = _verification_body(
        source,
        day,
        run_id,
        [
            f"Result: INPUT SET ASIDE — {len(problems)} problem(s) with the input; what they "
            "name was left exactly as it is, and the rest of the run was done.",
            "Records in what was set aside are not enforced until it is fixed or removed.",
            "",
            "Set aside (file and line, or request):",
            *_problem_lines(problems),
            "",
        ],
        dag_id,
        task_id,
    )
    subject = (
        f"{PREFIX} {source}: input set aside, {len(problems)} problem(s) — the rest was done "
        f"(run {run_id})"
    )
    return Alert("set_aside", source, run_id, subject, body)


def task_failure_alert(source: str, *, run_id: str, dag_id: str, task_id: str) -> Alert:
    """A task failed before it produced counts (a connection, a schema, a crash)."""
    body = "\n".join(
        [
            f"Source: {source}",
            f"Run: {run_id}",
            f"Result: task {task_id} failed before producing a result; nothing after it ran.",
            "",
            "Where to look:",
            f"  - Airflow: DAG {dag_id}, run {run_id}, task {task_id} (its log)",
            "",
            FOOTER,
        ]
    )
    return Alert(
        "task", source, run_id, f"{PREFIX} {source}: {task_id} failed (run {run_id})", body
    )


# --- delivery outside Airflow (the CLI) --------------------------------------------------------


def _flag(value) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def _addresses(value) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [a.strip() for a in str(value or "").replace(";", ",").split(",") if a.strip()]


def recipients(conn_id: str = SMTP_CONN) -> list[str]:
    to = _addresses(connections.get_conn(conn_id).extra.get("alert_to"))
    if not to:
        raise AlertConfigError(
            f"connection {conn_id}: no recipients (set alert_to in its extra, comma-separated)"
        )
    return to


def send_email(alert: Alert, conn_id: str = SMTP_CONN) -> list[str]:
    """Send the alert as plain text with smtplib; the connection's extra as the provider reads
    it (``disable_ssl``, ``disable_tls``, ``from_email``, ``timeout``). Returns recipients."""
    conn = connections.get_conn(conn_id)
    extra = conn.extra or {}
    to = recipients(conn_id)
    if not conn.host:
        raise AlertConfigError(f"connection {conn_id}: no host")
    use_ssl = not _flag(extra.get("disable_ssl", False))
    starttls = not _flag(extra.get("disable_tls", False))
    msg = EmailMessage()
    msg["Subject"] = alert.subject
    msg["From"] = extra.get("from_email") or "patron-privacy@localhost"
    msg["To"] = ", ".join(to)
    msg.set_content(alert.body)
    timeout = float(extra.get("timeout", 30))
    port = conn.port or (465 if use_ssl else 25)
    if use_ssl:
        client = smtplib.SMTP_SSL(conn.host, port, timeout=timeout)
    else:
        client = smtplib.SMTP(conn.host, port, timeout=timeout)
    with client as smtp:
        if not use_ssl and starttls:
            smtp.starttls(context=ssl.create_default_context())
        if conn.login:
            smtp.login(conn.login, conn.password or "")
        smtp.send_message(msg, to_addrs=to)
    return to


def webhook_url(conn: connections.Conn) -> str:
    url = conn.extra.get("url")
    if url:
        return str(url)
    if conn.host and conn.host.startswith(("http://", "https://")):
        return conn.host
    if not conn.host:
        raise AlertConfigError(f"connection {conn.conn_id}: no url in extra and no host")
    scheme = "https" if conn.conn_type == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}/{conn.schema or ''}"


def post_webhook(alert: Alert, conn_id: str = WEBHOOK_CONN) -> bool:
    """POST the alert as JSON when the webhook connection exists; False when it does not."""
    try:
        conn = connections.get_conn(conn_id)
    except connections.ConnectionConfigError:
        return False
    fmt = str(conn.extra.get("format", "apprise")).lower()
    if fmt == "slack":
        payload = {"text": f"*{alert.subject}*\n```\n{alert.body}\n```"}
    else:
        kind = "failure" if alert.kind in ("validation", "set_aside", "task") else "warning"
        payload = {"title": alert.subject, "body": alert.body, "type": kind}
    request = urllib.request.Request(
        webhook_url(conn),
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=float(conn.extra.get("timeout", 10))) as resp:
        if not 200 <= resp.status < 300:
            raise AlertConfigError(f"connection {conn_id}: webhook answered HTTP {resp.status}")
    return True


def send(alert: Alert) -> dict:
    """Email (``smtp_default``) and, when configured, the webhook; both are attempted."""
    outcome: dict = {"email": None, "webhook": False, "errors": []}
    try:
        outcome["email"] = len(send_email(alert))
    except Exception as exc:  # noqa: BLE001 - reported by type and first line; the webhook still goes
        outcome["errors"].append(f"email: {type(exc).__name__}: {_first_line(exc)}")
    try:
        outcome["webhook"] = post_webhook(alert)
    except Exception as exc:  # noqa: BLE001
        outcome["errors"].append(f"webhook: {type(exc).__name__}: {_first_line(exc)}")
    return outcome


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


# --- delivery inside Airflow -------------------------------------------------------------------


def alert_from_context(source: str, context) -> Alert:
    """The alert for a failed task, from what it pushed before failing (counts only)."""
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", "?")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = str(context.get("run_id") or getattr(ti, "run_id", "?"))
    report = ti.xcom_pull(task_ids=task_id, key="validation") if ti is not None else None
    if report:
        return validation_alert(
            {**report, "run_id": report.get("run_id") or run_id}, dag_id=dag_id, task_id=task_id
        )
    verification = ti.xcom_pull(task_ids=task_id, key="verification") if ti is not None else None
    if verification:
        # Records still identifying come first; input set aside is named in either alert.
        # A dry run changed nothing, so records past their window are no finding (as the
        # command line's dry run says): only what it set aside is reported.
        params = context.get("params") or {}
        as_of = params.get("as_of") or context.get("data_interval_end")
        builds = [set_aside_alert]
        if not params.get("dry_run"):
            builds.insert(0, compliance_alert)
        for build in builds:
            found = build(
                source, verification, run_id=run_id, as_of=as_of, dag_id=dag_id, task_id=task_id
            )
            if found is not None:
                return found
    return task_failure_alert(source, run_id=run_id, dag_id=dag_id, task_id=task_id)


def failure_notifier(source: str, *, smtp_conn_id: str = SMTP_CONN):
    """An ``SmtpNotifier`` for ``on_failure_callback=[...]`` of the validation and
    verification tasks. Built at parse time (no connection is read then); at failure it
    builds the alert from the task's XCom, emails it through ``smtp_conn_id`` and posts
    it to ``alerts_webhook`` when that connection exists."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier  # noqa: PLC0415

    class PrivacyAlertNotifier(SmtpNotifier):
        def notify(self, context):
            alert = alert_from_context(source, context)
            self.to = recipients(smtp_conn_id)
            self.subject = alert.subject
            self.html_content = alert.html
            errors = []
            try:
                post_webhook(alert)
            except Exception as exc:  # noqa: BLE001 - the email still goes; reported below
                errors.append(f"webhook: {type(exc).__name__}")
            super().notify(context)
            if errors:
                raise AlertConfigError("; ".join(errors))

    return PrivacyAlertNotifier(to="", smtp_conn_id=smtp_conn_id)
