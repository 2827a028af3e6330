"""Reviewers' marks -> a policy-lab dataset: the cases people disputed (or confirmed), labelled by them.

A mark names one policy's verdict in one phase of one request (audit_reviews.py). `phase_verdict` is the one
rule for which verdict that is when the phase holds several checks of the policy (each choice of a reply, each
window of a streamed one); the console shows it, replay compares with it. This module pairs the newest mark
with the text that verdict judged (audit_query.stored_text): the input with the stored earlier turns as
context, the reply as an assistant item with the input as context. The label is the reviewer's, so
`eval --compare old.md new.md --dataset reviewed.jsonl` scores two wordings on exactly the reviewed items. A
mark on text that was not stored gives no row: there is nothing to judge; it is counted, not hidden.

`phase_verdict`, `reviewed_rows` and `record_export` are pure; `run_*` take a DB-API connection (sqlite3, or
audit_postgres.Placeholders), like audit_query.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .audit_query import Filters, stored_text, where
from .audit_reviews import PHASES, Review, run_latest
from .audit_rows import record_of
from .dataset_rows import RowError, parse_label

Marks = Mapping[tuple[str, str, str], Review]  # (request_id, phase, policy) -> the newest mark


@dataclass(frozen=True)
class PhaseVerdict:
    """One policy's verdict in one phase of a request, made of that phase's checks of the policy."""

    result: str  # violation, pass or error
    check: Mapping[str, Any]  # the stored check that gives it (its label, severity, reasoning, digest)
    checks: int  # how many checks it was made of
    failed: int  # how many of them failed: a pass with failed > 0 judged only part of the text

    @property
    def label(self) -> str | None:
        """The label as stored (what a reviewer saw and marks); None when every check failed."""
        return None if self.result == "error" else self.check.get("label")


def phase_verdict(checks: Sequence[Mapping[str, Any]]) -> PhaseVerdict:
    """The verdict of one policy in one phase, from its stored checks (dicts with `result`, `label`, `severity`;
    at least one): the most severe violation (the first of equals), else a pass, else an error.

    A pass beside a failed check is a pass: a reviewer was shown that pass and may mark it, and a mark must
    never be dropped because a sibling check failed; `failed` says that only part of the text was judged (the
    proxy's decision on that phase then followed the route's fail mode). Only when every check failed is the
    verdict an error, with no label."""
    if not checks:
        raise ValueError("a phase verdict needs at least one check")
    violations = [c for c in checks if c.get("result") == "violation"]
    passes = [c for c in checks if c.get("result") == "pass"]
    failed = len(checks) - len(violations) - len(passes)
    if violations:
        return PhaseVerdict("violation", max(violations, key=lambda c: int(c.get("severity") or 0)), len(checks),
                            failed)
    if passes:
        return PhaseVerdict("pass", passes[0], len(checks), failed)
    return PhaseVerdict("error", checks[0], len(checks), failed)


def is_violation(label: str) -> bool:
    """Whether a reviewer's label marks a violation (GV2, 1, true); an unreadable label counts as none here and
    is reported by `eval` when it reads the file."""
    try:
        return parse_label(label).violation
    except RowError:
        return False


def item_id(request_id: str, phase: str, policy: str, one_policy: bool) -> str:
    """The row's id: the request id (`-reply` for the output), like `audit export`; with the policy appended
    when the rows may hold several policies' marks on the same text."""
    base = request_id if phase == "input" else f"{request_id}-reply"
    return base if one_policy else f"{base}-{policy}"


def by_request(marks: Marks) -> dict[str, dict[tuple[str, str, str], Review]]:
    """The marks indexed by request id, so a record's own marks are found without reading all the others."""
    found: dict[str, dict[tuple[str, str, str], Review]] = {}
    for key, review in marks.items():
        found.setdefault(key[0], {})[key] = review
    return found


