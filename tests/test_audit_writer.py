"""The audit writer: grouped commits off the event loop, sync waits, back-pressure, and failed commits."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from guardrail_proxy.audit_store import JsonlStore
from guardrail_proxy.audit_writer import SHADOW_GROUP, AuditWriter
from guardrail_proxy.config import AuditConfig
from guardrail_proxy.errors import AuditUnavailable
from guardrail_proxy.metrics import Metrics


class Store(JsonlStore):
    """The real JSONL store, which can be told to fail (`fail` times, or for a record whose request id is
    `refuse`) or to hold its commits, and remembers its batches."""

    def __init__(self, path: str, fail: int = 0, refuse: str | None = None) -> None:
        super().__init__(path)
        self.fail, self.refuse, self.batches, self.gate = fail, refuse, [], threading.Event()
        self.gate.set()
        self.thread_names: set[str] = set()

    def write(self, records):
        self.thread_names.add(threading.current_thread().name)
        self.gate.wait(5)
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        if any(r["request_id"] == self.refuse and r.get("phases") for r in records):
            raise ValueError("this record cannot be stored")
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


async def test_a_store_outage_fails_sync_waiters_and_keeps_their_records(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"), fail=3)  # the group, the record alone, its reduced form
    metrics = Metrics()
    writer = AuditWriter(store, config(durability="sync"), metrics)
    await writer.start()
    with pytest.raises(AuditUnavailable, match="disk full"):
        await writer.submit({**rec(1), "status": 200})
    assert "commits failing" in (writer.problem() or "")
    await asyncio.sleep(0.7)  # the retry after the pause commits it
    assert writer.problem() is None
    await writer.close()
    [line] = (tmp_path / "a.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["request_id"] == "r1" and record["status"] == 503  # the client got a 503: the record says so
    assert "guardrail_audit_commit_failures_total 1" in metrics.render()


async def test_a_blip_is_retried_without_a_503(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"), fail=1)
    writer = AuditWriter(store, config(durability="sync"), Metrics())
    await writer.start()
    await writer.submit(rec(1))
    await writer.close()
    assert json.loads((tmp_path / "a.jsonl").read_text())["request_id"] == "r1"


async def test_one_record_the_store_refuses_is_stored_reduced_and_blocks_nothing(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"), refuse="r37")
    metrics = Metrics()
    writer = AuditWriter(store, config(batch_ms=20), metrics)
    await writer.start()
    bad = {**rec(37), "phases": [{"phase": "input", "checks": [{"result": "pass"}]}], "status": 200}
    futures = [writer.submit(bad if n == 37 else rec(n)) for n in range(100)]
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    await writer.close()
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert sorted(int(r["request_id"][1:]) for r in records) == list(range(100))
    [kept] = [r for r in records if r["request_id"] == "r37"]
    assert kept["status"] == 200 and kept["phases"] == [] and "could not be stored" in kept["error"]
    assert "guardrail_audit_reduced_total 1" in metrics.render()


async def test_text_no_store_can_hold_is_cleaned_first(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"))
    writer = AuditWriter(store, config(durability="sync"), Metrics())
    await writer.start()
    await writer.submit({**rec(1), "model": "a\x00b", "error": "lone \ud800 surrogate"})
    await writer.close()
    record = json.loads((tmp_path / "a.jsonl").read_text())
    assert record["model"] == "a\ufffdb" and record["error"] == "lone \ufffd surrogate"


async def test_a_stop_cuts_a_long_batch_window_short_and_later_records_are_counted_as_lost(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"))
    metrics = Metrics()
    writer = AuditWriter(store, config(batch_ms=15_000), metrics)
    await writer.start()
    for n in range(5):
        writer.submit(rec(n))
    await asyncio.sleep(0.1)  # the writer is inside its 15 s window
    await asyncio.wait_for(writer.close(), 2)
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 5
    late = writer.submit(rec(99))
    with pytest.raises(AuditUnavailable, match="shutting down"):
        await late
    assert "guardrail_audit_lost_total 1" in metrics.render()


def shadow(n: int, **detail) -> dict:
    return {"kind": "shadow_check", "request_id": f"r{n}", "ts": float(n), "route": "main", "policy": "violence",
            "detail": {"reasoning": "long text", **detail}}


async def test_shadow_rows_never_hold_requests_and_past_max_pending_are_dropped_and_counted(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"))
    metrics = Metrics()
    writer = AuditWriter(store, config(durability="sync", max_pending=2, when_full="refuse"), metrics)
    await writer.start()
    store.gate.clear()  # the store hangs: nothing commits
    assert writer.submit_shadow(shadow(1)) and writer.submit_shadow(shadow(2))
    await asyncio.sleep(0.05)
    await writer.room()  # two rows waiting, but no request record: a request is not held
    assert writer.problem() is None
    assert writer.submit_shadow(shadow(3)) is False
    store.gate.set()
    await writer.close()
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [(line["kind"], line["request_id"]) for line in lines] == [("shadow_check", "r1"), ("shadow_check", "r2")]
    text = metrics.render()
    assert 'guardrail_shadow_dropped_total{policy="violence",reason="audit_backlog",route="main"} 1' in text
    assert "guardrail_audit_records_total 0" in text  # shadow rows are not request records


async def test_a_record_is_committed_before_shadow_rows_queued_ahead_of_it(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"))
    writer = AuditWriter(store, config(durability="sync"), Metrics())
    await writer.start()
    store.gate.clear()  # the store hangs on the first commit
    first = writer.submit(rec(0))
    while not writer.writing:
        await asyncio.sleep(0.01)
    for n in range(1, 601):  # rows queued while that commit hangs, ahead of the next record
        assert writer.submit_shadow(shadow(n))
    second = writer.submit(rec(601))
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    await writer.close()
    kinds = [json.loads(line).get("kind", "record") for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert kinds[:2] == ["record", "record"] and kinds[2:] == ["shadow_check"] * 600
    assert store.batches[:2] == [1, 1]  # the second record's commit held no shadow row
    assert max(store.batches[2:]) <= SHADOW_GROUP


async def test_shadow_rows_the_store_refuses_are_dropped_and_counted_never_retried(tmp_path):
    store = Store(str(tmp_path / "a.jsonl"), fail=3)  # the group, then each row alone: the store is down
    metrics = Metrics()
    writer = AuditWriter(store, config(durability="sync"), metrics)
    await writer.start()
    writer.submit_shadow(shadow(1))
    writer.submit_shadow(shadow(2))
    while store.fail:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(writer.submit(rec(3)), 5)  # a record behind them is not held up
    await writer.close()
    [line] = (tmp_path / "a.jsonl").read_text().splitlines()
    assert json.loads(line)["request_id"] == "r3"
    text = metrics.render()
    assert 'guardrail_shadow_dropped_total{policy="violence",reason="store_refused",route="main"} 2' in text
    assert "guardrail_audit_commit_failures_total 0" in text  # not a failed commit of records


class RefusesShadowTexts(Store):
    def write(self, records):
        if any(r.get("kind") and "bad" in r["detail"] for r in records):
            raise ValueError("this row cannot be stored")
        super().write(records)


async def test_one_shadow_row_the_store_refuses_is_dropped_and_the_rest_are_stored(tmp_path):
    store = RefusesShadowTexts(str(tmp_path / "a.jsonl"))
    metrics = Metrics()
    writer = AuditWriter(store, config(batch_ms=20), metrics)
    await writer.start()
    for n in range(8):
        writer.submit_shadow(shadow(n, **({"bad": True} if n == 5 else {})))
    await asyncio.wait_for(writer.submit(rec(99)), 5)
    await writer.close()
    stored = {json.loads(line)["request_id"] for line in (tmp_path / "a.jsonl").read_text().splitlines()}
    assert stored == {f"r{n}" for n in range(8) if n != 5} | {"r99"}
    assert 'guardrail_shadow_dropped_total{policy="violence",reason="store_refused",route="main"} 1' in \
        metrics.render()


async def test_a_shadow_row_after_the_writer_stopped_is_dropped_as_such(tmp_path):
    metrics = Metrics()
    writer = AuditWriter(Store(str(tmp_path / "a.jsonl")), config(), metrics)
    await writer.start()
    await writer.close()
    assert writer.submit_shadow(shadow(1)) is False
    assert 'guardrail_shadow_dropped_total{policy="violence",reason="writer_stopped",route="main"} 1' in \
        metrics.render()
