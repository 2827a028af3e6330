"""Audit records leave the event loop: a queue in memory, one writer task, one thread for the store.

The writer commits records in groups. Under `batch` durability it waits up to `batch_ms` after the first
record so a group fills; under `sync` it commits whatever is waiting at once (records that arrive during a
commit go in the next one), and the request waits for its own commit (flow.py). A failed commit is logged,
counted, and retried after a pause with the records kept in order; a request waiting for it under `sync`
gets a 503 instead of a reply whose record may be gone. Nothing is dropped: when `max_pending` records wait,
new requests wait for room or are refused with a 503 (`when_full`), both counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .audit_store import AuditStore
from .config import AuditConfig
from .errors import AuditUnavailable
from .metrics import Metrics

log = logging.getLogger("guardrail_proxy.audit")
MAX_GROUP = 2000  # records per commit
RETRY_S = 0.5


class AuditWriter:
    def __init__(self, store: AuditStore, config: AuditConfig, metrics: Metrics,
                 policies: Sequence[tuple[str, str, str]] = ()) -> None:
        self.store, self.config, self.metrics, self.policies = store, config, metrics, policies
        self.pending: deque[tuple[dict[str, Any], asyncio.Future[None]]] = deque()
        self.writing = 0  # records in the commit under way
        self.arrived = asyncio.Event()
        self.freed = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.failing: str | None = None  # the last commit's error, until a commit succeeds

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.store.open)
        await loop.run_in_executor(self.executor, self.store.put_policies, self.policies)
        self.task = asyncio.create_task(self._run(), name="audit-writer")

    @property
    def backlog(self) -> int:
        return len(self.pending) + self.writing

    async def room(self) -> None:
        """Wait until a new request's record fits (when_full: wait), or refuse it (when_full: refuse)."""
        if self.backlog < self.config.max_pending:
            return
        if self.config.when_full == "refuse":
            self.metrics.inc("guardrail_audit_backpressure_total", result="refused")
            raise AuditUnavailable("the audit backlog is full; retry shortly")
        self.metrics.inc("guardrail_audit_backpressure_total", result="waited")
        while self.backlog >= self.config.max_pending:
            self.freed.clear()
            await self.freed.wait()

    def submit(self, record: dict[str, Any]) -> asyncio.Future[None]:
        """Queue a record; the future is done when it is committed (or failed under sync durability)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((record, future))
        self.arrived.set()
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                if self.closing:
                    return
                self.arrived.clear()
                await self.arrived.wait()
                continue
            if self.config.durability == "batch" and not self.closing:
                await asyncio.sleep(self.config.batch_ms / 1000)
            group = [self.pending.popleft() for _ in range(min(MAX_GROUP, len(self.pending)))]
            self.writing = len(group)
            try:
                await loop.run_in_executor(self.executor, self.store.write, [r for r, _ in group])
            except Exception as exc:
                log.error("audit commit of %d records failed, retrying: %s", len(group), exc)
                self.failing = f"commits failing ({self.backlog} records waiting): {exc}"
                self.metrics.inc("guardrail_audit_commit_failures_total")
                self.pending.extendleft(reversed([(r, loop.create_future()) for r, _ in group]))
                for _, future in group:
                    if not future.done():
                        future.set_exception(AuditUnavailable(f"the audit record could not be committed: {exc}"))
                        future.exception()  # a batch-mode request does not wait for it: not an unread error
                self.writing = 0
                await asyncio.sleep(RETRY_S)
                continue
            self.writing = 0
            self.failing = None
            self.metrics.inc("guardrail_audit_records_total", len(group))
            for _, future in group:
                if not future.done():
                    future.set_result(None)
            self.freed.set()

    def problem(self) -> str | None:
        """For /readyz: why records are not being kept, or None."""
        if self.failing:
            return self.failing
        if self.backlog >= self.config.max_pending:
            return f"the backlog is full ({self.backlog} records waiting)"
        return None

    async def close(self, timeout_s: float = 10.0) -> None:
        """Commit what is waiting (a clean stop loses nothing), then close the store."""
        self.closing = True
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
