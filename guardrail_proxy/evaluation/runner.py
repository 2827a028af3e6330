"""Run examples through the classifier: cache first, a fixed number of workers, results in dataset order.

Each example is rendered exactly as the proxy renders a conversation (subjects.render), so an eval
measures the text the classifier really sees in production. A fixed pool of workers pulls from one
iterator, which bounds both the calls in flight and the tasks alive, however large the dataset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..answers import parse_answer
from ..classifier import Classification, Classifier
from ..dataset_rows import Example
from ..errors import ClassifierError
from ..policies import Policy
from ..subjects import Subject, Turn, render
from .cache import CachedAnswer, ResultCache, cache_key
from .results import Failure, ItemResult, Prediction

OnResult = Callable[[ItemResult], None]


@dataclass(frozen=True)
class RunOptions:
    model: str
    reasoning_effort: str
    concurrency: int = 8


def render_item(role: str, text: str, context: str | None) -> str:
    """Pure: the classifier's user message for one item, as the proxy would send it."""
    earlier = (Turn("user", context),) if context else ()
    return render(Subject(Turn(role, text), context=earlier))


def classifier_input(example: Example) -> str:
    return render_item(example.role, example.text, example.context)


def from_cache(example: Example, policy: Policy, cached: CachedAnswer) -> ItemResult | None:
    """A cached answer parsed under the policy as it is now; None when it no longer parses."""
    try:
        answer = parse_answer(cached.raw, policy)
    except ClassifierError:
        return None
    prediction = Prediction.of(answer, reasoning=cached.reasoning, raw=cached.raw, latency_ms=cached.latency_ms,
                               prompt_tokens=cached.prompt_tokens, completion_tokens=cached.completion_tokens)
    return ItemResult(example, prediction, cached=True)


def to_cached(result: Classification) -> CachedAnswer:
    return CachedAnswer(result.raw, result.reasoning, result.latency_ms, result.prompt_tokens,
                        result.completion_tokens)


async def classify_one(classifier: Classifier, policy: Policy, example: Example, cache: ResultCache,
                       options: RunOptions) -> ItemResult:
    content = classifier_input(example)
    key = cache_key(policy.digest, content, options.model, options.reasoning_effort)
    cached = cache.get(key)
    hit = from_cache(example, policy, cached) if cached else None
    if hit:
        return hit
    try:
        result = await classifier.classify(policy, content)
    except ClassifierError as exc:
        return ItemResult(example, None, Failure(exc.kind, exc.message))
    cache.put(key, to_cached(result))
    prediction = Prediction.of(result.answer, reasoning=result.reasoning, raw=result.raw,
                               latency_ms=result.latency_ms, prompt_tokens=result.prompt_tokens,
                               completion_tokens=result.completion_tokens)
    return ItemResult(example, prediction)


async def run_examples(classifier: Classifier, policy: Policy, examples: Sequence[Example], cache: ResultCache,
                       options: RunOptions, on_result: OnResult | None = None) -> list[ItemResult]:
    results: list[ItemResult | None] = [None] * len(examples)
    pending = iter(enumerate(examples))  # shared by the workers; next() never awaits, so no item is taken twice

    async def worker() -> None:
        for index, example in pending:
            result = await classify_one(classifier, policy, example, cache, options)
            results[index] = result
            if on_result:
                on_result(result)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(options.concurrency, len(examples)))):
            group.create_task(worker())
    return [r for r in results if r is not None]
