"""Results -> numbers. Pure.

Binary metrics treat "violation" as the positive class, or "violation at level >= k" with a severity
threshold k (results.outcome_of). Classifier errors are counted apart and left out
of every metric: an error is not a prediction, and scoring it as either class would hide an outage
behind a plausible precision. A ratio with a zero denominator is None ("n/a"), never a made-up 0 or 1.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .results import ItemResult, outcome_of

CODE = re.compile(r"([A-Za-z]*)([0-9]+)")


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    errors: int = 0

    @property
    def scored(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


@dataclass(frozen=True)
class Metrics:
    counts: Counts
    precision: float | None
    recall: float | None
    f1: float | None
    accuracy: float | None


@dataclass(frozen=True)
class Latency:
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reported: int  # answers whose endpoint reported usage; 0 means the totals mean nothing


@dataclass(frozen=True)
class Confusion:
    """counts[expected][predicted]; rows are expected labels, columns predicted labels."""

    labels: tuple[str, ...]
    counts: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Group:
    """The metrics of the items sharing one category, role or expected label."""

    name: str
    items: int
    metrics: Metrics


@dataclass(frozen=True)
class Breakdowns:
    by_category: tuple[Group, ...]  # an item with several categories counts in each; empty: the set has none
    by_role: tuple[Group, ...]
    by_label: tuple[Group, ...]  # by expected label: per severity level when the set uses codes


@dataclass(frozen=True)
class Summary:
    items: int
    metrics: Metrics
    confusion: Confusion | None
    latency: Latency
    usage: Usage
    cache_hits: int
    cache_misses: int
    errors_by_kind: dict[str, int]
    breakdowns: Breakdowns
    threshold: int = 1


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def metrics_of(counts: Counts) -> Metrics:
    precision = ratio(counts.tp, counts.tp + counts.fp)
    recall = ratio(counts.tp, counts.tp + counts.fn)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(counts, precision, recall, f1, ratio(counts.tp + counts.tn, counts.scored))


def count(results: Iterable[ItemResult], threshold: int = 1) -> Counts:
    tally = Counter(outcome_of(r, threshold) for r in results)
    return Counts(tally["tp"], tally["fp"], tally["fn"], tally["tn"], tally["error"])


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_of(results: Sequence[ItemResult]) -> Latency:
    values = [r.prediction.latency_ms for r in results if r.prediction]
    return Latency(percentile(values, 50), percentile(values, 90), percentile(values, 99))


def usage_of(results: Sequence[ItemResult]) -> Usage:
    reported = [r.prediction for r in results
                if r.prediction and (r.prediction.prompt_tokens, r.prediction.completion_tokens) != (None, None)]
    return Usage(sum(p.prompt_tokens or 0 for p in reported), sum(p.completion_tokens or 0 for p in reported),
                 len(reported))


def label_sort_key(label: str) -> tuple[str, int, str]:
    match = CODE.fullmatch(label)
    return (match.group(1), int(match.group(2)), "") if match else ("~", 0, label)


def confusion_of(results: Sequence[ItemResult], label_order: Sequence[str] = ()) -> Confusion | None:
    """Expected code x predicted label, over scored items; None unless the dataset uses label codes."""
    scored = [r for r in results if r.prediction]
    if not any(r.example.level is not None for r in results):
        return None
    pairs = Counter((r.example.label, r.prediction.label) for r in scored if r.prediction)
    seen = {label for pair in pairs for label in pair} | {r.example.label for r in results}
    labels = [*label_order, *sorted(seen - set(label_order), key=label_sort_key)]
    counts = {expected: {predicted: pairs[(expected, predicted)] for predicted in labels} for expected in labels}
    return Confusion(tuple(labels), counts)


def groups(results: Sequence[ItemResult], keys_of: Callable[[ItemResult], Iterable[str]], threshold: int,
           order: Callable[[str], Any] = str) -> tuple[Group, ...]:
    members: dict[str, list[ItemResult]] = defaultdict(list)
    for result in results:
        for key in keys_of(result):
            members[key].append(result)
    return tuple(Group(key, len(members[key]), metrics_of(count(members[key], threshold)))
                 for key in sorted(members, key=order))


def breakdowns_of(results: Sequence[ItemResult], threshold: int = 1) -> Breakdowns:
    return Breakdowns(
        by_category=groups(results, lambda r: r.example.categories, threshold),
        by_role=groups(results, lambda r: (r.example.role,), threshold),
        by_label=groups(results, lambda r: (r.example.label,), threshold, label_sort_key),
    )


def summarize(results: Sequence[ItemResult], label_order: Sequence[str] = (), threshold: int = 1) -> Summary:
    hits = sum(1 for r in results if r.cached)
    return Summary(
        items=len(results),
        metrics=metrics_of(count(results, threshold)),
        confusion=confusion_of(results, label_order),
        latency=latency_of(results),
        usage=usage_of(results),
        cache_hits=hits,
        cache_misses=len(results) - hits,
        errors_by_kind=dict(sorted(Counter(r.failure.kind for r in results if r.failure).items())),
        breakdowns=breakdowns_of(results, threshold),
        threshold=threshold,
    )
