"""Run examples through a judge: a fixed number of workers, results in dataset order.

Each example is rendered exactly as the proxy renders a conversation (subjects.render), so an eval
measures the text the classifier really sees in production. A fixed pool of workers pulls from one
iterator, which bounds both the calls in flight and the tasks alive, however large the dataset. A judge is
one policy (`policy_judge`) or a whole route (route_eval.py); the Asker below them shares cached and
in-flight answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..classifier import Classification
from ..dataset_rows import Example
from ..errors import ClassifierError
from ..policies import Policy
from ..subjects import Subject, Turn, render
from .asker import Asker
from .results import Failure, ItemResult, Prediction

R = TypeVar("R")
OnResult = Callable[[ItemResult], None]
Judge = Callable[[Example], Awaitable[R]]


def render_item(role: str, text: str, context: tuple[Turn, ...] = ()) -> str:
    """Pure: the classifier's user message for one item, as the proxy would send it."""
    return render(Subject(Turn(role, text), context=context))


def classifier_input(example: Example) -> str:
    return render_item(example.role, example.text, example.context)


def prediction_of(result: Classification) -> Prediction:
    return Prediction.of(result.answer, reasoning=result.reasoning, raw=result.raw, latency_ms=result.latency_ms,
                         prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)


def policy_judge(asker: Asker, policy: Policy) -> Judge[ItemResult]:
    async def judge(example: Example) -> ItemResult:
        try:
            result = await asker.ask(policy, classifier_input(example))
        except ClassifierError as exc:
            return ItemResult(example, None, Failure(exc.kind, exc.message))
        return ItemResult(example, prediction_of(result), cached=result.cached)

    return judge


async def run_items(examples: Sequence[Example], judge: Judge[R], concurrency: int,
                    on_result: Callable[[R], None] | None = None) -> list[R]:
    results: list[R | None] = [None] * len(examples)
    pending = iter(enumerate(examples))  # shared by the workers; next() never awaits, so no item is taken twice

    async def worker() -> None:
        for index, example in pending:
            result = await judge(example)
            results[index] = result
            if on_result:
                on_result(result)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, len(examples)))):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        # One fault (a full disk under the cache, say) is reported as itself, not as a group of tracebacks.
        raise failed.exceptions[0] from None
    return [r for r in results if r is not None]
