"""The leak scanner on server artifacts: a canary planted in a PostgreSQL cell (plain,
and zlib-compressed in a bytea) or in a Redis list, hash or key is found and named;
clean data yields nothing. The distributed run's leak test relies on these."""

from __future__ import annotations

import uuid
import zlib

import pytest
import redis
from celery_cluster import REDIS
from leak_scan import scan_database, scan_redis
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.integration

NEEDLE = "Zqxscannercanary"


def test_scan_database_finds_text_and_compressed_cells(postgres_url):
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as c:
            c.execute(text("CREATE TABLE notes (id int, body text)"))
            c.execute(
                text("INSERT INTO notes VALUES (1, 'nothing here'), (2, :t)"),
                {"t": f"left by {NEEDLE.lower()} at noon"},
            )
            c.execute(text("CREATE TABLE payloads (id int, blob bytea)"))
            c.execute(
                text("INSERT INTO payloads VALUES (1, :b)"),
                {"b": zlib.compress(f'{{"name": "{NEEDLE}"}}'.encode())},
            )
    finally:
        engine.dispose()

    found = {f.where for f in scan_database(postgres_url, [NEEDLE], "pg")}
    assert found == {"pg:notes.body", "pg:payloads.blob"}
    assert scan_database(postgres_url, ["Zqxabsent"], "pg") == []


def test_scan_redis_finds_values_in_every_kind_of_key():
    client = redis.Redis.from_url(REDIS)
    prefix = f"pp-scan-{uuid.uuid4().hex[:8]}"
    keys = [f"{prefix}:list", f"{prefix}:hash", f"{prefix}:{NEEDLE}", f"{prefix}:clean"]
    try:
        client.rpush(keys[0], b"first", f"task for {NEEDLE}".encode())
        client.hset(keys[1], "field", f"{NEEDLE}@example.org")
        client.set(keys[2], b"the key itself names it")
        client.set(keys[3], b"nothing personal")
        findings, scanned = scan_redis(REDIS, [NEEDLE])
    finally:
        client.delete(*keys)
        client.close()
    assert scanned >= 4
    assert {f.where.rsplit(" ", 1)[-1] for f in findings} >= set(keys[:3])
    assert not any(f.where.endswith(keys[3]) for f in findings)
