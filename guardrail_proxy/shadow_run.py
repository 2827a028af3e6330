"""Running shadow calls (shadow.py) beside the enforced checks, in the background and never on a reply's path.

The checker (pipeline.py) hands over a phase's calls once their enforced answers are in, and goes on with the
decision: starting a shadow call is a task created, never awaited. Each call goes to the route's classifier
client itself, beneath the verdict cache: a candidate's answers neither come from nor crowd out the enforced
answers kept there, and a bundle holding the candidate has its own digest anyway.

A shadow call must not take classifier capacity from enforced calls. It never holds one of the classifier's
slots (classify with slot=False), so an enforced call never waits for it or is refused because of it; and it
starts only when, at that moment, the enforced calls in flight plus the candidate calls running leave a reserve
of slots free (shadow.room_for_shadow), within a cap on candidate calls per classifier across entries and
routes, and within its entry's `max_in_flight`. A call that cannot start is dropped and counted
(guardrail_shadow_dropped_total, reason `busy` or `bound`), never queued. A text the candidate was already
asked in this process is not asked again (`Asked`): a conversation resends its history every turn, and a
repeated row would count twice in the agreement. A candidate that fails (a timeout, an unparseable answer)
gives a row with result "error"; nothing else changes.

When a generation closes, its shadow calls get `grace_s` to finish (the classifier's own deadline after a
reload; a short one at shutdown, see `hurry`), then are cancelled and counted (reason shutdown).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .audit_writer import AuditWriter
from .classifier import Classification, RetryingClassifier
from .config import RouteConfig
from .decisions import CheckOutcome, Phase
from .errors import ClassifierError
from .metrics import Metrics
from .pipeline import Call, Check, member_results, settled, to_outcome
from .policies import Policy
from .shadow import Shadow, ShadowCall, agreement_name, plan, room_for_shadow, shadow_row

log = logging.getLogger("guardrail_proxy.shadow")
SHUTDOWN_GRACE_S = 1.0  # at process shutdown: how long running shadow calls may still take
ASKED_MAX = 20_000  # (candidate, text) pairs remembered as asked: 32-byte keys, about 2 MB at most
K = TypeVar("K")


@dataclass(frozen=True)
class ShadowOutput:
    """Where finished rows and drops go: the audit writer's queue (nothing waits for it) and the metrics."""

    audit: AuditWriter
    metrics: Metrics

    def row(self, row: dict[str, Any]) -> None:
        """Queue a row; counted by agreement only once queued (the writer counts a row it drops)."""
        if self.audit.submit_shadow(row):
            self.metrics.inc("guardrail_shadow_checks_total", route=row["route"], policy=row["policy"],
                             agreement=agreement_name(row["agree"]))

    def dropped(self, route: str, policy: str, reason: str) -> None:
        self.metrics.inc("guardrail_shadow_dropped_total", route=route, policy=policy, reason=reason)


class Asked:
    """The (what was sent, text) pairs candidates were asked in this process, as hashes, the newest `limit`
    kept. Outlives a reload (served.py), like the verdict cache: the key holds the candidate's digest."""

    def __init__(self, limit: int = ASKED_MAX) -> None:
        self.limit = limit
        self.keys: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def key(policy: Policy, content: str) -> bytes:
        return hashlib.sha256(f"{policy.digest}\0{content}".encode("utf-8", "backslashreplace")).digest()

    def __contains__(self, key: bytes) -> bool:
        if key in self.keys:
            self.keys.move_to_end(key)
            return True
        return False

    def add(self, key: bytes) -> None:
        self.keys[key] = None
        if len(self.keys) > self.limit:
            self.keys.popitem(last=False)

    def forget(self, key: bytes) -> None:
        self.keys.pop(key, None)


def candidate_outcome(call: ShadowCall, phase: Phase, result: Classification | ClassifierError) -> CheckOutcome:
    """The candidate's own verdict, read as the checker reads an enforced one (pipeline.member_results, then
    to_outcome): from a bundle, the candidate's line."""
    candidate = call.shadow.candidate
    members = call.policy.members if call.policy.format == "bundle" else (call.policy,)
    try:
        mine = member_results(Call(call.policy, call.content, members), result)[(candidate.answer_key, call.content)]
    except ClassifierError as exc:
        mine = exc
    return to_outcome(phase, Check(candidate, call.content, 0), mine)


