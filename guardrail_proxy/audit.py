"""One structured audit record per request: every verdict with its policy digest and the classifier's
reasoning, every failed check, what the proxy did, and which client key asked (by a name derived from it,
never the key). The conversation is kept only as the route's `audit_content` says. Records go to a store
through audit_writer.py.

Reasoning is kept here for audit and is never sent to the end user unless the route says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .decisions import CheckFailure, Decision, Verdict
from .responses import shown_decision


@dataclass
class Timing:
    """When things happened, in seconds from the request's arrival, for the latency metrics (not stored)."""

    arrived: float = field(default_factory=time.perf_counter)
    upstream_s: float | None = None  # a completion's upstream call, start to answer
    upstream_first_s: float | None = None  # a stream's first chunk from upstream, from the request's arrival
    first_event_s: float | None = None  # a stream's first event relayed to the client
    total_s: float | None = None

    def since_arrival(self) -> float:
        return time.perf_counter() - self.arrived


@dataclass
class AuditRecord:
    request_id: str
    route: str
    model: str
    stream: bool = False
    decisions: list[Decision] = field(default_factory=list)
    upstream_called: bool = False
    upstream_cancelled: bool = False
    status: int = 200
    error: str | None = None
    started: float = field(default_factory=time.time)
    client: str | None = None  # key_name() of the client key, when the proxy has client keys
    content: dict[str, Any] | None = None  # audit_content.py: input, context, output; per the route
    released: list[str] = field(default_factory=list)  # a stream's relayed text, kept when the route stores content
    timing: Timing = field(default_factory=Timing)

    @property
    def decision(self) -> str:
        return shown_decision(self.decisions) if self.decisions else "none"

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": round(self.started, 3),
            "request_id": self.request_id,
            "route": self.route,
            "model": self.model,
            "stream": self.stream,
            "decision": self.decision,
            "status": self.status,
            "error": self.error,
            "upstream_called": self.upstream_called,
            "upstream_cancelled": self.upstream_cancelled,
            "duration_ms": round((time.time() - self.started) * 1000, 2),
            "client": self.client,
            "unchecked": any(d.unchecked for d in self.decisions),
            "phases": [phase_json(d) for d in self.decisions],
            "content": self.content,
        }


def phase_json(decision: Decision) -> dict[str, Any]:
    return {
        "phase": decision.phase,
        "outcome": decision.outcome.value,
        "unchecked": decision.unchecked,
        "checks": [outcome_json(o, decision.action_of(o) if isinstance(o, Verdict) else None)
                   for o in decision.outcomes],
    }


def outcome_json(outcome: Verdict | CheckFailure, action: str | None) -> dict[str, Any]:
    if isinstance(outcome, CheckFailure):
        return {"policy": outcome.policy_id, "policy_digest": outcome.policy_digest, "subject": outcome.subject,
                "result": "error", "error_kind": outcome.kind, "error": outcome.message}
    return {
        "policy": outcome.policy_id, "policy_digest": outcome.policy_digest, "subject": outcome.subject,
        "result": "violation" if outcome.violation else "pass", "label": outcome.label,
        "severity": outcome.severity, "action": action, "latency_ms": round(outcome.latency_ms, 2),
        "cached": outcome.cached,
        "rationale": outcome.rationale, "reasoning": outcome.reasoning, "answer": outcome.raw,
    }
