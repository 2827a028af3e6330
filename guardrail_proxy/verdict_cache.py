"""A bounded in-memory cache of classifier answers, wrapped around any `Classifier`.

Chat clients resend the whole conversation every turn, so the earlier user messages a route checks
(`input.scope: all_user`) were already judged on previous turns; with this cache, checking all of them
costs about one classifier call per new message. Only successful answers are cached (a fault is never
remembered), keyed by the policy's digest and the exact rendered text, so a policy edit misses.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import replace

from .classifier import Classification, Classifier
from .policies import Policy


class CachingClassifier:
    def __init__(self, inner: Classifier, max_entries: int,
                 entries: OrderedDict[tuple[str, str], Classification] | None = None) -> None:
        self.inner = inner
        self.max_entries = max_entries
        # `entries` shares a previous config generation's answers (served.py): same classifier, same settings.
        self.entries: OrderedDict[tuple[str, str], Classification] = entries if entries is not None else OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(policy: Policy, content: str) -> tuple[str, str]:
        # Bounded memory per entry; surrogates (invalid UTF-8) are hashed as escapes rather than crash.
        return policy.answer_key, hashlib.sha256(content.encode("utf-8", "backslashreplace")).hexdigest()

    def knows(self, policy: Policy, content: str) -> bool:
        return self.key(policy, content) in self.entries

    async def classify(self, policy: Policy, content: str) -> Classification:
        key = self.key(policy, content)
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
            self.hits += 1
            return replace(found, latency_ms=0.0, cached=True)
        self.misses += 1
        result = await self.inner.classify(policy, content)
        self.entries[key] = result
        if len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return result

    async def ping(self) -> str | None:
        return await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()
