"""A small LibCal API 1.1 client on the standard library (``urllib``).

What it does, as Springshare documents the API: OAuth2 client credentials
(``POST /1.1/oauth/token``), events of a calendar (``GET /1.1/events?cal_id=…`` with
``date``, ``days``, ``limit`` and ``page``) and registrations of up to
``registrations_batch`` events at a time (``GET /1.1/events/{id,id,…}/registrations``).

How it behaves when the vendor does not:

* every request has a timeout; timeouts, connection errors and 500/502/503/504 are
  retried with exponential backoff (``backoff_s`` doubling, capped at ``max_backoff_s``),
  at most ``max_retries`` times;
* 429 is retried after the ``Retry-After`` the server gives (seconds or an HTTP date),
  never sooner; one longer than ``max_retry_after_s`` fails at once rather than stall;
* 401 on an API call fetches a new token once (tokens expire) and retries;
* other 4xx fail at once;
* a body that is not JSON (an HTML error or login page, garbage, a truncated read),
  JSON of the wrong shape, or a body over ``max_body_bytes`` fails.

Every failure is a :class:`LibCalError` whose message names the request (method and
path with its query — event and calendar ids only, never a token or a secret) and what
was wrong, and never quotes the response body: a registrations body holds names,
emails, phones and card numbers. Nothing the client reads is written anywhere; the
caller holds it in memory while it computes counts.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

log = logging.getLogger("patron_privacy.libcal")

API = "/1.1"
RETRY_STATUSES = (500, 502, 503, 504)


class LibCalError(RuntimeError):
    """A LibCal request failed or answered with what is not its documented shape."""

    def __init__(self, request: str, problem: str, *, status: int | None = None):
        self.request = request
        self.problem = problem
        self.status = status
        super().__init__(f"LibCal {request}: {problem}")


@dataclass
class Options:
    timeout_s: float = 30.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0
    page_size: int = 100  # events per page (LibCal's ``limit``; at most 500)
    window_days: int = 31  # days per events request (LibCal's ``days``; at most 365)
    registrations_batch: int = 20  # event ids per registrations request
    max_pages: int = 1000
    max_body_bytes: int = 50 * 1024 * 1024

    @classmethod
    def from_mapping(cls, raw: dict | None) -> Options:
        out = cls()
        for key, value in (raw or {}).items():
            if key in cls.__dataclass_fields__:
                setattr(out, key, type(getattr(out, key))(value))
        return out


def _retry_after(value: str | None, now: Callable[[], float]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


@dataclass
class LibCalClient:
    """One client per run: a token, counters, and the retry policy."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    options: Options = field(default_factory=Options)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    requests_made: int = 0
    retries: int = 0
    _token: str | None = field(default=None, repr=False)
    _token_expires: float = 0.0

    # --- transport ----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _send(self, method: str, path: str, name: str, *, body=None, headers=None) -> bytes:
        """One HTTP exchange with retries; returns the body of a 2xx answer."""
        attempt = 0
        refreshed = False
        while True:
            hdrs = {"Accept": "application/json", **(headers or {})}
            if path != f"{API}/oauth/token":
                hdrs["Authorization"] = f"Bearer {self._access_token()}"
            req = urllib.request.Request(self._url(path), data=body, headers=hdrs, method=method)
            self.requests_made += 1
            wait: float | None = None
            problem: str
            try:
                with urllib.request.urlopen(req, timeout=self.options.timeout_s) as resp:  # noqa: S310
                    data = resp.read(self.options.max_body_bytes + 1)
                    if len(data) > self.options.max_body_bytes:
                        raise LibCalError(
                            name, f"answer larger than {self.options.max_body_bytes} bytes"
                        )
                    ctype = resp.headers.get("Content-Type", "")
                    self._check_json_type(name, ctype, data)
                    return data
            except urllib.error.HTTPError as exc:
                status = exc.code
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                exc.close()
                if status == 401 and not refreshed and path != f"{API}/oauth/token":
                    refreshed = True
                    self._token = None
                    continue
                if status == 429:
                    wait = _retry_after(retry_after, self.clock)
                    if wait is None:
                        wait = self._backoff(attempt)
                    elif wait > self.options.max_retry_after_s:
                        raise LibCalError(
                            name,
                            f"rate limited (HTTP 429) with Retry-After {wait:.0f} s, longer than "
                            f"the {self.options.max_retry_after_s:.0f} s this run waits",
                            status=429,
                        ) from None
                    problem = "rate limited (HTTP 429)"
                elif status in RETRY_STATUSES:
                    problem = f"HTTP {status}"
                else:
                    raise LibCalError(name, f"HTTP {status}", status=status) from None
            except TimeoutError:
                problem = f"timed out after {self.options.timeout_s:g} s"
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, TimeoutError):
                    problem = f"timed out after {self.options.timeout_s:g} s"
                else:
                    problem = f"connection failed ({type(reason).__name__})"
            except (ConnectionError, http.client.HTTPException) as exc:
                problem = f"connection failed ({type(exc).__name__})"
            if attempt >= self.options.max_retries:
                raise LibCalError(
                    name, f"{problem}; gave up after {attempt + 1} attempts"
                ) from None
            wait = self._backoff(attempt) if wait is None else wait
            log.info("LibCal %s: %s; retrying in %.1f s", name, problem, wait)
            self.retries += 1
            self.sleep(wait)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        return min(self.options.backoff_s * (2**attempt), self.options.max_backoff_s)

    @staticmethod
    def _check_json_type(name: str, ctype: str, data: bytes) -> None:
        head = data.lstrip()[:1]
        if "html" in ctype.lower() or head == b"<":
            raise LibCalError(name, f"answered with HTML, not JSON ({len(data)} bytes)")

    def _json(self, method: str, path: str, name: str, **kw):
        data = self._send(method, path, name, **kw)
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise LibCalError(name, f"answer is not UTF-8 ({len(data)} bytes)") from None
        except json.JSONDecodeError as exc:
            raise LibCalError(
                name, f"answer is not valid JSON ({exc.msg} at char {exc.pos} of {len(data)})"
            ) from None

    # --- OAuth2 ------------------------------------------------------------------------------

    def authenticate(self) -> None:
        """Fetch a token now: credentials that do not work fail the run before it reads."""
        self._access_token()

    def _access_token(self) -> str:
        if self._token is None or self.clock() >= self._token_expires:
            self._token = None
            self._fetch_token()
        return self._token  # type: ignore[return-value]

    def _fetch_token(self) -> None:
        name = f"POST {API}/oauth/token"
        body = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
        ).encode()
        doc = self._json(
            "POST",
            f"{API}/oauth/token",
            name,
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise LibCalError(name, "answer has no access_token")
        expires = doc.get("expires_in", 3600)
        try:
            expires = float(expires)
        except (TypeError, ValueError):
            expires = 3600.0
        self._token = token
        # Renew a minute early: a token that expires mid-request costs a 401 and a retry.
        self._token_expires = self.clock() + max(expires - 60, 30)

    # --- endpoints ---------------------------------------------------------------------------

    def events(self, cal_id: int | str, start: date, days: int) -> Iterator[dict]:
        """Every event of one calendar from ``start`` for ``days`` days, page by page.

        A page shorter than the page size is the last. A page of events all seen before
        means the server ignores paging: the window is refused rather than truncated.
        """
        seen: set = set()
        limit = self.options.page_size
        for page in range(1, self.options.max_pages + 1):
            query = urllib.parse.urlencode(
                {
                    "cal_id": cal_id,
                    "date": start.isoformat(),
                    "days": days,
                    "limit": limit,
                    "page": page,
                }
            )
            path = f"{API}/events?{query}"
            name = f"GET {path}"
            doc = self._json("GET", path, name)
            if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
                raise LibCalError(name, 'answer is not {"events": [...]}')
            batch = doc["events"]
            new = 0
            for i, ev in enumerate(batch):
                if not isinstance(ev, dict) or "id" not in ev:
                    raise LibCalError(name, f"events[{i}] is not an event with an id")
                key = (ev["id"], ev.get("start"))
                if key in seen:
                    continue
                seen.add(key)
                new += 1
                yield ev
            if len(batch) < limit:
                return
            if new == 0:
                raise LibCalError(
                    name,
                    f"page {page} repeats earlier events: the server does not page; "
                    "lower window_days so that a window fits one page",
                )
        raise LibCalError(f"GET {API}/events?cal_id={cal_id}", "more pages than max_pages")

    def registrations(self, event_ids: Sequence[int | str]) -> dict[str, list[dict]]:
        """Registrants of the given events, keyed by event id (as text)."""
        ids = ",".join(str(int(i)) if str(i).isdigit() else str(i) for i in event_ids)
        path = f"{API}/events/{urllib.parse.quote(ids, safe=',')}/registrations"
        name = f"GET {path}"
        doc = self._json("GET", path, name)
        if isinstance(doc, dict):  # one event asked for: some deployments answer an object
            doc = [doc]
        if not isinstance(doc, list):
            raise LibCalError(name, "answer is not a list of {event_id, registrants}")
        out: dict[str, list[dict]] = {}
        for i, item in enumerate(doc):
            if not isinstance(item, dict) or "event_id" not in item:
                raise LibCalError(name, f"[{i}] has no event_id")
            regs = item.get("registrants")
            if regs is None:
                regs = []
            if not isinstance(regs, list) or not all(isinstance(r, dict) for r in regs):
                raise LibCalError(name, f"[{i}].registrants is not a list of registrants")
            out.setdefault(str(item["event_id"]), []).extend(regs)
        return out


def parse_time(value, zone) -> datetime | None:
    """A LibCal time (ISO 8601, with or without offset) as naive local time; None if not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    if " " in text and "T" not in text:
        text = text.replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(zone).replace(tzinfo=None)
    if parsed.year < 1900:
        return None
    return parsed
