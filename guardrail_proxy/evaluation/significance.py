"""Is a compare's difference real or noise? Paired statistics over the items both runs scored. Pure.

- McNemar's exact test on the items whose correctness changed: `fixed` (wrong before, right after) against
  `broke` (right before, wrong after). Under "no real difference" each changed item is a fair coin, so the
  two-sided p-value is the binomial tail of the smaller count, doubled.
- A 95% interval for each metric's delta from a paired bootstrap. Each item's pair of outcomes (tp/fp/fn/tn/
  error before and after) falls in one of 25 cells, so a resample only needs a new count per cell; the
  counts are drawn as independent Poisson variables (the Poisson bootstrap, which matches the ordinary one
  for sets of more than a few dozen items) and the cost does not grow with the set. Seeded: the same runs
  give the same interval.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .results import Outcome
from .scoring import Counts, Metrics, metrics_of

METRICS = ("precision", "recall", "f1", "accuracy")
RESAMPLES = 2000
NORMAL_ABOVE = 50.0  # Poisson mean above which the normal approximation is used (error far below rounding)

Pair = tuple[Outcome, Outcome]


@dataclass(frozen=True)
class McNemar:
    fixed: int
    broke: int
    p_value: float


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def mcnemar_p(fixed: int, broke: int) -> float:
    """Exact two-sided p-value of McNemar's test: 1.0 when nothing changed."""
    n = fixed + broke
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(fixed, broke) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def right(outcome: Outcome) -> bool | None:
    return None if outcome == "error" else outcome in ("tp", "tn")


def mcnemar(pairs: Counter[Pair]) -> McNemar:
    fixed = sum(n for (old, new), n in pairs.items() if right(old) is False and right(new) is True)
    broke = sum(n for (old, new), n in pairs.items() if right(old) is True and right(new) is False)
    return McNemar(fixed, broke, mcnemar_p(fixed, broke))


def pair_table(old: Sequence[Outcome], new: Sequence[Outcome]) -> Counter[Pair]:
    if len(old) != len(new):
        raise ValueError("both runs must cover the same items")
    return Counter(zip(old, new, strict=True))


def counts_of(cells: dict[Outcome, int]) -> Counts:
    return Counts(cells.get("tp", 0), cells.get("fp", 0), cells.get("fn", 0), cells.get("tn", 0),
                  cells.get("error", 0))


def side_metrics(pairs: dict[Pair, int]) -> tuple[Metrics, Metrics]:
    old: Counter[Outcome] = Counter()
    new: Counter[Outcome] = Counter()
    for (o, n), count in pairs.items():
        old[o] += count
        new[n] += count
    return metrics_of(counts_of(old)), metrics_of(counts_of(new))


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > NORMAL_ABOVE:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:  # Knuth: count uniforms until their product drops below e^-mean
        k += 1
        product *= rng.random()
    return k


def quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.floor(q * len(ordered))))]


def delta_intervals(pairs: Counter[Pair], resamples: int = RESAMPLES, seed: int = 0,
                    level: float = 0.95) -> dict[str, Interval | None]:
    """Percentile interval of new minus old for each metric; None where the metric is undefined too often
    (in more than a twentieth of the resamples) to say anything."""
    rng = random.Random(seed)
    cells = list(pairs.items())
    deltas: dict[str, list[float]] = {name: [] for name in METRICS}
    for _ in range(resamples):
        drawn = {pair: poisson(rng, count) for pair, count in cells}
        old, new = side_metrics(drawn)
        for name in METRICS:
            before, after = getattr(old, name), getattr(new, name)
            if before is not None and after is not None:
                deltas[name].append(after - before)
    tail = (1 - level) / 2
    result: dict[str, Interval | None] = {}
    for name, values in deltas.items():
        if len(values) < resamples * 0.95:
            result[name] = None
            continue
        values.sort()
        result[name] = Interval(quantile(values, tail), quantile(values, 1 - tail))
    return result
