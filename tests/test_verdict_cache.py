"""The in-memory answer cache: hits, LRU bound, faults never cached, policy edits miss."""

from __future__ import annotations

import asyncio

import pytest
from conftest import VIOLENCE_POLICY, user

from guardrail_proxy.answers import Answer
from guardrail_proxy.classifier import Classification
from guardrail_proxy.errors import ClassifierError
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.verdict_cache import CachingClassifier

POLICY = parse_policy(VIOLENCE_POLICY, "v.md")


class Counting:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False

    async def classify(self, policy, content):
        self.calls.append(content)
        if self.fail:
            raise ClassifierError("down", kind="transport")
        return Classification(Answer(False, 0, "TV0"), "why", "TV0", 12.0)

    async def ping(self):
        return None

    async def aclose(self):
        return None


async def test_hits_skip_the_classifier_and_are_marked():
    inner = Counting()
    cache = CachingClassifier(inner, 10)
    first = await cache.classify(POLICY, "a")
    again = await cache.classify(POLICY, "a")
    assert inner.calls == ["a"] and not first.cached and again.cached and again.latency_ms == 0.0
    assert (cache.hits, cache.misses) == (1, 1)


async def test_lru_bound():
    inner = Counting()
    cache = CachingClassifier(inner, 2)
    for text in ["a", "b", "a", "c", "b"]:
        await cache.classify(POLICY, text)
    assert inner.calls == ["a", "b", "c", "b"]  # "b" was the least recently used when "c" arrived


async def test_faults_are_not_cached():
    inner = Counting()
    inner.fail = True
    cache = CachingClassifier(inner, 10)
    for _ in range(2):
        with pytest.raises(ClassifierError):
            await cache.classify(POLICY, "a")
    assert len(inner.calls) == 2


async def test_a_policy_edit_misses():
    inner = Counting()
    cache = CachingClassifier(inner, 10)
    edited = POLICY.model_copy(update={"digest": "e" * 64})
    await cache.classify(POLICY, "a")
    await cache.classify(edited, "a")
    assert len(inner.calls) == 2


def test_all_user_scope_checks_only_new_turns_on_the_next_request(make_proxy):
    proxy = make_proxy({"input": {"scope": "all_user", "speculative": False}, "output": {"enabled": False}})
    history = [*user("first question"), {"role": "assistant", "content": "first answer"}]
    proxy.client.chat.completions.create(model="test-model", messages=user("first question"))
    proxy.client.chat.completions.create(model="test-model", messages=[*history, *user("second question")])
    assert len(proxy.classifier.requests) == 2
    record = proxy.audit()[1]
    assert [c["cached"] for c in record["phases"][0]["checks"]] == [True, False]


def test_cache_can_be_turned_off(make_proxy):
    proxy = make_proxy({"output": {"enabled": False}}, classifier={"cache_entries": 0})
    for _ in range(2):
        proxy.client.chat.completions.create(model="test-model", messages=user("same"))
    assert len(proxy.classifier.requests) == 2


async def test_same_text_with_other_labels_does_not_share_answers():
    inner = Counting()
    cache = CachingClassifier(inner, 10)
    narrower = POLICY.model_copy(update={"labels": {"TV0": "a", "TV1": "b"}})
    await cache.classify(POLICY, "a")
    await cache.classify(narrower, "a")
    assert len(inner.calls) == 2


class Slow(Counting):
    """Answers only when released, so calls overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.cancelled = 0

    async def classify(self, policy, content):
        self.calls.append(content)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            raise ClassifierError("down", kind="transport")
        return Classification(Answer(False, 0, "TV0"), "why", "TV0", 12.0)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_requests_share_one_call_in_flight():
    inner = Slow()
    cache = CachingClassifier(inner, 10)
    tasks = [asyncio.create_task(cache.classify(POLICY, "same")) for _ in range(3)]
    other = asyncio.create_task(cache.classify(POLICY, "other"))
    await settle()
    inner.release.set()
    first, *joined = await asyncio.gather(*tasks)
    await other
    assert inner.calls == ["same", "other"] and cache.shared == 2 and cache.misses == 2
    assert not first.cached and all(j.cached and j.answer.label == "TV0" for j in joined)
    assert not cache.flying and cache.knows(POLICY, "same")


async def test_a_shared_fault_reaches_every_waiter_and_is_not_cached():
    inner = Slow()
    inner.fail = True
    cache = CachingClassifier(inner, 10)
    tasks = [asyncio.create_task(cache.classify(POLICY, "x")) for _ in range(2)]
    await settle()
    inner.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ClassifierError) for r in results) and len(inner.calls) == 1
    assert not cache.knows(POLICY, "x") and not cache.flying


async def test_a_waiter_that_leaves_does_not_cancel_the_call_for_the_others():
    inner = Slow()
    cache = CachingClassifier(inner, 10)
    leaving = asyncio.create_task(cache.classify(POLICY, "x"))
    staying = asyncio.create_task(cache.classify(POLICY, "x"))
    await settle()
    leaving.cancel()
    await settle()
    assert inner.cancelled == 0
    inner.release.set()
    assert (await staying).answer.label == "TV0" and cache.knows(POLICY, "x")


async def test_the_call_is_cancelled_when_no_one_waits_any_more():
    inner = Slow()
    cache = CachingClassifier(inner, 10)
    tasks = [asyncio.create_task(cache.classify(POLICY, "x")) for _ in range(2)]
    await settle()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await settle()
    assert inner.cancelled == 1 and not cache.flying and not cache.knows(POLICY, "x")


async def test_a_request_arriving_while_an_abandoned_call_winds_down_makes_its_own():
    inner = Slow()
    cache = CachingClassifier(inner, 10)
    first = asyncio.create_task(cache.classify(POLICY, "x"))
    await settle()
    first.cancel()
    await asyncio.sleep(0)  # the call is being cancelled but has not ended yet
    second = asyncio.create_task(cache.classify(POLICY, "x"))
    await settle()
    inner.release.set()
    assert (await second).answer.label == "TV0" and len(inner.calls) == 2


async def test_a_call_in_flight_counts_as_known():
    inner = Slow()
    cache = CachingClassifier(inner, 10)
    task = asyncio.create_task(cache.classify(POLICY, "x"))
    await settle()
    assert cache.knows(POLICY, "x") and not cache.knows(POLICY, "y")
    inner.release.set()
    await task
