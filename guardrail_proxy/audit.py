"""One structured audit record per request: every verdict with its policy digest and the classifier's
reasoning, every failed check, and what the proxy did. Records go to a JSONL file or to the log stream.

Reasoning is kept here for audit and is never sent to the end user unless the route says so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .decisions import CheckFailure, Decision, Verdict
from .responses import shown_decision


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
            "phases": [phase_json(d) for d in self.decisions],
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


class AuditSink:
    def __init__(self, path: str | None) -> None:
        self.logger = logging.getLogger("guardrail_proxy.audit")
        self.file: TextIO | None = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115  # closed in close()

    def write(self, record: AuditRecord) -> None:
        line = json.dumps(record.to_json(), ensure_ascii=False)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        else:
            self.logger.info(line)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