def release(counts: dict[K, int], key: K) -> None:
    """One call fewer under `key`; a count that reaches 0 is removed."""
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class ShadowRunner:
    """One config generation's shadow calls. `classifiers` are the clients beneath the verdict cache."""

    def __init__(self, shadows: Mapping[str, tuple[Shadow, ...]], classifiers: Mapping[str, RetryingClassifier],
                 policies: Mapping[str, Policy], output: ShadowOutput, grace_s: float,
                 asked: Asked | None = None) -> None:
        self.shadows = shadows
        self.classifiers = classifiers
        self.policies = policies
        self.output = output
        self.grace_s = grace_s
        self.asked = asked if asked is not None else Asked()
        self.in_flight: dict[tuple[str, str], int] = {}  # (route, policy) -> calls started, not finished
        self.running: dict[str, int] = {}  # classifier -> candidate calls started, not finished
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.deadline: asyncio.TimerHandle | None = None  # hurry's: cancels what still runs

    def wants(self, route: str) -> bool:
        return bool(self.shadows.get(route))

    def start(self, request_id: str, route: RouteConfig, phase: Phase,
              calls: Sequence[tuple[str, tuple[Policy, ...]]], judged: Sequence[tuple[str, CheckOutcome]],
              bundle_of: Callable[[tuple[Policy, ...]], Policy]) -> None:
        """Start the candidate calls mirroring a phase's enforced calls, newest text first; returns at once."""
        planned = plan(self.shadows.get(route.name, ()), request_id, calls, judged, bundle_of)
        if not planned:
            return
        name = route.classifier
        classifier = self.classifiers[name]
        loop, now = asyncio.get_running_loop(), time.time()
        for call in planned:
            asked = Asked.key(call.policy, call.content)
            if asked in self.asked:
                continue  # the candidate judged this text already: history resent with a new turn
            key = (route.name, call.shadow.policy_id)
            reason = self.refusal(call, key, name, classifier)
            if reason is not None:
                self.output.dropped(route.name, call.shadow.policy_id, reason)
                continue
            self.asked.add(asked)
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
            self.running[name] = self.running.get(name, 0) + 1
            task = loop.create_task(self._run(call, classifier, request_id, route.name, phase, now),
                                    name=f"shadow {route.name}/{call.shadow.policy_id}")
            self.tasks.add(task)
            # Bookkeeping in a callback, not in the task: it also runs for a task cancelled before its first step.
            task.add_done_callback(functools.partial(self._ended, key, name, asked))

    def refusal(self, call: ShadowCall, key: tuple[str, str], name: str, classifier: RetryingClassifier
                ) -> str | None:
        """Why this call may not start now (a drop reason), or None."""
        if self.closed:
            return "shutdown"
        if self.in_flight.get(key, 0) >= call.shadow.max_in_flight:
            return "bound"
        if not room_for_shadow(classifier.spare(), self.running.get(name, 0), classifier.cfg.max_concurrency):
            return "busy"
        return None

    def _ended(self, key: tuple[str, str], name: str, asked: bytes, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        release(self.in_flight, key)
        release(self.running, name)
        if task.cancelled():
            self.asked.forget(asked)  # never answered: a later turn may ask it
            self.output.dropped(key[0], key[1], "shutdown")

    async def _run(self, call: ShadowCall, classifier: RetryingClassifier, request_id: str, route: str,
                   phase: Phase, ts: float) -> None:
        try:
            started = time.perf_counter()
            result = await settled(classifier.classify(call.policy, call.content, slot=False))
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.output.row(shadow_row(call, request_id, route, phase, self.policies.get(call.shadow.policy_id),
                                       candidate_outcome(call, phase, result), ts, elapsed_ms))
        except Exception:  # a fault of our own: a shadow call never takes anything else down with it
            log.exception("shadow call failed unexpectedly")

    def hurry(self, grace_s: float) -> None:
        """The process is shutting down: running calls get at most `grace_s` more, even when a close (after a
        reload) is already waiting for them with the longer grace."""
        self.grace_s = min(self.grace_s, grace_s)
        if self.tasks and self.deadline is None:
            self.deadline = asyncio.get_running_loop().call_later(self.grace_s, self.cancel)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def close(self) -> None:
        """No new calls; running ones get `grace_s`, then are cancelled (counted as dropped)."""
        self.closed = True
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=self.grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.deadline is not None:
            self.deadline.cancel()
