"""Reviewers' marks on verdicts: "this verdict was right", or "it should have been label X", with a note.

A review names one policy's verdict in one phase of one request (the `reviews` table, audit_schema.py). Every
mark is kept with who made it and when; the newest mark on a (request, phase, policy) is the one that counts,
so a reviewer can change their mind and the history stays. Validation is pure (`make_review`); `run_*` take a
DB-API connection (sqlite3, or audit_postgres.Placeholders), like audit_query.py.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

PHASES = ("input", "output")
NAME = re.compile(r"[^\x00-\x1f\x7f]{1,80}")
LABEL = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
NOTE_MAX = 2000
REVIEW_COLUMNS = ("review_id", "request_id", "phase", "policy", "verdict_label", "correct", "label", "note",
                  "reviewer", "ts")


class ReviewError(ValueError):
    """A mark that cannot be stored, with the field and the reason (the console shows it, the CLI prints it)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class Review:
    review_id: str
    request_id: str
    phase: str
    policy: str
    verdict_label: str | None  # what the proxy answered, as the reviewer saw it
    correct: bool
    label: str | None  # the label it should have had; the verdict's own when correct
    note: str
    reviewer: str
    ts: float

    def row(self) -> tuple[Any, ...]:
        return (self.review_id, self.request_id, self.phase, self.policy, self.verdict_label, int(self.correct),
                self.label, self.note, self.reviewer, self.ts)


def make_review(*, request_id: str, phase: str, policy: str, verdict_label: str | None, correct: bool,
                label: str | None, note: str, reviewer: str, ts: float) -> Review:
    """A validated mark. ReviewError names the field: an unknown phase, no reviewer, a wrong verdict with no
    label to replace it, a label that is not a label."""
    reviewer = reviewer.strip()
    if not NAME.fullmatch(reviewer):
        raise ReviewError("reviewer", "give your name (1-80 printable characters)")
    if phase not in PHASES:
        raise ReviewError("phase", f"expected one of {', '.join(PHASES)}; got {phase!r}")
    if not request_id or not policy:
        raise ReviewError("request_id" if not request_id else "policy", "missing")
    label = (label or "").strip() or None
    if correct:
        label = verdict_label
    elif label is None:
        raise ReviewError("label", "a wrong verdict needs the label it should have had")
    elif not LABEL.fullmatch(label):
        raise ReviewError("label", f"not a label: {label[:60]!r}")
    elif label == verdict_label:
        raise ReviewError("label", f"{label} is the verdict's own label; mark it correct instead")
    if len(note) > NOTE_MAX:
        raise ReviewError("note", f"at most {NOTE_MAX} characters")
    return Review(uuid.uuid4().hex, request_id, phase, policy, verdict_label, correct, label, note.strip(),
                  reviewer, ts)


def run_add(db: Any, review: Review) -> None:
    marks = ", ".join("?" for _ in REVIEW_COLUMNS)
    db.execute(f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) VALUES ({marks})", list(review.row()))


def review_of(row: tuple[Any, ...]) -> Review:
    review_id, request_id, phase, policy, verdict_label, correct, label, note, reviewer, ts = row
    return Review(review_id, request_id, phase, policy, verdict_label, bool(correct), label, note or "", reviewer,
                  float(ts))


def run_history(db: Any, request_id: str) -> list[Review]:
    """Every mark on one request, oldest first."""
    rows = db.execute(f"SELECT {', '.join(REVIEW_COLUMNS)} FROM reviews WHERE request_id = ? ORDER BY ts, review_id",
                      [request_id]).fetchall()
    return [review_of(tuple(row)) for row in rows]


def latest(reviews: list[Review]) -> dict[tuple[str, str, str], Review]:
    """(request_id, phase, policy) -> the newest mark. Pure."""
    found: dict[tuple[str, str, str], Review] = {}
    for review in sorted(reviews, key=lambda r: (r.ts, r.review_id)):
        found[(review.request_id, review.phase, review.policy)] = review
    return found


def run_latest(db: Any, since: float | None = None, until: float | None = None,
               policy: str | None = None) -> dict[tuple[str, str, str], Review]:
    """The newest mark per (request, phase, policy), over marks made in [since, until), of one policy or all."""
    parts, values = [], []
    for clause, value in (("ts >= ?", since), ("ts < ?", until), ("policy = ?", policy)):
        if value is not None:
            parts.append(clause)
            values.append(value)
    where = f" WHERE {' AND '.join(parts)}" if parts else ""
    rows = db.execute(f"SELECT {', '.join(REVIEW_COLUMNS)} FROM reviews{where}", values).fetchall()
    return latest([review_of(tuple(row)) for row in rows])
