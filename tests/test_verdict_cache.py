"""The in-memory answer cache: hits, LRU bound, faults never cached, policy edits miss."""

from __future__ import annotations

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
