"""Shadow policies: a candidate version of an enforced policy, judged beside it on live traffic. Pure.

A route names a candidate for one of its policies (config.ShadowPolicy) and a sample rate. Whether a request is
in the sample is decided once, from its id and the policy (`sampled`), so its input and output checks are both
shadowed or neither is. For a sampled request, every classifier call the enforced policy made in a phase is made
again with the candidate in its place (`plan`, newest text first): the same text, and with `combine_policies` the
same bundle with the candidate where the enforced policy was, so the candidate is judged as it would be once
promoted. The unit of pairing is one call: one text, the enforced verdict on it, the candidate's verdict on it
(`shadow_row`).

A candidate call never holds one of the classifier's slots (classifier.RetryingClassifier.classify, slot=False),
so it never makes an enforced call wait; it starts only while the enforced calls leave room for it
(`room_for_shadow`).

Labels are the ones metrics.label_of gives (a label the policy defines, else the verdict as "1" / "0"; a JSON
policy's category is the classifier's free text, so it is never a label). Agreement follows replay's rule
(label_compare.py): by label when the candidate answers in codes and the enforced label is one of them, else by
decision; the row's `detail` says which. `agree` is 1 or 0 when both verdicts exist and None when either check
failed. The rows go to the `shadow_checks` table (audit_schema.py), never to `checks`, so a candidate's verdict
never counts as a decision. Running the calls is shadow_run.py's job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .audit_rows import SHADOW_KIND
from .decisions import CheckFailure, CheckOutcome, Verdict
from .label_compare import Basis, basis_for, same
from .metrics import label_of
from .policies import Policy

Agreement = Literal["agree", "disagree", "error"]


@dataclass(frozen=True)
class Shadow:
    """One loaded shadow entry of a route: the enforced policy's id and the candidate that shadows it."""

    route: str
    policy_id: str
    candidate: Policy
    sample: float
    max_in_flight: int


@dataclass(frozen=True)
class ShadowCall:
    """One candidate call: what is sent (the candidate, or a bundle holding it), on which text, and the
    enforced verdicts on that text (one per subject that carried it)."""

    shadow: Shadow
    policy: Policy
    content: str
    enforced: tuple[CheckOutcome, ...]

    @property
    def subjects(self) -> str:
        return ",".join(str(s) for s in sorted({o.subject for o in self.enforced}))


