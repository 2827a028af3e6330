"""Two runs of one dataset under two policy versions -> what the edit changed. Pure.

A flip is an item whose verdict (violation / allowed / error) differs between the versions. Severity
changes inside "violation" (DR2 -> DR3) are not flips: the route's action may differ, but the question an
editor asks first is "what did my edit let through or start blocking".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..dataset_rows import Example
from .results import ItemResult
from .scoring import Metrics, Summary

Effect = Literal["fixed", "broke", "changed"]
METRICS = ("precision", "recall", "f1", "accuracy")


@dataclass(frozen=True)
class Flip:
    example: Example
    old: str  # verdict, with the label when there is one: "violation DR2", "allowed DR0", "error"
    new: str
    effect: Effect


@dataclass(frozen=True)
class MetricDelta:
    name: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


@dataclass(frozen=True)
class Comparison:
    old: Summary
    new: Summary
    deltas: tuple[MetricDelta, ...]
    flips: tuple[Flip, ...]


def shown(result: ItemResult) -> str:
    if result.prediction is None:
        return "error"
    return f"{result.verdict} {result.prediction.label}"


def is_right(result: ItemResult) -> bool | None:
    if result.prediction is None:
        return None
    return result.prediction.violation == result.example.violation


def effect_of(old: ItemResult, new: ItemResult) -> Effect:
    before, after = is_right(old), is_right(new)
    if before is None or after is None:
        return "changed"  # to or from an error, where right and wrong do not apply
    if after and not before:
        return "fixed"
    if before and not after:
        return "broke"
    return "changed"


def find_flips(old: Sequence[ItemResult], new: Sequence[ItemResult]) -> list[Flip]:
    if [r.example.id for r in old] != [r.example.id for r in new]:
        raise ValueError("both runs must cover the same examples in the same order")
    return [Flip(o.example, shown(o), shown(n), effect_of(o, n))
            for o, n in zip(old, new, strict=True) if o.verdict != n.verdict]


def metric_deltas(old: Metrics, new: Metrics) -> tuple[MetricDelta, ...]:
    return tuple(MetricDelta(name, getattr(old, name), getattr(new, name)) for name in METRICS)


def compare(old_results: Sequence[ItemResult], new_results: Sequence[ItemResult], old: Summary,
            new: Summary) -> Comparison:
    return Comparison(old, new, metric_deltas(old.metrics, new.metrics),
                      tuple(find_flips(old_results, new_results)))
