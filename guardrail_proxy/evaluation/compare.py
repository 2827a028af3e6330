"""Two runs of one dataset -> what changed between them: two policy versions, two models or two reasoning
efforts. Pure.

A flip is an item whose scored outcome (tp / fp / fn / tn / error, under the run's threshold) differs
between the runs, which at the default threshold is a verdict change (violation / allowed / error); each
keeps both results, so a reader sees the old and the new answer and reasoning side by side. Severity
changes on one side of the threshold (DR2 -> DR3) are not flips: the route's action may differ, but
the question an editor asks first is "what did my edit let through or start blocking". Each metric
delta carries a 95% interval and the changed items McNemar's test (significance.py), so a real
improvement can be told from noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..dataset_rows import Example
from .results import ItemResult, outcome_of
from .scoring import Metrics, Summary
from .significance import METRICS, Interval, McNemar, delta_intervals, mcnemar, pair_table

Effect = Literal["fixed", "broke", "changed"]


@dataclass(frozen=True)
class Flip:
    old: ItemResult
    new: ItemResult
    effect: Effect

    @property
    def example(self) -> Example:  # the same example on both sides
        return self.new.example


@dataclass(frozen=True)
class MetricDelta:
    name: str
    old: float | None
    new: float | None
    interval: Interval | None = None  # 95%, of new - old

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


@dataclass(frozen=True)
class Comparison:
    old: Summary
    new: Summary
    deltas: tuple[MetricDelta, ...]
    flips: tuple[Flip, ...]
    mcnemar: McNemar


def shown(result: ItemResult) -> str:
    """The verdict with its label: "violation DR2", "allowed DR0", "error"."""
    if result.prediction is None:
        return "error"
    return f"{result.verdict} {result.prediction.label}"


def is_right(result: ItemResult, threshold: int = 1) -> bool | None:
    outcome = outcome_of(result, threshold)
    return None if outcome == "error" else outcome in ("tp", "tn")


def effect_of(old: ItemResult, new: ItemResult, threshold: int = 1) -> Effect:
    before, after = is_right(old, threshold), is_right(new, threshold)
    if before is None or after is None:
        return "changed"  # to or from an error, where right and wrong do not apply
    if after and not before:
        return "fixed"
    if before and not after:
        return "broke"
    return "changed"


def check_paired(old: Sequence[ItemResult], new: Sequence[ItemResult]) -> None:
    if [r.example.id for r in old] != [r.example.id for r in new]:
        raise ValueError("both runs must cover the same examples in the same order")


def find_flips(old: Sequence[ItemResult], new: Sequence[ItemResult], threshold: int = 1) -> list[Flip]:
    check_paired(old, new)
    return [Flip(o, n, effect_of(o, n, threshold)) for o, n in zip(old, new, strict=True)
            if outcome_of(o, threshold) != outcome_of(n, threshold)]


def metric_deltas(old: Metrics, new: Metrics, intervals: dict[str, Interval | None]) -> tuple[MetricDelta, ...]:
    return tuple(MetricDelta(name, getattr(old, name), getattr(new, name), intervals.get(name)) for name in METRICS)


def compare(old_results: Sequence[ItemResult], new_results: Sequence[ItemResult], old: Summary,
            new: Summary, *, resamples: int = 2000, seed: int = 0) -> Comparison:
    check_paired(old_results, new_results)
    threshold = new.threshold
    pairs = pair_table([outcome_of(r, threshold) for r in old_results], [outcome_of(r, threshold) for r in new_results])
    intervals = delta_intervals(pairs, resamples, seed)
    return Comparison(old, new, metric_deltas(old.metrics, new.metrics, intervals),
                      tuple(find_flips(old_results, new_results, threshold)), mcnemar(pairs))
