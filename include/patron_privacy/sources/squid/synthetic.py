"""Synthetic Squid access logs for the demo library's public PCs, deterministic per seed.

Rotated daily at 06:00 like logrotate: ``access.log`` (since yesterday 06:00,
up to 02:30 on the as-of day), ``access.log.1`` (the day before), then
``access.log.2.gz`` … ``access.log.<days>.gz``. The client addresses are the
shipped policy's ``sources.squid.clients`` (and its Wi-Fi network); the West
branch's proxy authenticates, so its lines carry a user name.
"""

from __future__ import annotations

import gzip
import os
import random
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

PCS = {
    "MAIN": [f"10.20.1.{i}" for i in range(11, 17)],
    "NORTH": ["10.20.2.11", "10.20.2.12"],
    "EAST": ["10.20.3.11", "10.20.3.12"],
    "WEST": ["10.20.4.11", "10.20.4.12"],
}
WIFI = [f"10.20.9.{i}" for i in range(20, 60)]
TERMS = ("bus schedule", "tax forms 1040", "job openings near me", "ged practice test",
         "apartment listings", "recipe lasagna", "unemployment benefits", "snap application",
         "resume template", "court records", "immigration lawyer", "diabetes symptoms")  # fmt: skip
SITES = ("www.example-news.com", "cdn.example-static.net", "mail.example-mail.com",
         "www.example-gov.gov", "www.example-video.com", "www.example-shop.com")  # fmt: skip
USERS = ("avery.lindqvist", "jordan.fairbanks", "morgan.hollister", "riley.kettering")


def _line(rng: random.Random, ts: float, client: str, ident: str) -> str:
    r = rng.random()
    if r < 0.15:
        term = rng.choice(TERMS).replace(" ", "+")
        url, method = f"http://www.example-search.com/search?q={term}&hl=en", "GET"
    elif r < 0.55:
        url, method = f"{rng.choice(SITES)}:443", "CONNECT"
    else:
        path = f"/{rng.choice(('news', 'static', 'img', 'video'))}/{rng.randrange(1, 999)}"
        query = f"?id={rng.randrange(1, 99999)}" if rng.random() < 0.3 else ""
        url, method = f"http://{rng.choice(SITES)}{path}{query}", "GET"
    code = rng.choice(("TCP_MISS/200", "TCP_MISS/200", "TCP_TUNNEL/200", "TCP_HIT/200",
                       "TCP_DENIED/403", "TCP_MISS/304"))  # fmt: skip
    ctype = "-" if method == "CONNECT" else rng.choice(("text/html", "image/png", "text/css"))
    return (
        f"{ts:.3f} {rng.randrange(1, 20000):6d} {client} {code} {rng.randrange(200, 90000)} "
        f"{method} {url} {ident} HIER_DIRECT/93.184.216.{rng.randrange(1, 250)} {ctype}\n"
    )


def _day_lines(rng: random.Random, day: date, zone: ZoneInfo) -> list[tuple[float, str]]:
    out = []
    opening = datetime.combine(day, time(9, 0), zone).timestamp()
    for branch, clients in PCS.items():
        for client in clients:
            t = opening + rng.randrange(0, 3600)
            for _ in range(rng.randrange(1, 5)):  # sessions
                ident = rng.choice(USERS) if branch == "WEST" else "-"
                for _ in range(rng.randrange(5, 40)):  # requests
                    out.append((t, _line(rng, t, client, ident)))
                    t += rng.random() * 90
                t += 1800 + rng.randrange(0, 7200)  # a pause: the next session
    for _ in range(rng.randrange(50, 150)):  # Wi-Fi laptops
        t = opening + rng.randrange(0, 10 * 3600)
        out.append((t, _line(rng, t, rng.choice(WIFI), "-")))
    return out


def build_squid_logs(folder: Path, *, seed: int, as_of: date, zone: str, days: int = 34) -> int:
    """Write the logs; returns the number of lines. Files get the mtime of their last line."""
    rng = random.Random(f"squid-{seed}")
    tz = ZoneInfo(zone)
    folder.mkdir(parents=True, exist_ok=True)
    lines = sorted(
        (ts, text)
        for d in range(days + 2, -1, -1)
        for ts, text in _day_lines(rng, as_of - timedelta(days=d), tz)
    )
    cut_at = datetime.combine(as_of, time(2, 30), tz).timestamp()
    lines = [x for x in lines if x[0] < cut_at]
    # File k holds [as_of-k-1 06:00, as_of-k 06:00); the live file, since yesterday 06:00.
    bounds = [datetime.combine(as_of - timedelta(days=k), time(6, 0), tz).timestamp()
              for k in range(days + 2)]  # fmt: skip
    total = 0
    for k in range(days + 1):
        hi = cut_at if k == 0 else bounds[k - 1]
        lo = bounds[k]
        chunk = [text for ts, text in lines if lo <= ts < hi]
        if not chunk:
            continue
        data = "".join(chunk).encode()
        name = "access.log" if k == 0 else f"access.log.{k}"
        if k >= 2:
            path = folder / f"{name}.gz"
            path.write_bytes(gzip.compress(data, mtime=int(hi)))
        else:
            path = folder / name
            path.write_bytes(data)
        os.utime(path, (hi, hi))
        total += len(chunk)
    return total
