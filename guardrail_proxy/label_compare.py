"""How two verdicts' labels are compared: by label code when both sides use the same codes, else by decision
(violation against pass). Pure. Replay (replay.py) and shadow policies (shadow.py) use this one rule, so an
agreement figure means the same thing wherever it is shown.

A label is read as a dataset reads it (dataset_rows.parse_label): a code such as "TV2", or "1" / "0".
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from .dataset_rows import RowError, parse_label

BY_LABEL = "label"
BY_DECISION = "decision"


@dataclass(frozen=True)
class Basis:
    """How verdicts are compared: by label code (both sides use the same codes) or by decision, and why."""

    by: str  # BY_LABEL or BY_DECISION
    reason: str


def readable_label(label: Any) -> str | None:
    """A label as a dataset reads it ("true" -> "1", "TV2"); None when it reads as no label."""
    if label is None:
        return None
    try:
        return parse_label(label).code
    except RowError:
        return None


def comparable_label(label: Any, violation: bool) -> str:
    """The label a verdict is compared and written by: its code (or 0/1) when that reads as a label agreeing
    with the verdict, else the decision, "1" or "0"."""
    code = readable_label(label)
    if code is not None and parse_label(code).violation == violation:
        return code
    return "1" if violation else "0"


def basis_for(enforced_labels: Iterable[str], candidate_codes: Collection[str]) -> Basis:
    """By label when the candidate answers in codes (`candidate_codes`, empty for a binary or JSON policy) and
    every enforced label is one of them; else by decision, with the reason."""
    if not candidate_codes:
        return Basis(BY_DECISION, "the candidate answers without label codes")
    foreign = sorted(set(enforced_labels) - set(candidate_codes))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        return Basis(BY_DECISION, f"enforced labels that are not the candidate's codes: {shown}")
    return Basis(BY_LABEL, "both sides use the candidate's codes")


def violation_of(label: str) -> bool:
    return parse_label(label).violation


def same(basis: Basis, one: str, other: str) -> bool:
    """Whether two comparable labels agree on the basis."""
    return one == other if basis.by == BY_LABEL else violation_of(one) == violation_of(other)
