"""Evaluate a whole route: every policy the route applies, on each item, exactly as the proxy would.

An item becomes the conversation the proxy would see (its context turns, then the item), the route's own
input or output settings pick the subjects and their context (subjects.py), the pipeline plans the checks
(segments included) and decisions.combine decides. The item counts as a violation when any policy found one,
which is what a 0/1 held-out label means for a route; each policy is also scored alone on the items it
checks. Planning and combining are pure; only `route_judge` talks to the classifier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..bundles import Bundles
from ..classifier import Classification
from ..config import RouteConfig
from ..dataset_rows import Example
from ..decisions import CheckFailure, CheckOutcome, Phase, Verdict, combine, worst
from ..errors import ClassifierError
from ..pipeline import Call, Check, answers_by_key, plan_calls, plan_checks, to_outcome
from ..policies import Policy
from ..protocol import Message
from ..subjects import input_subjects, output_subject
from .asker import Asker
from .results import Failure, ItemResult, Prediction, predicted_positive
from .runner import Judge


@dataclass(frozen=True)
class RouteItem:
    route: ItemResult  # any violation, against the item's label
    policies: tuple[tuple[str, ItemResult], ...]  # (policy id, its result) for each policy that checked the item
    action: str  # what the proxy would do: allow, log, annotate, rewrite, block, unavailable


def conversation(example: Example) -> tuple[list[Message], list[Message]]:
    """(the messages before the item, and with it), as a client would send them."""
    earlier = [Message.model_validate({"role": t.role, "content": t.text}) for t in example.context]
    return earlier, [*earlier, Message(role="user", content=example.text)]


def route_checks(example: Example, route: RouteConfig, policies: dict[str, Policy],
                 max_chars: int) -> tuple[Phase, list[Check]]:
    """Pure: the phase an item falls in (a user item is input, an assistant item output) and its checks."""
    earlier, messages = conversation(example)
    if example.role == "user":
        subjects = input_subjects(messages, route.input) if route.input.enabled else []
        return "input", plan_checks("input", subjects, route, policies, max_chars)
    subjects = [output_subject(example.text, earlier, route.output, 0)] if route.output.enabled else []
    return "output", plan_checks("output", subjects, route, policies, max_chars)


def verdict_prediction(verdict: Verdict) -> Prediction:
    return Prediction(verdict.violation, verdict.severity, verdict.label or str(int(verdict.violation)),
                      verdict.rationale, verdict.reasoning, verdict.raw, verdict.latency_ms)


def policy_result(example: Example, outcomes: Sequence[CheckOutcome]) -> ItemResult:
    """One policy's checks of one item (several when the text was split): the most severe verdict, or the
    first failure when nothing was found."""
    verdicts = [o for o in outcomes if isinstance(o, Verdict)]
    failures = [o for o in outcomes if isinstance(o, CheckFailure)]
    cached = all(v.cached for v in verdicts) and not failures
    heaviest = worst(verdicts)
    if failures and (heaviest is None or not heaviest.violation):
        return ItemResult(example, None, Failure(failures[0].kind, failures[0].message))
    assert heaviest is not None  # plan_checks gave this policy at least one check
    return ItemResult(example, verdict_prediction(heaviest), cached=cached)


def token_sum(answers: Sequence[Classification | ClassifierError], field: str) -> int | None:
    counts = [getattr(a, field) for a in answers if isinstance(a, Classification) and getattr(a, field) is not None]
    return sum(counts) if counts else None


def joined(results: Sequence[tuple[str, ItemResult]], latency_ms: float,
           answers: Sequence[Classification | ClassifierError] = (), threshold: int = 1) -> Prediction:
    """The route's answer for an item: a violation when any policy found one (at or above the threshold),
    with their explanations. It carries no level: the threshold is already applied."""
    predictions = [(pid, r.prediction) for pid, r in results if r.prediction]
    found = [(pid, p) for pid, p in predictions if predicted_positive(p, threshold)]
    severity = max((p.severity for _, p in found), default=0)
    shown = found or predictions
    rationale = "; ".join(f"{pid} {p.label}: {p.rationale}" for pid, p in shown if p.rationale) or None
    reasoning = "\n\n".join(f"[{pid}] {p.reasoning}" for pid, p in shown if p.reasoning) or None
    raw = "\n".join(f"{pid}: {p.raw}" for pid, p in predictions)
    return Prediction(bool(found), severity, str(int(bool(found))), rationale, reasoning, raw, latency_ms,
                      token_sum(answers, "prompt_tokens"), token_sum(answers, "completion_tokens"))


def combine_item(example: Example, phase: Phase, checks: Sequence[Check],
                 answers: Sequence[Classification | ClassifierError], route: RouteConfig,
                 policies: dict[str, Policy], threshold: int = 1) -> RouteItem:
    """Pure: an item's answers -> the route's result, each policy's, and the proxy's action."""
    outcomes = [to_outcome(phase, check, answer) for check, answer in zip(checks, answers, strict=True)]
    decision = combine(phase, outcomes, route, policies)
    per_policy = tuple((rule.id, policy_result(example, [o for o in outcomes if o.policy_id == rule.id]))
                       for rule in route.policies if any(o.policy_id == rule.id for o in outcomes))
    latency = max((o.latency_ms for o in outcomes), default=0.0)  # the proxy asks every policy at once
    cached = all(r.cached for _, r in per_policy)
    found = any(r.prediction and predicted_positive(r.prediction, threshold) for _, r in per_policy)
    if decision.failures and not found:  # a failed check decides unless a counted violation was found anyway
        failure = decision.failures[0]
        result = ItemResult(example, None, Failure(failure.kind, failure.message))
    else:
        result = ItemResult(example, joined(per_policy, latency, answers, threshold),
                            cached=cached and bool(per_policy))
    return RouteItem(result, per_policy, decision.outcome.value)


def route_judge(asker: Asker, route: RouteConfig, policies: dict[str, Policy], max_chars: int,
                threshold: int = 1) -> Judge[RouteItem]:
    """The proxy's calls for each item: one per (policy, text), or with `combine_policies` one per text
    (bundles.py), each answer read back per policy exactly as the proxy reads it."""
    bundle = Bundles()

    async def ask(call: Call) -> Classification | ClassifierError:
        try:
            return await asker.ask(call.policy, call.content)
        except ClassifierError as exc:
            return exc

    async def judge(example: Example) -> RouteItem:
        phase, checks = route_checks(example, route, policies, max_chars)
        calls = plan_calls(checks, route.combine_policies, bundle)
        answered = await asyncio.gather(*(ask(call) for call in calls))
        results = answers_by_key(calls, answered)
        # Tokens are counted once per call: on the first check that reads each answer.
        answers, counted = [], set()
        for check in checks:
            result = results[check.key]
            if isinstance(result, Classification) and check.key in counted:
                result = replace(result, prompt_tokens=None, completion_tokens=None)
            counted.add(check.key)
            answers.append(result)
        return combine_item(example, phase, checks, answers, route, policies, threshold)

    return judge


def split_runs(items: Sequence[RouteItem], route: RouteConfig) -> tuple[list[ItemResult], dict[str, list[ItemResult]]]:
    """Pure: the route's results, and each policy's results on the items it checked, in route order."""
    per_policy: dict[str, list[ItemResult]] = {rule.id: [] for rule in route.policies}
    for item in items:
        for pid, result in item.policies:
            per_policy[pid].append(result)
    return [item.route for item in items], per_policy
