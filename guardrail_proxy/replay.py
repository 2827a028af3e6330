"""Replay: a candidate policy's verdicts on stored traffic against the verdicts the proxy enforced. Pure.

An item is one phase of one stored request where a check of the candidate's policy ran: its text comes from
the record's stored content (audit_query.stored_text, as `audit export` takes it) and its enforced verdict
from the record's checks by review_export.phase_verdict, the rule the console shows reviewers: the most severe
violation, else a pass (also beside a failed check: counted as `partial`), else an error (not replayed). The
proxy judged a streamed reply in windows while replay judges the stored text whole: a difference there is
not always a change of wording.

Labels are compared by one rule, shared with shadow policies (label_compare.py): `comparable_label` reads a
label code or 0/1 that agrees with its verdict, else the decision as "1"/"0" (a JSON policy's category is the
classifier's free text, never a label, as in metrics.label_of). The comparison is by label only when both sides
use the same codes: the candidate answers in codes and every enforced label is one of them; otherwise (a binary
or JSON side, or codes of another prefix) it is by decision, violation against pass, and `Comparison.basis`
says which with the reason.
Agreement is the share of items where the candidate agreed on that basis, with a Wilson 95% interval; a flip
is an item where it did not, and `decision_changed` says whether the flip crosses between violation and pass.
Where a reviewer marked the item (the newest mark, audit_reviews.py), both verdicts are scored against the
reviewer's label on the same basis, with McNemar's exact test (evaluation/significance.py) on the items where
exactly one of them is right.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .audit_query import stored_text
from .audit_reviews import PHASES, Review
from .evaluation.results import Failure, Prediction
from .evaluation.significance import Interval, McNemar, mcnemar_p

# The comparison rule lives in label_compare.py (shadow.py uses it too); its names stay importable from here.
from .label_compare import BY_DECISION as BY_DECISION
from .label_compare import BY_LABEL as BY_LABEL
from .label_compare import Basis as Basis
from .label_compare import basis_for
from .label_compare import comparable_label as comparable_label
from .label_compare import readable_label as readable_label
from .label_compare import same as same
from .label_compare import violation_of as violation_of
from .review_export import phase_verdict

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Enforced:
    """The verdict the proxy enforced on one phase for one policy."""

    result: str  # pass / violation (phases whose checks all failed are not items)
    label: str  # comparable_label of the stored label: "TV2"; "1" / "0" for a policy without codes
    reasoning: str | None
    digest: str | None
    checks: int  # how many checks (choices, stream windows) it was made of
    failed: int = 0  # how many of them failed (a pass over part of the text)

    @property
    def violation(self) -> bool:
        return self.result == "violation"


@dataclass(frozen=True)
class Item:
    request_id: str
    ts: float
    route: str
    phase: str
    text: str
    role: str
    context: tuple[dict[str, str], ...]
    enforced: Enforced
    reviewed: str | None = None  # the newest mark's label as a code or 0/1; None: no mark, or unreadable

    @property
    def key(self) -> str:
        return self.request_id if self.phase == "input" else f"{self.request_id}-reply"


@dataclass(frozen=True)
class Gathered:
    """The items of a set of records, and what could not be replayed."""

    items: tuple[Item, ...]
    records: int  # records read
    no_text: int  # phases with a check of the policy whose text was not stored
    no_text_records: int  # records with such a phase
    enforced_errors: int  # phases whose enforced checks all failed: nothing to compare with, not replayed
    partial: int = 0  # items whose enforced pass sat beside a failed check (compared as the pass)


def enforced_of(checks: Sequence[Mapping[str, Any]]) -> Enforced | None:
    """One phase's checks of one policy -> its verdict (review_export.phase_verdict); None when all failed."""
    verdict = phase_verdict(checks)
    if verdict.result == "error":
        return None
    chosen = verdict.check
    return Enforced(verdict.result, comparable_label(chosen.get("label"), verdict.result == "violation"),
                    chosen.get("reasoning"), chosen.get("policy_digest"), verdict.checks, verdict.failed)


def reviewed_label(mark: Review | None, enforced: Enforced) -> str | None:
    """The newest mark's label as replay scores it: a code or 0/1 as the reviewer gave it. A label that reads as
    neither (a JSON policy's category) is the enforced decision when the mark says the verdict was right, and
    unknown (None: not scored) when it says it was wrong."""
    if mark is None:
        return None
    found = readable_label(mark.label)
    if found is not None:
        return found
    return ("1" if enforced.violation else "0") if mark.correct else None


