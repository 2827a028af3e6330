"""The audit writer: grouped commits off the event loop, sync waits, back-pressure, and failed commits."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from guardrail_proxy.audit_store import JsonlStore
from guardrail_proxy.audit_writer import AuditWriter
from guardrail_proxy.config import AuditConfig
from guardrail_proxy.errors import AuditUnavailable
from guardrail_proxy.metrics import Metrics


class Store(JsonlStore):
    """The real JSONL store, which can be told to fail or to hold its commits, and remembers its batches."""

    def __init__(self, path: str, fail: int = 0) -> None:
        super().__init__(path)
        self.fail, self.batches, self.gate = fail, [], threading.Event()
        self.gate.set()
        self.thread_names: set[str] = set()

    def write(self, records):
        self.thread_names.add(threading.current_thread().name)
        self.gate.wait(5)
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.batches.append(len(records))
        super().write(records)


def rec(n: int) -> dict:
    return {"request_id": f"r{n}", "ts": float(n)}


def config(**fields) -> AuditConfig:
    return AuditConfig.model_validate({"store": "jsonl", "path": "x", **fields})


async def test_batch_mode_groups_records_into_few_commits_on_its_own_thread(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"))
    writer = AuditWriter(store, config(batch_ms=50), Metrics())
    await writer.start()
    futures = [writer.submit(rec(n)) for n in range(100)]
    await asyncio.gather(*futures)
    await writer.close()
    assert sum(store.batches) == 100 and len(store.batches) <= 2
    assert store.thread_names == {n for n in store.thread_names if n.startswith("audit-writer")}
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"r{n}" for n in range(100)]  # in order


async def test_close_commits_what_is_waiting(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"))
    writer = AuditWriter(store, config(batch_ms=10_000), Metrics())
    await writer.start()
    for n in range(5):
        writer.submit(rec(n))
    await writer.close()  # does not wait out the 10 s batch window
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize("when_full", ["wait", "refuse"])
async def test_a_full_backlog_holds_or_refuses_new_requests_and_counts_it(tmp_path, when_full):
    store = Store(str(tmp_path / "a.jsonl"))
    metrics = Metrics()
    writer = AuditWriter(store, config(durability="sync", max_pending=3, when_full=when_full), metrics)
    await writer.start()
    store.gate.clear()  # the store hangs: nothing commits
    for n in range(3):
        writer.submit(rec(n))
    await asyncio.sleep(0.05)
    if when_full == "refuse":
        with pytest.raises(AuditUnavailable, match="backlog is full"):
            await writer.room()
    else:
        waiting = asyncio.create_task(writer.room())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        store.gate.set()
        await asyncio.wait_for(waiting, 2)
    store.gate.set()
    await writer.close()
    assert f'guardrail_audit_backpressure_total{{result="{"refused" if when_full == "refuse" else "waited"}"}} 1' \
        in metrics.render()
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 3  # nothing dropped


async def test_a_failed_commit_fails_its_sync_waiters_and_is_retried(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"), fail=1)
    metrics = Metrics()
    writer = AuditWriter(store, config(durability="sync"), metrics)
    await writer.start()
    with pytest.raises(AuditUnavailable, match="disk full"):
        await writer.submit(rec(1))
    assert "commits failing" in (writer.problem() or "")
    await writer.close()
    assert writer.problem() is None
    assert [json.loads(line)["request_id"] for line in (tmp_path / "a.jsonl").read_text().splitlines()] == ["r1"]
    assert "guardrail_audit_commit_failures_total 1" in metrics.render()
