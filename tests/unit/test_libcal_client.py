"""The LibCal client against a local LibCal-shaped server (http.server on 127.0.0.1):
OAuth2, paging, 429 with Retry-After, 5xx and timeouts with backoff, and answers that are
HTML, garbage or the wrong shape — each a clear error naming the request, never quoting
the answer."""

from __future__ import annotations

import email.utils
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from patron_privacy.sources.libcal.client import LibCalClient, LibCalError, Options, parse_time
from patron_privacy.sources.libcal.fixture import Fixture, LibCalFixtureServer

CANARY = "Zqxlibcalclientcanary"
SECRET = "s3cret-zqx-never-printed"


def _event(i: int, day: int, reg: bool = True) -> dict:
    return {
        "id": 100 + i,
        "title": f"Program {i}",
        "start": f"2026-11-{day:02d}T10:00:00-05:00",
        "end": f"2026-11-{day:02d}T11:00:00-05:00",
        "calendar": {"id": 1, "name": "Events"},
        "registration": reg,
    }


def fixture() -> Fixture:
    return Fixture(
        client_id="cid",
        client_secret=SECRET,
        events=[_event(i, d) for i, d in enumerate((2, 3, 5, 8, 9), 1)],
        registrations={
            "101": [
                {
                    "booking_id": 1,
                    "first_name": CANARY,
                    "last_name": "Doe",
                    "email": f"{CANARY.lower()}@example.org",
                    "barcode": "29971234567890",
                    "phone": "(860) 555-0101",
                    "registered_date": "2026-10-30T09:00:00-04:00",
                    "attendance": "Attended",
                }
            ],
            "102": [],
        },
    )


@pytest.fixture
def server():
    with LibCalFixtureServer(fixture()) as s:
        yield s


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(round(seconds, 3))


def client(server, **opts) -> tuple[LibCalClient, Sleeps]:
    sleeps = Sleeps()
    o = Options(page_size=2, timeout_s=0.3, backoff_s=0.5, max_retries=3)
    for k, v in opts.items():
        setattr(o, k, v)
    return LibCalClient(server.url, "cid", SECRET, o, sleep=sleeps), sleeps


def _ids(c: LibCalClient) -> list[int]:
    return [e["id"] for e in c.events(1, date(2026, 11, 1), 30)]


def test_token_then_events_page_by_page(server):
    c, sleeps = client(server)
    assert _ids(c) == [101, 102, 103, 104, 105]
    assert server.requests[0] == "POST /1.1/oauth/token"
    pages = [r for r in server.requests if r.startswith("GET /1.1/events?")]
    assert len(pages) == 3 and all("limit=2" in p for p in pages)
    assert [p.rsplit("page=", 1)[1] for p in pages] == ["1", "2", "3"]
    assert sleeps == [] and c.retries == 0


def test_429_waits_the_retry_after_seconds(server):
    server.fail("/1.1/events?", status=429, headers={"Retry-After": "3"})
    c, sleeps = client(server)
    assert _ids(c) == [101, 102, 103, 104, 105]
    assert sleeps == [3.0]


def test_429_with_an_http_date(server):
    now = 1_800_000_000.0
    when = email.utils.formatdate(now + 7, usegmt=True)
    server.fail("/1.1/events?", status=429, headers={"Retry-After": when})
    c, sleeps = client(server)
    c.clock = lambda: now
    c._token_expires = 0  # the fixed clock: fetch a token valid from "now"
    assert _ids(c)
    assert sleeps == [7.0]


def test_429_asking_for_too_long_fails_at_once(server):
    server.fail("/1.1/events?", status=429, headers={"Retry-After": "86400"})
    c, sleeps = client(server)
    with pytest.raises(LibCalError) as err:
        _ids(c)
    assert "GET /1.1/events?cal_id=1" in str(err.value) and "HTTP 429" in str(err.value)
    assert sleeps == []


def test_500_then_success_backs_off_exponentially(server):
    server.fail("/1.1/events?", status=500, times=2)
    c, sleeps = client(server)
    assert _ids(c) == [101, 102, 103, 104, 105]
    assert sleeps == [0.5, 1.0]


def test_a_server_error_that_persists_gives_up_naming_the_request(server):
    server.fail("page=2", status=503, times=99)
    c, sleeps = client(server)
    with pytest.raises(LibCalError) as err:
        _ids(c)
    msg = str(err.value)
    assert msg.startswith("LibCal GET /1.1/events?cal_id=1&date=2026-11-01&days=30&limit=2&page=2")
    assert "HTTP 503; gave up after 4 attempts" in msg
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_timeout_is_retried(server):
    server.fail("/1.1/events?", delay_s=1.0)
    c, sleeps = client(server)
    assert _ids(c) == [101, 102, 103, 104, 105]
    assert sleeps == [0.5]