def record_items(record: Mapping[str, Any], policy: str, marks: Mapping[tuple[str, str, str], Review]
                 ) -> tuple[list[Item], int, int]:
    """(items, phases without stored text, phases whose enforced checks all failed) of one record."""
    items, no_text, failed = [], 0, 0
    by_phase = {p.get("phase"): [c for c in p.get("checks", ()) if c.get("policy") == policy]
                for p in record.get("phases", ())}
    for phase in PHASES:
        checks = by_phase.get(phase)
        if not checks:
            continue
        found = stored_text(dict(record), phase)
        if found is None:
            no_text += 1
            continue
        enforced = enforced_of(checks)
        if enforced is None:
            failed += 1
            continue
        mark = marks.get((record["request_id"], phase, policy))
        items.append(Item(record["request_id"], float(record["ts"]), str(record.get("route")), phase, found.text,
                          found.role, found.context, enforced, reviewed_label(mark, enforced)))
    return items, no_text, failed


def gather(records: Iterable[Mapping[str, Any]], policy: str,
           marks: Mapping[tuple[str, str, str], Review]) -> Gathered:
    items: list[Item] = []
    count = no_text = no_text_records = failed = 0
    for record in records:
        count += 1
        found, missing, errors = record_items(record, policy, marks)
        items += found
        no_text += missing
        no_text_records += bool(missing)
        failed += errors
    return Gathered(tuple(items), count, no_text, no_text_records, failed,
                    sum(1 for i in items if i.enforced.failed))


def basis_of(items: Sequence[Item], candidate_codes: Collection[str]) -> Basis:
    """By label when the candidate answers in codes (`candidate_codes`, empty for a binary or JSON policy) and
    every enforced label is one of them; else by decision, with the reason (label_compare.basis_for)."""
    return basis_for((i.enforced.label for i in items), candidate_codes)


@dataclass(frozen=True)
class Replayed:
    item: Item
    candidate: Prediction | None
    failure: Failure | None = None

    @property
    def candidate_label(self) -> str | None:
        if self.candidate is None:
            return None
        return comparable_label(self.candidate.label, self.candidate.violation)


@dataclass(frozen=True)
class Flip:
    item: Item
    candidate: Prediction

    @property
    def change(self) -> tuple[str, str]:
        return (self.item.enforced.label, comparable_label(self.candidate.label, self.candidate.violation))

    @property
    def decision_changed(self) -> bool:
        return self.item.enforced.violation != self.candidate.violation


@dataclass(frozen=True)
class Reviewers:
    items: int  # marked items both sides answered (and whose mark could be scored)
    enforced_right: int
    candidate_right: int
    mcnemar: McNemar  # fixed: the candidate right where the enforced verdict was wrong; broke: the reverse


@dataclass(frozen=True)
class Comparison:
    basis: Basis
    compared: int  # items the candidate answered
    agreed: int
    interval: Interval | None
    flips: tuple[Flip, ...]
    changes: tuple[tuple[tuple[str, str], int], ...]  # (enforced label, candidate label) -> items, most first
    decisions_changed: int
    candidate_errors: tuple[Replayed, ...]
    reviewers: Reviewers

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


def wilson(successes: int, n: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval of a proportion (sound near 0 and 1, unlike the normal one); None for n = 0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def reviewer_agreement(answered: Sequence[Replayed], basis: Basis) -> Reviewers:
    right: list[tuple[bool, bool]] = []  # (enforced right, candidate right) per scored mark
    for r in answered:
        mark, candidate = r.item.reviewed, r.candidate_label
        if mark is not None and candidate is not None:
            right.append((same(basis, mark, r.item.enforced.label), same(basis, mark, candidate)))
    fixed = sum(not old and new for old, new in right)
    broke = sum(old and not new for old, new in right)
    return Reviewers(len(right), sum(old for old, _ in right), sum(new for _, new in right),
                     McNemar(fixed, broke, mcnemar_p(fixed, broke)))


def compare(replayed: Sequence[Replayed], candidate_codes: Collection[str]) -> Comparison:
    """The candidate's answers against the enforced labels and the reviewers' marks; `candidate_codes` are the
    candidate policy's label codes (empty when it has none), which decide the basis (`basis_of`)."""
    basis = basis_of([r.item for r in replayed], candidate_codes)
    answered = [r for r in replayed if r.candidate is not None]
    flips = tuple(Flip(r.item, r.candidate) for r in answered
                  if r.candidate is not None and r.candidate_label is not None
                  and not same(basis, r.item.enforced.label, r.candidate_label))
    changes = Counter(f.change for f in flips)
    agreed = len(answered) - len(flips)
    return Comparison(basis, len(answered), agreed, wilson(agreed, len(answered)), flips,
                      tuple(sorted(changes.items(), key=lambda kv: (-kv[1], kv[0]))),
                      sum(f.decision_changed for f in flips),
                      tuple(r for r in replayed if r.candidate is None), reviewer_agreement(answered, basis))