def sampled(request_id: str, policy_id: str, sample: float) -> bool:
    """Whether this request's checks of this policy are shadowed: a fixed point in [0, 1) per (request, policy),
    below the sample rate. The same answer for every phase of the request; 0 never, 1 always."""
    digest = hashlib.sha256(f"{request_id}|{policy_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < sample


def plan(shadows: Sequence[Shadow], request_id: str, calls: Sequence[tuple[str, tuple[Policy, ...]]],
         judged: Sequence[tuple[str, CheckOutcome]], bundle_of: Callable[[tuple[Policy, ...]], Policy]
         ) -> list[ShadowCall]:
    """The candidate calls that mirror a phase's enforced `calls` ((text, policies it judged) each, oldest text
    first) for the shadows this request is sampled into, newest text first (so a bound spends its room on the
    new message, not on history); `judged` holds each enforced check's (text, outcome). One pass over each."""
    picked = [s for s in shadows if sampled(request_id, s.policy_id, s.sample)]
    if not picked:
        return []
    outcomes: dict[tuple[str, str], list[CheckOutcome]] = {}
    for text, outcome in judged:
        outcomes.setdefault((text, outcome.policy_id), []).append(outcome)
    planned = []
    for content, members in reversed(calls):
        ids = {m.id for m in members}
        for shadow in picked:
            if shadow.policy_id not in ids:
                continue
            swapped = tuple(shadow.candidate if m.id == shadow.policy_id else m for m in members)
            planned.append(ShadowCall(shadow, swapped[0] if len(swapped) == 1 else bundle_of(swapped), content,
                                      tuple(outcomes.get((content, shadow.policy_id), ()))))
    return planned


def reserve_of(max_concurrency: int) -> int:
    """Classifier slots kept free for enforced calls: a quarter of them, at least one."""
    return max(1, max_concurrency // 4)


def shadow_cap(max_concurrency: int) -> int:
    """Candidate calls one classifier may have running in total, across shadow entries and routes."""
    return max(1, max_concurrency - reserve_of(max_concurrency))


def room_for_shadow(spare: int, running: int, max_concurrency: int) -> bool:
    """Whether a candidate call may start now: the enforced calls in flight (max_concurrency - spare; none may
    be waiting, else spare is 0) plus the candidate calls running leave the reserve free, and the classifier's
    cap on candidate calls is not reached."""
    active = max_concurrency - spare
    return (spare > 0 and running < shadow_cap(max_concurrency)
            and active + running <= max_concurrency - reserve_of(max_concurrency))


def verdict_label(outcome: CheckOutcome | None, policy: Policy | None) -> str | None:
    """A verdict's label as the metrics give it (metrics.label_of); None for a failed or missing check."""
    if not isinstance(outcome, Verdict):
        return None
    return label_of(outcome, {policy.id: policy} if policy is not None else {})


def agreement(enforced: str | None, candidate: str | None, candidate_codes: Sequence[str]
              ) -> tuple[int | None, Basis | None]:
    """(1 same, 0 different, None when either check failed; the basis compared on), by replay's rule."""
    if enforced is None or candidate is None:
        return None, None
    basis = basis_for([enforced], candidate_codes)
    return int(same(basis, enforced, candidate)), basis


def agreement_name(agree: int | None) -> Agreement:
    return "error" if agree is None else "agree" if agree else "disagree"


def result_of(outcome: CheckOutcome | None) -> str | None:
    if outcome is None:
        return None
    return "error" if isinstance(outcome, CheckFailure) else "violation" if outcome.violation else "pass"


def shadow_row(call: ShadowCall, request_id: str, route: str, phase: str, enforced_policy: Policy | None,
               candidate: CheckOutcome, ts: float, elapsed_ms: float) -> dict[str, Any]:
    """The `shadow_checks` row of one candidate call (its `detail` as a mapping; the stores serialise it).
    `candidate` is the candidate's own verdict (shadow_run.candidate_outcome); `elapsed_ms` the call's time,
    kept for a failed one."""
    policy = call.shadow.candidate
    first = call.enforced[0] if call.enforced else None
    enforced_label, label = verdict_label(first, enforced_policy), verdict_label(candidate, policy)
    agree, basis = agreement(enforced_label, label, tuple(policy.labels))
    detail: dict[str, Any] = {"candidate": policy.source, "combined": call.policy.format == "bundle",
                              "enforced_cached": isinstance(first, Verdict) and first.cached,
                              "basis": None if basis is None else {"by": basis.by, "reason": basis.reason}}
    if isinstance(candidate, Verdict):
        severity, kind, latency = candidate.severity, None, round(candidate.latency_ms, 2)
        detail.update(reasoning=candidate.reasoning, rationale=candidate.rationale, answer=candidate.raw)
    else:
        severity, kind, latency = None, candidate.kind, round(elapsed_ms, 2)
        detail.update(reasoning=None, rationale=None, answer=None, error=candidate.message)
    return {
        "kind": SHADOW_KIND, "request_id": request_id, "ts": round(ts, 3), "route": route, "phase": phase,
        "policy": call.shadow.policy_id, "subject": call.subjects,
        "enforced_digest": first.policy_digest if first is not None else None, "candidate_digest": policy.digest,
        "enforced_result": result_of(first), "enforced_label": enforced_label, "result": result_of(candidate),
        "label": label, "severity": severity, "agree": agree, "error_kind": kind, "latency_ms": latency,
        "detail": detail,
    }
