"""Shadow verdicts, as the console reads them from `shadow_checks` (written by the proxy's shadow checks):
a candidate policy's verdict beside the enforced one on the same text, never part of a decision.

Rows are read with audit_query's SHADOW_COLUMNS and shaped by its shadow_of, as `audit show` reads them;
`shadow_check` types one. `run_summary` counts agreement per policy and candidate version over a window,
with the label flips; `run_disagreements` lists where they differed, newest first. One request's rows come
with audit_query.run_show (queries.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..audit_query import SHADOW_COLUMNS, shadow_of

SELECT = f"SELECT request_id, {', '.join(SHADOW_COLUMNS)} FROM shadow_checks"


@dataclass(frozen=True)
class ShadowCheck:
    request_id: str
    ts: float
    route: str
    phase: str
    policy: str
    subject: str | None
    enforced_digest: str | None
    candidate_digest: str
    enforced_result: str | None
    enforced_label: str | None
    result: str  # pass, violation or error
    label: str | None
    severity: int | None
    agree: bool | None  # None when either verdict failed
    error_kind: str | None
    latency_ms: float | None
    reasoning: str
    rationale: str
    answer: str
    candidate: str  # where the candidate text came from


def detail_of(detail: Any) -> dict[str, Any]:
    """A row's `detail` (JSON text, or already parsed by shadow_of) as a dict; text that is not JSON is shown as
    unreadable rather than lost."""
    if isinstance(detail, str | bytes):
        with contextlib.suppress(ValueError):
            detail = json.loads(detail)
        if isinstance(detail, str | bytes):
            return {"reasoning": f"(unreadable detail: {str(detail)[:200]})"}
    return detail if isinstance(detail, dict) else {}


def shadow_check(request_id: str, found: Mapping[str, Any]) -> ShadowCheck:
    """One row as audit_query.shadow_of shapes it (no request id: it is the request's) -> a ShadowCheck."""
    detail = detail_of(found.get("detail"))
    latency, severity = found.get("latency_ms"), found.get("severity")
    return ShadowCheck(request_id, float(found["ts"]), found["route"], found["phase"], found["policy"],
                       found.get("subject"), found.get("enforced_digest"), found["candidate_digest"],
                       found.get("enforced_result"), found.get("enforced_label"), found["result"], found.get("label"),
                       None if severity is None else int(severity), found.get("agree"), found.get("error_kind"),
                       None if latency is None else float(latency), str(detail.get("reasoning") or ""),
                       str(detail.get("rationale") or ""), str(detail.get("answer") or ""),
                       str(detail.get("candidate") or ""))


def shadow_check_of_row(row: Any) -> ShadowCheck:
    """A row of SELECT (request_id first) -> a ShadowCheck."""
    values = tuple(row)
    return shadow_check(values[0], shadow_of(values[1:]))


@dataclass(frozen=True)
class Flip:
    enforced: str
    candidate: str
    count: int


@dataclass(frozen=True)
class Candidate:
    """One candidate version of a policy over the window."""

    policy: str
    digest: str
    checks: int
    agree: int
    disagree: int
    first_ts: float
    last_ts: float
    source: str
    flips: tuple[Flip, ...]

    @property
    def failed(self) -> int:
        return self.checks - self.agree - self.disagree

    @property
    def agreement(self) -> float | None:
        judged = self.agree + self.disagree
        return self.agree / judged if judged else None


def window_clause(since: float, until: float, policy: str | None) -> tuple[str, list[Any]]:
    clause = " WHERE ts >= ? AND ts < ?"
    values: list[Any] = [since, until]
    if policy:
        clause += " AND policy = ?"
        values.append(policy)
    return clause, values


def run_summary(db: Any, since: float, until: float, policy: str | None = None) -> list[Candidate]:
    clause, values = window_clause(since, until, policy)
    groups = db.execute(
        "SELECT policy, candidate_digest, COUNT(*), SUM(CASE WHEN agree = 1 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN agree = 0 THEN 1 ELSE 0 END), MIN(ts), MAX(ts) FROM shadow_checks"
        f"{clause} GROUP BY policy, candidate_digest ORDER BY policy, MAX(ts) DESC", values).fetchall()
    flips: dict[tuple[str, str], list[Flip]] = {}
    for pol, digest, enforced, candidate, count in db.execute(
            "SELECT policy, candidate_digest, enforced_label, label, COUNT(*) FROM shadow_checks"
            f"{clause} AND agree = 0 GROUP BY policy, candidate_digest, enforced_label, label", values).fetchall():
        flips.setdefault((pol, digest), []).append(Flip(enforced or "-", candidate or "-", int(count)))
    found = []
    for pol, digest, checks, agree, disagree, first, last in groups:
        newest = db.execute("SELECT detail FROM shadow_checks WHERE policy = ? AND candidate_digest = ? "
                            "ORDER BY ts DESC LIMIT 1", [pol, digest]).fetchone()
        source = str(detail_of(newest[0] if newest else None).get("candidate") or "")
        ordered = tuple(sorted(flips.get((pol, digest), []), key=lambda f: (-f.count, f.enforced, f.candidate)))
        found.append(Candidate(pol, digest, int(checks), int(agree or 0), int(disagree or 0), float(first),
                               float(last), source, ordered))
    return found


def run_disagreements(db: Any, since: float, until: float, policy: str | None = None,
                      limit: int = 200) -> list[ShadowCheck]:
    clause, values = window_clause(since, until, policy)
    rows = db.execute(f"{SELECT}{clause} AND agree = 0 ORDER BY ts DESC LIMIT ?", [*values, limit]).fetchall()
    return [shadow_check_of_row(row) for row in rows]