def test_timeouts_that_persist_give_up(server):
    server.fail("/1.1/events?", delay_s=0.6, times=99)
    c, _ = client(server, max_retries=1)
    with pytest.raises(LibCalError, match=r"timed out after 0.3 s; gave up after 2 attempts"):
        _ids(c)


def test_html_instead_of_json_is_an_error_without_the_page(server):
    page = f"<html><body>Scheduled maintenance {CANARY}</body></html>".encode()
    server.fail("/1.1/events?", body=page, content_type="text/html")
    c, sleeps = client(server)
    with pytest.raises(LibCalError) as err:
        _ids(c)
    assert "answered with HTML, not JSON" in str(err.value)
    assert CANARY not in str(err.value) and sleeps == []


def test_html_with_a_json_content_type_is_still_html(server):
    server.fail("/1.1/events?", body=b"  <!DOCTYPE html><p>login</p>")
    c, _ = client(server)
    with pytest.raises(LibCalError, match="HTML"):
        _ids(c)


def test_garbage_json_is_an_error_without_the_body(server):
    server.fail(
        "/registrations",
        body=f'[{{"event_id": 101, "registrants": [{{"first_name": "{CANARY}'.encode(),
    )
    c, _ = client(server)
    with pytest.raises(LibCalError) as err:
        c.registrations([101, 102])
    msg = str(err.value)
    assert "GET /1.1/events/101,102/registrations" in msg and "not valid JSON" in msg
    assert CANARY not in msg


def test_json_of_the_wrong_shape_is_an_error(server):
    server.fail("/1.1/events?", body=b'{"items": []}')
    c, _ = client(server)
    with pytest.raises(LibCalError, match=r'answer is not \{"events": \[\.\.\.\]\}'):
        _ids(c)
    server.fail("/registrations", body=b'[{"event_id": 101, "registrants": "none"}]')
    with pytest.raises(LibCalError, match=r"\[0\]\.registrants is not a list"):
        c.registrations([101])


def test_registrations_in_one_request_keyed_by_event(server):
    c, _ = client(server)
    regs = c.registrations([101, 102, 103])
    assert set(regs) == {"101", "102", "103"}
    assert len(regs["101"]) == 1 and regs["102"] == [] and regs["103"] == []
    assert server.requests[-1] == "GET /1.1/events/101,102,103/registrations"


def test_an_expired_token_is_renewed_once(server):
    c, _ = client(server)
    assert _ids(c)
    server.revoke_tokens()
    assert c.registrations([101])["101"]
    assert server.requests.count("POST /1.1/oauth/token") == 2


def test_credentials_refused_name_the_token_request_never_the_secret(server):
    c = LibCalClient(server.url, "cid", "wrong-" + SECRET, Options(max_retries=0))
    with pytest.raises(LibCalError) as err:
        c.authenticate()
    assert str(err.value) == "LibCal POST /1.1/oauth/token: HTTP 401"
    assert SECRET not in str(err.value) and SECRET not in repr(c)


def test_a_server_that_ignores_paging_is_refused_not_truncated(server):
    server.ignore_paging = True
    c, _ = client(server)
    with pytest.raises(LibCalError, match="does not page"):
        _ids(c)


def test_nothing_listens_is_a_connection_error(server):
    url = server.url
    server.stop()
    c = LibCalClient(url, "cid", SECRET, Options(max_retries=1, backoff_s=0.01), sleep=Sleeps())
    with pytest.raises(LibCalError, match=r"POST /1.1/oauth/token: connection failed"):
        c.authenticate()


def test_times_are_read_as_library_time():
    ny = ZoneInfo("America/New_York")
    assert parse_time("2026-07-04T15:00:00Z", ny) == datetime(2026, 7, 4, 11, 0)
    assert parse_time("2026-11-14T10:00:00-05:00", ny) == datetime(2026, 11, 14, 10, 0)
    assert parse_time("2026-11-14 10:00:00", ny) == datetime(2026, 11, 14, 10, 0)
    for bad in (None, "", "soon", "0000-00-00 00:00:00", 17, "1899-12-31T10:00:00"):
        assert parse_time(bad, ny) is None
