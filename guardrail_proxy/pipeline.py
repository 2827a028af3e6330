"""Run one phase's checks: one classifier call per (policy, text), all at once, none repeated.

Faults from the classifier become `CheckFailure` values here, and `decisions.combine` applies the route's
fail mode to them. No HTTP here: the caller turns the decision into a response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from .classifier import Classification, Classifier
from .config import ClassifierConfig, RouteConfig
from .decisions import CheckFailure, CheckOutcome, Decision, Outcome, Phase, Verdict, combine
from .errors import ClassifierError
from .policies import Policy
from .relayed import RelayedReplies
from .segments import split_subject
from .subjects import Subject, render

log = logging.getLogger("guardrail_proxy.pipeline")
OnOutcome = Callable[[CheckOutcome], None]
# For a Checker built without per-classifier budgets (tests): the config's own defaults, not copies of them.
DEFAULT_MAX_CHARS: int = ClassifierConfig.model_fields["max_input_chars"].default
DEFAULT_CAPACITY: int = (ClassifierConfig.model_fields["max_concurrency"].default
                         + ClassifierConfig.model_fields["max_queue"].default)


@dataclass(frozen=True)
class Check:
    policy: Policy
    content: str
    subject: int

    @property
    def key(self) -> tuple[str, str]:
        """Checks with one key get one answer: same text, read the same way."""
        return (self.policy.answer_key, self.content)


def plan_checks(phase: Phase, subjects: Sequence[Subject], route: RouteConfig,
                policies: dict[str, Policy], max_chars: int = DEFAULT_MAX_CHARS,
                judged: Callable[[Policy, Subject], bool] | None = None) -> list[Check]:
    """Every (policy, rendered text) pair this phase needs, in route order, a text longer than the
    classifier's budget as overlapping segments (segments.py), less the (policy, subject) pairs `judged`
    says were already judged (relayed.py). Pure."""
    split = [(subject, split_subject(subject, max_chars)) for subject in subjects]
    return [
        Check(policy, render(piece), piece.index)
        for policy in (policies[rule.id] for rule in route.policies if phase in rule.phases)
        for subject, pieces in split if judged is None or not judged(policy, subject)
        for piece in pieces
    ]


def clean(decisions: Iterable[Decision]) -> bool:
    """Every check ran and found nothing: no violation at any level, no failure. Pure."""
    return all(not d.failures and all(isinstance(o, Verdict) and not o.violation for o in d.outcomes)
               for d in decisions)


def over_fair_share(mine: int, others: int, wanted: int, capacity: int) -> bool:
    """Whether a route may not start `wanted` more classifier calls. While other routes also have calls in
    flight on the same classifier, one route holds at most half of its capacity (calls in flight plus
    queued); alone, a route may use all of it. Pure."""
    return others > 0 and mine + wanted > max(1, capacity // 2)


def refused(phase: Phase, kind: str, message: str) -> Decision:
    """A phase refused as a whole before any call: too many checks, or over the route's fair share."""
    failure = CheckFailure("*", "", phase, kind, message)
    return Decision(phase, Outcome.UNAVAILABLE, (failure,), (), (failure,))


