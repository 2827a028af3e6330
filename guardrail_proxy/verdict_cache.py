"""A bounded in-memory cache of classifier answers, wrapped around any `Classifier`.

Chat clients resend the whole conversation every turn, so the earlier user messages a route checks
(`input.scope: all_user`) were already judged on previous turns; with this cache, checking all of them
costs about one classifier call per new message. Only successful answers are cached (a fault is never
remembered), keyed by the policy's digest and the exact rendered text, so a policy edit misses. Requests
asking the same question at the same time (many users opening one conversation starter, one reply relayed to
several choices) share the one call in flight instead of each making it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import replace

from .classifier import Classification, Classifier
from .policies import Policy


class SharedCall:
    """One classifier call awaited by every request that asked the same question while it ran. A request that
    goes away stops waiting; the call itself is cancelled only when no one is waiting any more."""

    def __init__(self, task: asyncio.Future[Classification]) -> None:
        self.task = task
        self.waiting = 0
        self.abandoned = False  # cancelled for want of waiters: a new request must not join it

    @property
    def joinable(self) -> bool:
        return not self.abandoned and not self.task.done()

    async def join(self) -> Classification:
        self.waiting += 1
        try:
            return await asyncio.shield(self.task)
        finally:
            self.waiting -= 1
            if not self.waiting and not self.task.done():
                self.abandoned = True
                self.task.cancel()


class CachingClassifier:
    def __init__(self, inner: Classifier, max_entries: int,
                 entries: OrderedDict[tuple[str, str], Classification] | None = None) -> None:
        self.inner = inner
        self.max_entries = max_entries
        # `entries` shares a previous config generation's answers (served.py): same classifier, same settings.
        self.entries: OrderedDict[tuple[str, str], Classification] = entries if entries is not None else OrderedDict()
        self.flying: dict[tuple[str, str], SharedCall] = {}  # calls in flight, by key: asked once, answered to all
        self.hits = 0
        self.misses = 0
        self.shared = 0  # answers taken from a call another request had in flight

    @staticmethod
    def key(policy: Policy, content: str) -> tuple[str, str]:
        # Bounded memory per entry; surrogates (invalid UTF-8) are hashed as escapes rather than crash.
        return policy.answer_key, hashlib.sha256(content.encode("utf-8", "backslashreplace")).hexdigest()

    def knows(self, policy: Policy, content: str) -> bool:
        """The answer costs no new call: it is cached, or a call for it is in flight."""
        key = self.key(policy, content)
        call = self.flying.get(key)
        return key in self.entries or (call is not None and call.joinable)

    async def classify(self, policy: Policy, content: str) -> Classification:
        key = self.key(policy, content)
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
            self.hits += 1
            return replace(found, latency_ms=0.0, cached=True)
        call = self.flying.get(key)
        if call is not None and call.joinable:  # the same question is being asked right now: wait for that answer
            self.shared += 1
            started = time.perf_counter()
            result = await call.join()
            return replace(result, latency_ms=(time.perf_counter() - started) * 1000, cached=True)
        self.misses += 1
        call = self.flying[key] = SharedCall(asyncio.ensure_future(self.inner.classify(policy, content)))
        call.task.add_done_callback(lambda _t: self.landed(key, call))
        return await call.join()

    def landed(self, key: tuple[str, str], call: SharedCall) -> None:
        """A call ended: its answer (never a fault, never a cancelled call) goes into the cache."""
        if self.flying.get(key) is call:
            del self.flying[key]
        task = call.task
        if task.cancelled() or task.exception() is not None:
            return
        self.entries[key] = task.result()
        if len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    async def ping(self) -> str | None:
        return await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()
