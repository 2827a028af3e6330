"""Decisions as the console shows them: a filtered page of records, and one record with everything a reviewer
needs (its checks grouped per phase and policy, the policy texts, every mark, its shadow verdicts).

The SQL is audit_query's filters with review_export's "reviewed or not"; one decision is audit_query.run_show
(the record, its policy texts, marks and shadow verdicts); the verdict a mark names is review_export's
phase_verdict, so the console, the export and replay agree on it. Shaping stored JSON into typed values is pure
(`row_of`, `groups_of`, `content_of`, `detail_of_shown`); `run_*` take a DB-API connection like audit_query's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..audit_query import Filters, run_show, violations, where
from ..audit_reviews import REVIEW_COLUMNS, Review, latest, review_of
from ..audit_rows import record_of
from ..review_export import phase_verdict, reviewed_clause
from .shadow import ShadowCheck, shadow_check


@dataclass(frozen=True)
class Row:
    request_id: str
    ts: float
    route: str
    model: str
    client: str | None
    decision: str
    status: int
    unchecked: bool
    violations: tuple[str, ...]
    error: str | None
    marks: tuple[Review, ...] = ()  # the newest mark per phase and policy


@dataclass(frozen=True)
class DecisionPage:
    rows: tuple[Row, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class Check:
    subject: str | None
    result: str  # pass, violation or error
    label: str | None
    severity: int | None
    action: str | None
    digest: str | None
    reasoning: str
    rationale: str
    answer: str
    error: str | None
    cached: bool
    latency_ms: float | None


@dataclass(frozen=True)
class Judged:
    """One policy's checks in one phase (a long text or a stream is judged in several pieces): what a mark names."""

    phase: str
    policy: str
    checks: tuple[Check, ...]
    verdict_label: str | None  # review_export.phase_verdict's label: None when every check failed

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.digest for c in self.checks if c.digest))


@dataclass(frozen=True)
class Content:
    input: str
    input_role: str
    context: tuple[tuple[str, str], ...]
    output: str | None


@dataclass(frozen=True)
class PolicyText:
    digest: str
    policy: str | None
    text: str | None  # None: the store has no text for this digest


@dataclass(frozen=True)
class Detail:
    row: Row
    stream: bool
    upstream_called: bool
    duration_ms: float | None
    content: Content | None
    groups: tuple[Judged, ...]
    texts: dict[str, PolicyText]
    history: tuple[Review, ...]  # oldest first
    shadows: tuple[ShadowCheck, ...]


def row_of(record: dict[str, Any], marks: tuple[Review, ...] = ()) -> Row:
    return Row(record["request_id"], float(record["ts"]), record.get("route") or "", record.get("model") or "",
               record.get("client"), record.get("decision") or "none", int(record.get("status") or 0),
               bool(record.get("unchecked")), tuple(violations(record)), record.get("error"), marks)


def check_of(check: dict[str, Any]) -> Check:
    latency = check.get("latency_ms")
    return Check(check.get("subject"), check.get("result") or "error", check.get("label"), check.get("severity"),
                 check.get("action"), check.get("policy_digest"), str(check.get("reasoning") or ""),
                 str(check.get("rationale") or ""), str(check.get("answer") or ""),
                 f"{check.get('error_kind')}: {check.get('error')}" if check.get("result") == "error" else None,
                 bool(check.get("cached")), None if latency is None else float(latency))


def groups_of(record: dict[str, Any]) -> tuple[Judged, ...]:
    """The record's checks grouped per (phase, policy), in the order they first appear, each with its verdict."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for phase in record.get("phases", ()):
        for check in phase.get("checks", ()):
            grouped.setdefault((str(phase.get("phase")), str(check.get("policy"))), []).append(check)
    return tuple(Judged(phase, policy, tuple(check_of(dict(c)) for c in checks), phase_verdict(checks).label)
                 for (phase, policy), checks in grouped.items())


def content_of(record: dict[str, Any]) -> Content | None:
    content = record.get("content")
    if not isinstance(content, dict) or not content.get("input"):
        return None
    context = tuple((str(turn.get("role")), str(turn.get("content"))) for turn in content.get("context") or ()
                    if isinstance(turn, dict))
    output = content.get("output")
    return Content(str(content["input"]), str(content.get("input_role") or "user"), context,
                   None if output is None else str(output))


def list_where(filters: Filters, reviewed: bool | None) -> tuple[str, list[Any]]:
    """audit_query's WHERE plus: some mark (of the filtered policy, when one is) exists, or none does."""
    if reviewed is None:
        return where(filters)
    return reviewed_clause(filters, filters.policy, reviewed)


def run_marks(db: Any, request_ids: list[str]) -> dict[str, tuple[Review, ...]]:
    """request_id -> its newest mark per phase and policy."""
    if not request_ids:
        return {}
    marks = ", ".join("?" for _ in request_ids)
    rows = db.execute(f"SELECT {', '.join(REVIEW_COLUMNS)} FROM reviews WHERE request_id IN ({marks})",
                      request_ids).fetchall()
    found: dict[str, list[Review]] = {}
    for review in latest([review_of(tuple(row)) for row in rows]).values():
        found.setdefault(review.request_id, []).append(review)
    return {k: tuple(sorted(v, key=lambda r: (r.phase, r.policy))) for k, v in found.items()}


def run_page(db: Any, filters: Filters, reviewed: bool | None, page: int, per_page: int) -> DecisionPage:
    clause, values = list_where(filters, reviewed)
    total = int(db.execute(f"SELECT COUNT(*) FROM records r{clause}", values).fetchone()[0])
    rows = db.execute(f"SELECT r.record FROM records r{clause} ORDER BY r.ts DESC, r.request_id LIMIT ? OFFSET ?",
                      [*values, per_page, (page - 1) * per_page]).fetchall()
    records = [record_of(row[0]) for row in rows]
    marks = run_marks(db, [r["request_id"] for r in records])
    return DecisionPage(tuple(row_of(r, marks.get(r["request_id"], ())) for r in records), total, page, per_page)


def detail_of_shown(shown: dict[str, Any]) -> Detail:
    """audit_query.run_show's answer (the record with `policies`, `reviews` and `shadow_checks`) -> a Detail."""
    texts = {digest: PolicyText(digest, found["policy"] if found else None, found["text"] if found else None)
             for digest, found in (shown.get("policies") or {}).items()}
    history = tuple(Review(**review) for review in shown.get("reviews") or ())
    newest = tuple(sorted(latest(list(history)).values(), key=lambda r: (r.phase, r.policy)))
    shadows = tuple(shadow_check(shown["request_id"], s) for s in shown.get("shadow_checks") or ())
    duration = shown.get("duration_ms")
    return Detail(row_of(shown, newest), bool(shown.get("stream")), bool(shown.get("upstream_called")),
                  None if duration is None else float(duration), content_of(shown), groups_of(shown), texts,
                  history, shadows)


def run_detail(db: Any, request_id: str) -> Detail | None:
    shown = run_show(db, request_id)
    return None if shown is None else detail_of_shown(shown)
