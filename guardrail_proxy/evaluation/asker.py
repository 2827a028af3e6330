"""One classifier answer per (policy, text) for a whole eval: the disk cache first, then one call shared by
every item that needs the same answer at the same time.

A dataset often holds the same text twice (public sets are aggregated from several sources), and a route
eval asks several policies about one text; without sharing, two workers would each pay for the same call.
Calls in flight are capped here (`--concurrency`): a route eval asks several policies per item, and
left to the classifier client those calls would queue against its slot-wait budget and come back as
overload errors behind a slow model; waiting here has no deadline. A cached answer is parsed again under
the policy as it is now, so a change to the policy's front matter
(its label set, its format) applies to cached answers too; one that no longer parses is asked again.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from ..answers import parse_answer
from ..classifier import Classification, Classifier
from ..errors import ClassifierError
from ..policies import Policy
from .cache import CachedAnswer, Endpoint, ResultCache, cache_key


def from_cache(policy: Policy, cached: CachedAnswer) -> Classification | None:
    try:
        answer = parse_answer(cached.raw, policy)
    except ClassifierError:
        return None
    return Classification(answer, cached.reasoning, cached.raw, cached.latency_ms, cached.prompt_tokens,
                          cached.completion_tokens, cached=True)


def to_cached(result: Classification) -> CachedAnswer:
    return CachedAnswer(result.raw, result.reasoning, result.latency_ms, result.prompt_tokens,
                        result.completion_tokens)


class Asker:
    """Built per command; one event loop uses it, so the in-flight table needs no lock."""

    def __init__(self, classifier: Classifier, cache: ResultCache, endpoint: Endpoint, concurrency: int = 8) -> None:
        self.classifier = classifier
        self.slots = asyncio.Semaphore(concurrency)
        self.cache = cache
        self.endpoint = endpoint
        self.in_flight: dict[str, asyncio.Future[Classification]] = {}
        self.fresh: set[str] = set()  # answered during this command: not "cached" for its reports
        self.calls = 0  # answers paid for (not cached, not shared)

    async def ask(self, policy: Policy, content: str) -> Classification:
        """The answer, from the cache, from a call already in flight, or from a new call. Raises
        ClassifierError; an error is never cached, but is shared with the items waiting on the same call."""
        key = cache_key(self.endpoint, policy.digest, content)
        cached = self.cache.get(key)
        if cached is not None and (hit := from_cache(policy, cached)):
            return replace(hit, cached=False) if key in self.fresh else hit
        if key in self.in_flight:
            shared = await asyncio.shield(self.in_flight[key])
            # The key holds the policy's text, not its front matter: read the answer as this policy reads it.
            return replace(shared, answer=parse_answer(shared.raw, policy))
        future: asyncio.Future[Classification] = asyncio.get_running_loop().create_future()
        self.in_flight[key] = future
        try:
            async with self.slots:
                self.calls += 1
                result = await self.classifier.classify(policy, content)
            self.cache.put(key, to_cached(result))
            self.fresh.add(key)
            future.set_result(result)
            return result
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an error nobody else waited for is not logged as lost
            raise
        except BaseException:
            future.cancel()  # interrupted: whoever shares the call stops too
            raise
        finally:
            del self.in_flight[key]
