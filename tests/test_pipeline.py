"""The checker's count of classifier calls in flight per route: never negative, never stale, however requests
with cached and new texts overlap."""

from __future__ import annotations

import asyncio
import textwrap

from conftest import VIOLENCE_POLICY

from guardrail_proxy.classifier import SafeguardClient
from guardrail_proxy.config import ClassifierConfig, RouteConfig
from guardrail_proxy.pipeline import Checker
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.subjects import Subject, Turn
from guardrail_proxy.verdict_cache import CachingClassifier

POLICY = parse_policy(textwrap.dedent(VIOLENCE_POLICY), "violence.md")
ROUTE = RouteConfig.model_validate({"name": "r", "models": ["m"], "upstream": "u", "policies": [{"id": "violence"}]})


class Gated:
    """The real caching client, except that answering `held` waits for the test to open the gate."""

    def __init__(self, inner: CachingClassifier, held: str) -> None:
        self.inner, self.held, self.gate = inner, held, asyncio.Event()

    def knows(self, policy, content):
        return self.inner.knows(policy, content)

    async def classify(self, policy, content):
        if content == self.held:
            await self.gate.wait()
        return await self.inner.classify(policy, content)


async def test_a_cached_request_outliving_a_new_one_keeps_the_count_right(safeguard):
    _behaviour, server = safeguard
    client = SafeguardClient(ClassifierConfig(base_url=f"{server.url}/v1", timeout_s=5, retries=0), api_key=None)
    cache = CachingClassifier(client, 100)
    gated = Gated(cache, "cached text")
    checker = Checker({"default": gated}, {"violence": POLICY})  # type: ignore[dict-item]
    try:
        gated.gate.set()
        await checker.check("input", [Subject(Turn("user", "cached text"))], ROUTE)  # now in the cache
        gated.gate.clear()
        cached = asyncio.create_task(checker.check("input", [Subject(Turn("user", "cached text"))], ROUTE))
        await asyncio.sleep(0.05)  # the cached request is inside its check, needing no new call
        await checker.check("input", [Subject(Turn("user", "a new text"))], ROUTE)  # starts and ends meanwhile
        gated.gate.set()
        await cached  # used to raise KeyError: the route's count was gone
    finally:
        await client.aclose()
    assert checker.in_flight == {}
