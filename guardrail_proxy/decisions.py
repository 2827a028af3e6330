"""Verdicts, check failures and the pure rules that combine them into one decision for a phase.

A verdict is a value: the classifier answered and the answer parsed. A `CheckFailure` is also a value here
(the pipeline caught the fault) so that the fail mode is decided in one pure function, not scattered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from .config import Action, PolicyRule, RouteConfig
from .policies import Policy

Phase = Literal["input", "output"]
ACTION_STRENGTH = {Action.LOG: 1, Action.ANNOTATE: 2, Action.REWRITE: 3, Action.BLOCK: 4}
# The subject index of text that belongs to no message or choice: request fields beyond the messages, reply
# fields outside the choices. Such text cannot be rewritten in place.
OUTSIDE = -1
# Failures that say something about this request or about load, not about the classifier being down: the
# classifier refused the text, its answer was off-format (a text can provoke that), our queue to it is full,
# or the request needs too many checks. A fail-open route must not pass them unchecked.
NEVER_FAIL_OPEN = frozenset({"rejected", "unparseable", "overload", "too_many"})


class Outcome(StrEnum):
    ALLOW = "allow"
    LOG = "log"
    ANNOTATE = "annotate"
    REWRITE = "rewrite"
    BLOCK = "block"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Verdict:
    policy_id: str
    policy_digest: str
    phase: Phase
    violation: bool
    severity: int
    label: str | None
    rationale: str | None = None
    reasoning: str | None = None
    latency_ms: float = 0.0
    raw: str = ""
    subject: int = 0  # which text of the phase (e.g. which choice) this verdict covers
    cached: bool = False


@dataclass(frozen=True)
class CheckFailure:
    policy_id: str
    policy_digest: str
    phase: Phase
    kind: str
    message: str
    latency_ms: float = 0.0
    subject: int = 0


CheckOutcome = Verdict | CheckFailure


@dataclass(frozen=True)
class Triggered:
    """A violation together with what the route said to do about it."""

    verdict: Verdict
    action: Action
    refusal: str
    safe_text: str


@dataclass(frozen=True)
class Decision:
    phase: Phase
    outcome: Outcome
    outcomes: tuple[CheckOutcome, ...] = ()
    triggered: tuple[Triggered, ...] = ()
    failures: tuple[CheckFailure, ...] = field(default=())

    @property
    def unchecked(self) -> bool:
        """Fail-open pass: some check could not run and the request went on anyway."""
        return bool(self.failures) and self.outcome is not Outcome.UNAVAILABLE

    def action_of(self, verdict: Verdict) -> str | None:
        """The action a verdict of this decision triggered, if any (for summaries and audit records)."""
        return next((t.action.value for t in self.triggered if t.verdict is verdict), None)

    @property
    def blocks(self) -> bool:
        """A block, or a rewrite that would have to rewrite text outside any message or choice."""
        if self.outcome is Outcome.BLOCK:
            return True
        return self.outcome is Outcome.REWRITE and any(t.verdict.subject == OUTSIDE for t in self.triggered)

    @property
    def strongest(self) -> Triggered | None:
        """The triggered rule that set the outcome (highest action, then highest severity)."""
        if not self.triggered:
            return None
        return max(self.triggered, key=lambda t: (ACTION_STRENGTH[t.action], t.verdict.severity))


def worst(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The verdict that weighs most: a violation over a pass, then the higher severity; the first on a tie."""
    return max(verdicts, key=lambda v: (v.violation, v.severity), default=None)


def action_for(severity: int, rule: PolicyRule, policy: Policy) -> Action:
    """The route's action for a violation of this severity: its level map, its action, the policy's default."""
    return rule.levels.get(severity) or rule.action or policy.default_action


def triggered_for(verdict: Verdict, rule: PolicyRule, policy: Policy, route: RouteConfig) -> Triggered:
    return Triggered(
        verdict=verdict,
        action=action_for(verdict.severity, rule, policy),
        refusal=rule.refusal or policy.refusal or route.refusal,
        safe_text=rule.safe_text or policy.safe_text or route.refusal,
    )


def combine(phase: Phase, outcomes: list[CheckOutcome], route: RouteConfig,
            policies: dict[str, Policy]) -> Decision:
    """One decision for a phase.

    A block found by any check wins even when other checks failed (the answer is already known).
    Otherwise a failed check means UNAVAILABLE under fail_mode closed, or a pass marked unchecked under
    fail_mode open, except the NEVER_FAIL_OPEN kinds, which are UNAVAILABLE under either mode.
    Among violations the strongest action wins: block > rewrite > annotate > log.
    """
    rules = {rule.id: rule for rule in route.policies}
    failures = tuple(o for o in outcomes if isinstance(o, CheckFailure))
    triggered = tuple(
        triggered_for(o, rules[o.policy_id], policies[o.policy_id], route)
        for o in outcomes if isinstance(o, Verdict) and o.violation
    )
    strongest = max((ACTION_STRENGTH[t.action] for t in triggered), default=0)
    never_open = any(f.kind in NEVER_FAIL_OPEN for f in failures)
    if strongest == ACTION_STRENGTH[Action.BLOCK]:
        outcome = Outcome.BLOCK
    elif failures and (route.fail_mode == "closed" or never_open):
        outcome = Outcome.UNAVAILABLE
    elif triggered:
        outcome = Outcome(next(a for a, s in ACTION_STRENGTH.items() if s == strongest).value)
    else:
        outcome = Outcome.ALLOW
    return Decision(phase, outcome, tuple(outcomes), triggered, failures)
