"""Sync durability through the HTTP API, on a real PostgreSQL whose commits a test can hold (a table lock):
a reply, or a stream's last event, waits for its record; a lost connection gives a 503 and is reconnected; a
full backlog refuses at once; text PostgreSQL cannot hold does not block the store."""

from __future__ import annotations

import json
import threading
import time

import httpx
import psycopg
import pytest
from conftest import user


@pytest.fixture
def pg_proxy(make_proxy, postgres_dsn):
    def make(**audit):
        proxy = make_proxy(env={"AUDIT_DSN": postgres_dsn},
                           audit={"store": "postgres", "dsn_env": "AUDIT_DSN", "durability": "sync", **audit})
        proxy.client.chat.completions.create(model="test-model", messages=user("warm up"))  # tables exist now
        return proxy

    return make


def records(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute("SELECT request_id, status FROM records ORDER BY ts").fetchall()


class HeldCommits:
    """Holds every INSERT into records until released: a lock no writer can pass."""

    def __init__(self, dsn: str) -> None:
        self.connection = psycopg.connect(dsn)
        self.connection.execute("LOCK TABLE records IN EXCLUSIVE MODE")

    def release(self) -> None:
        self.connection.commit()
        self.connection.close()


def in_thread(target) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(target()))
    thread.start()
    return thread, out


def test_a_reply_waits_for_its_commit(pg_proxy, postgres_dsn):
    proxy = pg_proxy()
    held = HeldCommits(postgres_dsn)
    thread, out = in_thread(lambda: proxy.client.chat.completions.create(model="test-model", messages=user("hi")))
    time.sleep(0.6)
    assert not out, "the reply came before its record was committed"
    held.release()
    thread.join(10)
    assert out and len(records(postgres_dsn)) == 2


def test_a_streams_last_event_waits_for_its_commit(pg_proxy, postgres_dsn):
    proxy = pg_proxy()
    held = HeldCommits(postgres_dsn)
    events: list[str] = []

    def read() -> None:
        with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", timeout=20, json={
                "model": "test-model", "messages": user("tell me a story"), "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])

    thread = threading.Thread(target=read)
    thread.start()
    time.sleep(0.8)
    assert events and "[DONE]" not in events  # the text came; the end waits for the record
    held.release()
    thread.join(10)
    assert events[-1] == "[DONE]" and len(records(postgres_dsn)) == 2


def test_a_lost_connection_is_a_503_then_the_store_reconnects(pg_proxy, postgres_dsn):
    proxy = pg_proxy()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid()")
    first = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("a")},
                       timeout=20)
    # The writer finds the connection gone; its probe reconnects at once, so the reply may be a 200.
    assert first.status_code in (200, 503)
    if first.status_code == 503:
        assert first.json()["error"]["code"] == "audit_unavailable"
    proxy.client.chat.completions.create(model="test-model", messages=user("b"))  # the store works again
    stored = dict(records(postgres_dsn))
    assert stored[first.headers["x-guardrail-request-id"]] == first.status_code  # the record says what was sent
    assert httpx.get(f"{proxy.url}/readyz").json()["checks"]["audit"] == "ok"


def test_a_full_backlog_refuses_at_once_without_growing(pg_proxy, postgres_dsn):
    proxy = pg_proxy(max_pending=2, when_full="refuse")
    held = HeldCommits(postgres_dsn)
    waiting = [in_thread(lambda: httpx.post(f"{proxy.url}/v1/chat/completions", timeout=20, json={
        "model": "test-model", "messages": user("x")})) for _ in range(2)]
    time.sleep(0.5)
    started = time.monotonic()
    refused = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("y")},
                         timeout=20)
    assert refused.status_code == 503 and time.monotonic() - started < 1.0
    assert refused.json()["error"]["code"] == "audit_unavailable" and refused.headers["retry-after"] == "1"
    held.release()
    for thread, _ in waiting:
        thread.join(10)
    assert [r.status_code for _, out in waiting for r in out] == [200, 200]
    assert len(records(postgres_dsn)) == 3  # the warm-up and the two held; the refusal was counted, not queued
    assert 'guardrail_audit_backpressure_total{result="refused"} 1' in httpx.get(f"{proxy.url}/metrics").text


def test_text_postgresql_cannot_hold_does_not_block_the_store(pg_proxy, postgres_dsn):
    proxy = pg_proxy()
    odd = httpx.post(f"{proxy.url}/v1/chat/completions", content=json.dumps(
        {"model": "test-model\u0000", "messages": user("hi")}), headers={"content-type": "application/json"})
    assert odd.status_code == 404  # no such model; its record is kept all the same
    proxy.client.chat.completions.create(model="test-model", messages=user("next"))
    assert len(records(postgres_dsn)) == 3
