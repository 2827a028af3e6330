"""Audit records leave the event loop: a queue in memory, one writer task, one thread for the store.

The writer commits records in groups (at most MAX_GROUP records or MAX_GROUP_BYTES of JSON). Under `batch`
durability it waits up to `batch_ms` after the first record so a group fills; under `sync` it commits whatever
is waiting at once (records that arrive during a commit go in the next one), and the request waits for its own
commit (flow.py). Text a store cannot hold (NUL, lone surrogates) is cleaned before it is queued.

A failed commit is told apart from a bad record by committing the group's first record alone: if that works,
the next groups are halved until the bad record is alone; a record that fails alone is stored in a reduced
form (its outcome and why the rest is missing) rather than blocking everything behind it. If even the reduced
form fails, the store is down: the records stay queued in order and are retried after a pause, a request
waiting under `sync` gets a 503 and its record says so, and /readyz reports it. Nothing is dropped: when
`max_pending` records wait, new requests wait for room or are refused with a 503 (`when_full`), both counted.

Shadow rows (shadow.py) have a queue of their own, and nothing waits for them: no request's reply, whatever
the durability, and no backpressure (`room` counts request records only). They are committed only in the room
the records leave: a group of them (at most SHADOW_GROUP, so a record arriving meanwhile under `sync` waits
little) goes to the store only while no record waits, never ahead of one. When `max_pending` rows already
wait, a new one is dropped; when the store refuses a group, it is narrowed down as for records, and a row the
store refuses alone is dropped, never retried (so while the store is down, each row is tried once alone, and
only while no record waits). When the writer has stopped, a row is dropped too. Every drop is counted in
guardrail_shadow_dropped_total (reason `audit_backlog`, `store_refused`, `writer_stopped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .audit_rows import SHADOW_KIND, reduced, storable
from .audit_store import AuditStore
from .config import AuditConfig
from .errors import AuditUnavailable
from .metrics import Metrics

log = logging.getLogger("guardrail_proxy.audit")
MAX_GROUP = 2000  # records per commit
MAX_GROUP_BYTES = 16 * 1024 * 1024  # JSON per commit, well under any store's statement limit
SHADOW_GROUP = 256  # shadow rows per commit: a record arriving during one waits for at most this many
RETRY_S = 0.5
Entry = tuple[dict[str, Any], int, "asyncio.Future[None]"]  # record, its JSON size, its commit
Row = tuple[dict[str, Any], int]  # a shadow row, its JSON size


class AuditWriter:
    def __init__(self, store: AuditStore, config: AuditConfig, metrics: Metrics,
                 policies: Sequence[tuple[str, str, str]] = ()) -> None:
        self.store, self.config, self.metrics, self.policies = store, config, metrics, policies
        self.pending: deque[Entry] = deque()
        self.writing = 0  # records in the commit under way
        self.arrived = asyncio.Event()
        self.freed = asyncio.Event()
        self.closing = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self.task: asyncio.Task[None] | None = None
        self.failing: str | None = None  # the last commit's error, until a commit succeeds
        self.group_limit = MAX_GROUP  # halved after a failed group, to isolate a record the store refuses
        self.rows: deque[Row] = deque()  # shadow rows (a queue apart: nothing waits for them)
        self.rows_writing = 0
        self.row_limit = SHADOW_GROUP  # as group_limit, for shadow rows

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.store.open)
        await loop.run_in_executor(self.executor, self.store.put_policies, self.policies)
        self.task = asyncio.create_task(self._run(), name="audit-writer")

    async def add_policies(self, policies: Sequence[tuple[str, str, str]]) -> None:
        """A reload's policy texts, stored before any record names their digests."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.store.put_policies, policies)

    @property
    def backlog(self) -> int:
        return len(self.pending) + self.writing

    @property
    def records_waiting(self) -> int:
        """Request records not yet committed: what a new request may have to wait for."""
        return self.backlog

    @property
    def shadows(self) -> int:
        """Shadow rows queued or being committed."""
        return len(self.rows) + self.rows_writing

    @property
    def stopped(self) -> bool:
        return self.task is None or self.task.done()

    async def room(self) -> None:
        """Wait until a new request's record fits (when_full: wait), or refuse it (when_full: refuse)."""
        if self.records_waiting < self.config.max_pending:
            return
        if self.config.when_full == "refuse":
            self.metrics.inc("guardrail_audit_backpressure_total", result="refused")
            raise AuditUnavailable("the audit backlog is full; retry shortly")
        self.metrics.inc("guardrail_audit_backpressure_total", result="waited")
        while self.records_waiting >= self.config.max_pending:
            self.freed.clear()
            await self.freed.wait()

    def submit(self, record: dict[str, Any]) -> asyncio.Future[None]:
        """Queue a record; the future is done when it is committed (or failed under sync durability)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.stopped and self.task is not None:  # after shutdown: said and counted, never silent
            log.error("audit record %s arrived after the writer stopped and is not stored", record.get("request_id"))
            self.metrics.inc("guardrail_audit_lost_total")
            future.set_exception(AuditUnavailable("the proxy is shutting down; the audit record was not kept"))
            future.exception()
            return future
        clean = storable(record)
        self.pending.append((clean, len(json.dumps(clean, ensure_ascii=False)), future))
        self.arrived.set()
        return future

    def submit_shadow(self, row: dict[str, Any]) -> bool:
        """Queue a shadow row (shadow.shadow_row); False when it was dropped (counted): the writer has stopped,
        or `max_pending` shadow rows are waiting already."""
        if self.stopped and self.task is not None:
            self.dropped([row], "writer_stopped")
            return False
        if self.shadows >= self.config.max_pending:
            self.dropped([row], "audit_backlog")
            return False
        clean = storable({**row, "kind": SHADOW_KIND})
        self.rows.append((clean, len(json.dumps(clean, ensure_ascii=False))))
        self.arrived.set()
        return True

    def dropped(self, rows: Sequence[dict[str, Any]], reason: str) -> None:
        for row in rows:
            self.metrics.inc("guardrail_shadow_dropped_total", route=str(row.get("route")),
                             policy=str(row.get("policy")), reason=reason)

    def take_group(self) -> list[Entry]:
        group: list[Entry] = []
        size = 0
        while self.pending and len(group) < self.group_limit and (not group or size + self.pending[0][1] <=
                                                                   MAX_GROUP_BYTES):
            entry = self.pending.popleft()
            group.append(entry)
            size += entry[1]
        return group

    def take_rows(self) -> list[Row]:
        rows: list[Row] = []
        size = 0
        while self.rows and len(rows) < self.row_limit and (not rows or size + self.rows[0][1] <= MAX_GROUP_BYTES):
            row = self.rows.popleft()
            rows.append(row)
            size += row[1]
        return rows

    async def _write(self, records: list[dict[str, Any]]) -> Exception | None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, self.store.write, records)
        except Exception as exc:
            return exc
        return None

    async def _run(self) -> None:
        while True:
            if not self.pending and not self.rows:
                if self.closing.is_set():
                    return
                self.arrived.clear()
                await self.arrived.wait()
                continue
            if self.config.durability == "batch" and not self.closing.is_set():
                with contextlib.suppress(TimeoutError):  # a stop cuts the window short
                    await asyncio.wait_for(self.closing.wait(), self.config.batch_ms / 1000)
            if not self.pending:  # records first: shadow rows only in the room they leave
                await self._write_rows()
                continue
            group = self.take_group()
            self.writing = len(group)
            error = await self._write([r for r, _, _ in group])
            if error is not None:
                group = await self._recover(group, error)
            self.writing = 0
            if group:
                self.committed(group)
            elif self.closing.is_set():  # the store is down and the proxy is stopping: say what is lost
                log.error("audit writer: %d records could not be committed before shutdown", len(self.pending))
                self.metrics.inc("guardrail_audit_lost_total", len(self.pending))
                self.dropped([row for row, _ in self.rows], "writer_stopped")
                self.rows.clear()
                return

    async def _write_rows(self) -> None:
        """Commit a group of shadow rows. A refused group is narrowed down as records are (its first row alone,
        the rest back in front with a halved group); a row refused alone is dropped and counted, never retried."""
        rows = self.take_rows()
        self.rows_writing = len(rows)
        try:
            error = await self._write([row for row, _ in rows])
            if error is None:
                self.row_limit = min(SHADOW_GROUP, self.row_limit * 2)
                return
            if len(rows) > 1:
                self.row_limit = max(1, len(rows) // 2)
                self.rows.extendleft(reversed(rows[1:]))
                self.rows_writing = 1
                error = await self._write([rows[0][0]])
                if error is None:
                    return
        finally:
            self.rows_writing = 0
        log.error("audit writer: a shadow row was dropped, the store refused it: %s", error)
        self.dropped([rows[0][0]], "store_refused")

    async def _recover(self, group: list[Entry], error: Exception) -> list[Entry]:
        """After a failed group: what got committed (possibly only its first record, maybe reduced), with the
        rest back at the front of the queue; or nothing, after a pause, when the store is down."""
        self.metrics.inc("guardrail_audit_commit_failures_total")
        first, rest = group[0], group[1:]
        if await self._write([first[0]]) is None:  # the store works: a bad record is in the group, or it was a blip
            self.group_limit = max(1, len(group) // 2)  # narrow down on it
            self.pending.extendleft(reversed(rest))
            return [first]
        if await self._write([reduced(first[0], error)]) is None:
            log.error("audit record %s could not be stored whole (%s); stored without its checks and content",
                      first[0].get("request_id"), error)
            self.metrics.inc("guardrail_audit_reduced_total")
            self.pending.extendleft(reversed(rest))
            return [first]
        log.error("audit commit of %d records failed, retrying: %s", len(group), error)
        self.failing = f"commits failing ({self.backlog} records waiting): {error}"
        self.requeue_after_failure(group, error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), RETRY_S)
        return []

    def requeue_after_failure(self, group: list[Entry], error: Exception) -> None:
        """Back to the front of the queue, in order. A request waiting under sync gets a 503 now, so its
        record, when it is committed at last, says so."""
        loop = asyncio.get_running_loop()
        again: list[Entry] = []
        for record, size, future in group:
            if not future.done() and self.config.durability == "sync":
                future.set_exception(AuditUnavailable(f"the audit record could not be committed: {error}"))
                future.exception()
                record = {**record, "status": 503, "error": f"audit_unavailable: the record's commit failed ({error})"}
            again.append((record, size, loop.create_future()))
        self.pending.extendleft(reversed(again))

    def committed(self, group: list[Entry]) -> None:
        self.failing = None
        self.group_limit = min(MAX_GROUP, self.group_limit * 2)
        self.metrics.inc("guardrail_audit_records_total", len(group))
        for _, _, future in group:
            if not future.done():
                future.set_result(None)
        self.freed.set()

    def problem(self) -> str | None:
        """For /readyz: why records are not being kept, or None."""
        if self.failing:
            return self.failing
        if self.records_waiting >= self.config.max_pending:
            return f"the backlog is full ({self.records_waiting} records waiting)"
        return None

    async def close(self, timeout_s: float = 10.0) -> None:
        """Commit what is waiting (a clean stop loses nothing), then close the store."""
        self.closing.set()
        self.arrived.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
            except TimeoutError:
                log.error("audit writer: %d records could not be committed before shutdown", self.backlog)
                self.task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.store.close)
        self.executor.shutdown(wait=True)
