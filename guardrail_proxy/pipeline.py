"""Run one phase's checks: one classifier call per (policy, text), all at once, none repeated.

Faults from the classifier become `CheckFailure` values here, and `decisions.combine` applies the route's
fail mode to them. No HTTP here: the caller turns the decision into a response.

Given the request's id, the checker also hands each phase's calls, once answered, to the shadow runner
(shadow_run.py), which asks a route's candidate policies the same questions in the background; the decision
never waits for them and never sees them, and a fault in starting them is logged and counted, never raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .answers import parse_bundle
from .bundles import Bundles
from .classifier import Classification, Classifier
from .config import ClassifierConfig, RouteConfig
from .decisions import CheckFailure, CheckOutcome, Decision, Outcome, Phase, Verdict, combine
from .errors import ClassifierError
from .policies import Policy
from .relayed import RelayedReplies
from .segments import split_subject
from .subjects import Subject, render

if TYPE_CHECKING:  # shadow_run.py reads answers with this module's functions: only its type is needed here
    from .shadow_run import ShadowRunner

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


@dataclass(frozen=True)
class Call:
    """One classifier call: a policy, or a bundle of several (bundles.py), and the policies it answers."""

    policy: Policy
    content: str
    members: tuple[Policy, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.policy.answer_key, self.content)


def plan_calls(checks: Sequence[Check], combine: bool,
               bundle_of: Callable[[tuple[Policy, ...]], Policy]) -> list[Call]:
    """The calls that answer `checks`: one per distinct (policy, text); with `combine`, one per distinct
    text, judging all of its policies at once (a text with only one policy is asked as usual). Pure."""
    by_text: dict[str, dict[str, Policy]] = {}
    for check in checks:
        by_text.setdefault(check.content, {}).setdefault(check.policy.answer_key, check.policy)
    calls = []
    for content, policies in by_text.items():
        members = tuple(policies.values())
        if combine and len(members) > 1:
            calls.append(Call(bundle_of(members), content, members))
        else:
            calls += [Call(policy, content, (policy,)) for policy in members]
    return calls


def member_results(call: Call, result: Classification | ClassifierError
                   ) -> dict[tuple[str, str], Classification | ClassifierError]:
    """A call's result for each policy it answers: a bundle's answer read per member (answers.parse_bundle,
    which already accepted it whole when the call was answered); its tokens are counted once, on the first
    member. Pure."""
    if call.policy.format != "bundle" or isinstance(result, ClassifierError):
        return {(m.answer_key, call.content): result for m in call.members}
    answers = parse_bundle(result.raw, call.members)
    return {(member.answer_key, call.content): replace(
                result, answer=answer, prompt_tokens=result.prompt_tokens if position == 0 else None,
                completion_tokens=result.completion_tokens if position == 0 else None)
            for position, (member, answer) in enumerate(zip(call.members, answers, strict=True))}


def answers_by_key(calls: Sequence[Call], answered: Sequence[Classification | ClassifierError]
                   ) -> dict[tuple[str, str], Classification | ClassifierError]:
    """Each check's answer (by Check.key) from the calls made for them, in plan_calls' order. Pure."""
    return {key: result for call, answer in zip(calls, answered, strict=True)
            for key, result in member_results(call, answer).items()}


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
                 capacity: dict[str, int] | None = None, relayed: RelayedReplies | None = None,
                 settings_keys: dict[str, str] | None = None, shadow: ShadowRunner | None = None) -> None:
        self.classifiers = classifiers
        self.policies = policies
        self.relayed = relayed if relayed is not None else RelayedReplies()
        # Per classifier: a digest of its settings (endpoint, model, effort, ...), so a reply one classifier judged
        # is not taken as judged by another, or by the same one after its settings changed.
        self.settings_keys = settings_keys or {}
        self.bundles = Bundles()  # combined prompts (combine_policies), built once per set of policies
        self.on_outcome = on_outcome or (lambda _o: None)
        self.max_chars = max_chars or {}
        self.capacity = capacity or {}
        self.in_flight: dict[tuple[str, str], int] = {}  # (classifier, route) -> calls started, not finished
        self.shadow = shadow

    async def check(self, phase: Phase, subjects: Sequence[Subject], route: RouteConfig,
                    request_id: str | None = None) -> Decision:
        """One phase's decision. `request_id` decides whether the route's shadow policies see this phase
        (shadow.sampled) and names their rows; without it, nothing is shadowed."""
        budget = self.max_chars.get(route.classifier, DEFAULT_MAX_CHARS)
        checks = plan_checks(phase, subjects, route, self.policies, budget, self._judged(phase, route))
        if not checks:
            return Decision(phase, Outcome.ALLOW)
        classifier = self.classifiers[route.classifier]
        calls = plan_calls(checks, route.combine_policies, self.bundles)
        # Answers already in the cache cost nothing: a long conversation resent turn after turn is not
        # refused for its history, only a request with too much new text is.
        needed = sum(1 for call in calls if not classifier.knows(call.policy, call.content))
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
            return await self._run(phase, checks, calls, classifier, route, request_id)
        self.in_flight[slot] = mine + needed
        try:
            return await self._run(phase, checks, calls, classifier, route, request_id)
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
            skip = subject.target.role == "assistant" and self.relayed.judged(subject.target.text,
                                                                              self.judge_key(route, policy))
            self.relayed.skipped += skip
            return skip
        return judged

    def judge_key(self, route: RouteConfig, policy: Policy) -> str:
        """Who judged: the policy version and the route's classifier with its settings."""
        return f"{self.settings_keys.get(route.classifier, route.classifier)}|{policy.answer_key}"

    def relayed_clean(self, route: RouteConfig, texts: Iterable[str], decisions: Sequence[Decision]) -> None:
        """After a reply's output checks all found nothing, remember its texts for the policies that judged them."""
        if route.output.enabled and decisions and clean(decisions):
            keys = [self.judge_key(route, self.policies[rule.id]) for rule in route.policies if "output" in rule.phases]
            for text in texts:
                self.relayed.remember(text, keys)

    def refuse(self, decision: Decision) -> Decision:
        for failure in decision.failures:
            self.on_outcome(failure)  # counted, like any check that could not run
        return decision

    async def _run(self, phase: Phase, checks: list[Check], calls: list[Call], classifier: Classifier,
                   route: RouteConfig, request_id: str | None) -> Decision:
        # Identical (policy, text) pairs in one request share one call (plan_calls).
        futures: list[Awaitable[Classification | ClassifierError]] = [
            asyncio.ensure_future(self._one(classifier, call.policy, call.content)) for call in calls]
        try:
            answered = await asyncio.gather(*futures)
        finally:
            for future in futures:
                if isinstance(future, asyncio.Future):
                    future.cancel()  # no-op when done; stops stragglers when we are cancelled
        results = answers_by_key(calls, answered)
        outcomes = [to_outcome(phase, c, results[c.key]) for c in checks]
        for outcome in outcomes:
            self.on_outcome(outcome)
        if self.shadow is not None and request_id is not None and self.shadow.wants(route.name):
            self.start_shadow(self.shadow, request_id, route, phase, calls, checks, outcomes)
        return combine(phase, outcomes, route, self.policies)

    def start_shadow(self, shadow: ShadowRunner, request_id: str, route: RouteConfig, phase: Phase,
                     calls: Sequence[Call], checks: Sequence[Check], outcomes: Sequence[CheckOutcome]) -> None:
        """Hand a phase's answered calls to the shadow runner. Never raises: a fault there is a bug of ours in
        work nothing waits for, so it is logged and counted (reason internal) and the decision goes on."""
        try:
            shadow.start(request_id, route, phase, [(call.content, call.members) for call in calls],
                         [(check.content, outcome) for check, outcome in zip(checks, outcomes, strict=True)],
                         self.bundles)
        except Exception:
            log.exception("shadow calls of request %s could not start; its decision is unaffected", request_id)
            shadow.output.dropped(route.name, "*", "internal")

    @staticmethod
    async def _one(classifier: Classifier, policy: Policy, content: str) -> Classification | ClassifierError:
        return await settled(classifier.classify(policy, content))


async def settled(call: Awaitable[Classification]) -> Classification | ClassifierError:
    """A classifier call's answer, or its fault as a value (an enforced check's and a shadow call's alike)."""
    try:
        return await call
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