class Checker:
    def __init__(self, classifiers: dict[str, Classifier], policies: dict[str, Policy],
                 on_outcome: OnOutcome | None = None, max_chars: dict[str, int] | None = None,
                 capacity: dict[str, int] | None = None, relayed: RelayedReplies | None = None) -> None:
        self.classifiers = classifiers
        self.policies = policies
        self.relayed = relayed if relayed is not None else RelayedReplies()
        self.on_outcome = on_outcome or (lambda _o: None)
        self.max_chars = max_chars or {}
        self.capacity = capacity or {}
        self.in_flight: dict[tuple[str, str], int] = {}  # (classifier, route) -> calls started, not finished

    async def check(self, phase: Phase, subjects: Sequence[Subject], route: RouteConfig) -> Decision:
        budget = self.max_chars.get(route.classifier, DEFAULT_MAX_CHARS)
        checks = plan_checks(phase, subjects, route, self.policies, budget, self._judged(phase, route))
        if not checks:
            return Decision(phase, Outcome.ALLOW)
        classifier = self.classifiers[route.classifier]
        # Answers already in the cache cost nothing: a long conversation resent turn after turn is not
        # refused for its history, only a request with too much new text is.
        needed = len({c.key for c in checks if not classifier.knows(c.policy, c.content)})
        slot = (route.classifier, route.name)
        mine = self.in_flight.get(slot, 0)
        others = sum(n for (name, owner), n in self.in_flight.items()
                     if name == route.classifier and owner != route.name)
        if needed > route.max_checks:
            return self.refuse(refused(phase, "too_many",
                                       f"{needed} new classifier calls needed, the route allows {route.max_checks}"))
        if over_fair_share(mine, others, needed, self.capacity.get(route.classifier, DEFAULT_CAPACITY)):
            return self.refuse(refused(phase, "overload", f"route '{route.name}' is over its fair share of the "
                                                          f"classifier ({mine} calls in flight, {needed} more needed)"))
        if not needed:  # all answers in the cache: nothing to count, nothing to give back
            return await self._run(phase, checks, classifier, route)
        self.in_flight[slot] = mine + needed
        try:
            return await self._run(phase, checks, classifier, route)
        finally:
            # Read the count again: other requests of this route started and ended meanwhile.
            left = self.in_flight.get(slot, 0) - needed
            if left > 0:
                self.in_flight[slot] = left
            else:
                self.in_flight.pop(slot, None)

    def _judged(self, phase: Phase, route: RouteConfig) -> Callable[[Policy, Subject], bool] | None:
        """On input, with `trust_relayed`: an assistant turn this proxy relayed, byte for byte, after the same
        policy found nothing in it."""
        if phase != "input" or not route.input.trust_relayed:
            return None

        def judged(policy: Policy, subject: Subject) -> bool:
            skip = subject.target.role == "assistant" and self.relayed.judged(subject.target.text, policy.answer_key)
            self.relayed.skipped += skip
            return skip
        return judged

    def relayed_clean(self, route: RouteConfig, texts: Iterable[str], decisions: Sequence[Decision]) -> None:
        """After a reply's output checks all found nothing, remember its texts for the policies that judged them."""
        if route.output.enabled and decisions and clean(decisions):
            keys = [self.policies[rule.id].answer_key for rule in route.policies if "output" in rule.phases]
            for text in texts:
                self.relayed.remember(text, keys)

    def refuse(self, decision: Decision) -> Decision:
        for failure in decision.failures:
            self.on_outcome(failure)  # counted, like any check that could not run
        return decision

    async def _run(self, phase: Phase, checks: list[Check], classifier: Classifier,
                   route: RouteConfig) -> Decision:
        # Identical (policy, text) pairs in one request share one call.
        calls: dict[tuple[str, str], Awaitable[Classification | ClassifierError]] = {}
        for check in checks:
            if check.key not in calls:
                calls[check.key] = asyncio.ensure_future(self._one(classifier, check))
        try:
            results = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))
        finally:
            for future in calls.values():
                if isinstance(future, asyncio.Future):
                    future.cancel()  # no-op when done; stops stragglers when we are cancelled
        outcomes = [to_outcome(phase, c, results[c.key]) for c in checks]
        for outcome in outcomes:
            self.on_outcome(outcome)
        return combine(phase, outcomes, route, self.policies)

    @staticmethod
    async def _one(classifier: Classifier, check: Check) -> Classification | ClassifierError:
        try:
            return await classifier.classify(check.policy, check.content)
        except ClassifierError as exc:
            return exc
        except Exception as exc:  # a bug or an unforeseen answer must still follow the fail mode
            log.exception("classifier call failed unexpectedly")
            return ClassifierError(f"unexpected failure: {type(exc).__name__}: {exc}", kind="internal")


def to_outcome(phase: Phase, check: Check, result: Classification | ClassifierError) -> CheckOutcome:
    policy = check.policy
    if isinstance(result, ClassifierError):
        return CheckFailure(policy.id, policy.digest, phase, result.kind, result.message, subject=check.subject)
    answer = result.answer
    return Verdict(
        policy_id=policy.id, policy_digest=policy.digest, phase=phase, violation=answer.violation,
        severity=answer.severity, label=answer.label, rationale=answer.rationale, reasoning=result.reasoning,
        latency_ms=result.latency_ms, raw=result.raw, subject=check.subject, cached=result.cached,
    )
