"""Audit data for the console's tests and screenshots: records shaped as the proxy writes them (audit.py's
to_json), reviewers' marks through audit_reviews, and shadow rows inserted as `shadow_checks` rows.

`Seeded` opens either store (SQLite file or a PostgreSQL database) through the real store classes, so the
console reads exactly what the proxy's writer would have committed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from guardrail_proxy.audit_postgres import PostgresStore
from guardrail_proxy.audit_postgres import connect as postgres_connect
from guardrail_proxy.audit_query import SHADOW_COLUMNS as COLUMNS
from guardrail_proxy.audit_reviews import make_review, run_add
from guardrail_proxy.audit_sqlite import SqliteStore
from guardrail_proxy.audit_sqlite import connect as sqlite_connect

VIOLENCE_TEXT = "# Violence\nAnswer with exactly one code: TV0, TV1, TV2 or TV3.\n"
CANDIDATE_TEXT = "# Violence, edited\nFiction and history are TV0 unless they instruct. Answer TV0..TV3.\n"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


VIOLENCE = digest(VIOLENCE_TEXT)
CANDIDATE = digest(CANDIDATE_TEXT)
SHADOW_COLUMNS = ("request_id", *COLUMNS)  # a `shadow_checks` row as shadow() builds it


def check(policy: str = "violence", result: str = "pass", label: str | None = "TV0", *, action: str | None = None,
          severity: int = 0, reasoning: str = "Nothing violent here.", policy_digest: str = VIOLENCE,
          error_kind: str | None = None) -> dict[str, Any]:
    if result == "error":
        return {"policy": policy, "policy_digest": policy_digest, "subject": "message 0", "result": "error",
                "error_kind": error_kind or "timeout", "error": "the classifier did not answer in 20 s"}
    return {"policy": policy, "policy_digest": policy_digest, "subject": "message 0", "result": result,
            "label": label, "severity": severity, "action": action, "latency_ms": 412.5, "cached": False,
            "rationale": None, "reasoning": reasoning, "answer": label}


def record(request_id: str, ts: float, *, route: str = "main", decision: str = "allow", status: int = 200,
           inputs: list[dict[str, Any]] | None = None, outputs: list[dict[str, Any]] | None = None,
           content: dict[str, Any] | None = None, unchecked: bool = False, client: str | None = None,
           error: str | None = None) -> dict[str, Any]:
    phases = []
    if inputs is not None:
        phases.append({"phase": "input", "outcome": decision, "unchecked": unchecked, "checks": inputs})
    if outputs is not None:
        phases.append({"phase": "output", "outcome": decision, "unchecked": False, "checks": outputs})
    return {"ts": ts, "request_id": request_id, "route": route, "model": "test-model", "stream": False,
            "decision": decision, "status": status, "error": error, "upstream_called": status == 200,
            "upstream_cancelled": False, "duration_ms": 512.0, "client": client, "unchecked": unchecked,
            "phases": phases, "content": content}


def content(text: str, reply: str | None = None) -> dict[str, Any]:
    return {"input": text, "input_role": "user", "context": [{"role": "assistant", "content": "How can I help?"}],
            "output": reply}


def shadow(request_id: str, ts: float, *, enforced: str = "TV2", label: str = "TV0", agree: bool | None = False,
           phase: str = "input", policy: str = "violence", reasoning: str = "The edit allows fiction.",
           result: str | None = None) -> dict[str, Any]:
    return {"request_id": request_id, "ts": ts, "route": "main", "phase": phase, "policy": policy,
            "subject": "message 0", "enforced_digest": VIOLENCE, "candidate_digest": CANDIDATE,
            "enforced_result": "violation" if enforced != "TV0" else "pass", "enforced_label": enforced,
            "result": result or ("violation" if label != "TV0" else "pass"), "label": label,
            "severity": int(label[-1]) if label else None, "agree": None if agree is None else int(agree),
            "error_kind": None, "latency_ms": 380.0,
            "detail": json.dumps({"reasoning": reasoning, "rationale": "", "answer": label,
                                  "candidate": "policies/violence-v2.md"})}


@dataclass
class Seeded:
    """One audit database, written through the real store classes; `db` is a console-style connection."""

    kind: str
    where: str  # the SQLite path or the PostgreSQL DSN
    db: Any = field(init=False)

    def __post_init__(self) -> None:
        store = SqliteStore(self.where) if self.kind == "sqlite" else PostgresStore(self.where)
        store.open()
        store.put_policies([(VIOLENCE, "violence", VIOLENCE_TEXT), (CANDIDATE, "violence", CANDIDATE_TEXT)])
        store.close()
        self.db = sqlite_connect(self.where) if self.kind == "sqlite" else postgres_connect(self.where)

    def records(self, *records: dict[str, Any]) -> None:
        store = SqliteStore(self.where) if self.kind == "sqlite" else PostgresStore(self.where)
        store.open()
        store.write(list(records))
        store.close()

    def mark(self, request_id: str, ts: float, *, phase: str = "input", policy: str = "violence",
             verdict: str | None = "TV2", correct: bool = False, label: str | None = "TV0", note: str = "",
             reviewer: str = "Ana") -> None:
        run_add(self.db, make_review(request_id=request_id, phase=phase, policy=policy, verdict_label=verdict,
                                     correct=correct, label=label, note=note, reviewer=reviewer, ts=ts))

    def shadows(self, *rows: dict[str, Any]) -> None:
        marks = ", ".join("?" for _ in SHADOW_COLUMNS)
        for row in rows:
            self.db.execute(f"INSERT INTO shadow_checks ({', '.join(SHADOW_COLUMNS)}) VALUES ({marks})",
                            [row[c] for c in SHADOW_COLUMNS])

    def close(self) -> None:
        self.db.close()