def record_export(record: Mapping[str, Any], marks: Marks, policy: str | None) -> tuple[list[dict[str, Any]], int]:
    """(rows, marks skipped because their text was not stored) of one record: one dataset row per newest mark
    on it (of `policy`, or of every policy when None), input rows first, then by policy. A mark without a label
    (an error verdict marked correct) gives no row and is not counted. `marks` may be the whole store's; pass
    the record's own (`by_request`) when exporting many records."""
    request_id = record["request_id"]
    rows: list[dict[str, Any]] = []
    skipped = 0
    for phase in PHASES:
        chosen = sorted((key[2], review) for key, review in marks.items()
                        if key[0] == request_id and key[1] == phase and (policy is None or key[2] == policy)
                        and review.label)
        if not chosen:
            continue
        item = stored_text(dict(record), phase)
        if item is None:
            skipped += len(chosen)
            continue
        for name, review in chosen:
            assert review.label is not None  # chosen above
            rows.append({"id": item_id(request_id, phase, name, policy is not None), "text": item.text,
                         "label": review.label, "role": item.role, "context": list(item.context),
                         "categories": [name] if is_violation(review.label) else [],
                         "source": f"review:{record.get('route')}", "policy": name,
                         "verdict_label": review.verdict_label, "correct": review.correct,
                         "reviewer": review.reviewer, "note": review.note})
    return rows, skipped


def reviewed_rows(record: Mapping[str, Any], marks: Marks, policy: str | None) -> list[dict[str, Any]]:
    """The dataset rows of one record's newest marks (`record_export` without the count)."""
    return record_export(record, marks, policy)[0]


def reviewed_clause(filters: Filters, policy: str | None, reviewed: bool = True) -> tuple[str, list[Any]]:
    """`where(filters)` narrowed to records with at least one mark (of `policy`, when given); with `reviewed`
    False, to records with none (the console's "not reviewed" filter)."""
    clause, values = where(filters)
    inner = "v.request_id = r.request_id" + (" AND v.policy = ?" if policy is not None else "")
    exists = f"{'' if reviewed else 'NOT '}EXISTS (SELECT 1 FROM reviews v WHERE {inner})"
    return clause + (" AND " if clause else " WHERE ") + exists, [*values, *([policy] if policy is not None else [])]


def run_reviewed_policies(db: Any, filters: Filters) -> list[str]:
    """The policies with a mark on a record matching the filters (the filters' times are the records'), sorted:
    one query over `reviews`, joined to the records by their key."""
    clause, values = where(filters)
    rows = db.execute("SELECT DISTINCT v.policy FROM reviews v JOIN records r ON r.request_id = v.request_id"
                      f"{clause} ORDER BY v.policy", values).fetchall()
    return [row[0] for row in rows]


PAGE = 500


def run_reviewed_records(db: Any, filters: Filters, policy: str | None, limit: int,
                         offset: int = 0) -> list[dict[str, Any]]:
    """Up to `limit` records matching the filters that carry a mark (of `policy`), newest first, from `offset`."""
    clause, values = reviewed_clause(filters, policy)
    rows = db.execute(f"SELECT r.record FROM records r{clause} ORDER BY r.ts DESC, r.request_id LIMIT ? OFFSET ?",
                      [*values, limit, offset])
    return [record_of(row[0]) for row in rows.fetchall()]


@dataclass(frozen=True)
class ReviewedExport:
    rows: list[dict[str, Any]]
    no_text: int  # marks on the records read whose text was not stored


def run_reviewed_export(db: Any, filters: Filters, policy: str | None, limit: int) -> ReviewedExport:
    """Up to `limit` dataset rows of the reviewed records matching the filters, newest record first, and the
    count of marks skipped on the records read because their text was not stored. The newest mark counts,
    whenever it was made: the filters' times are the records' times."""
    marks = by_request(run_latest(db, policy=policy))
    found: list[dict[str, Any]] = []
    no_text = 0
    offset = 0
    while len(found) < limit:
        records = run_reviewed_records(db, filters, policy, PAGE, offset)
        for record in records:
            rows, skipped = record_export(record, marks.get(record["request_id"], {}), policy)
            found += rows
            no_text += skipped
            if len(found) >= limit:
                break
        if len(records) < PAGE:
            break
        offset += PAGE
    return ReviewedExport(found[:limit], no_text)


def run_reviewed(db: Any, filters: Filters, policy: str | None, limit: int) -> list[dict[str, Any]]:
    """The rows of `run_reviewed_export`."""
    return run_reviewed_export(db, filters, policy, limit).rows
