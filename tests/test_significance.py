"""McNemar's exact test and the paired bootstrap intervals, against numbers worked out by hand."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from guardrail_proxy.evaluation.significance import (
    delta_intervals,
    mcnemar,
    mcnemar_p,
    pair_table,
    poisson,
    side_metrics,
)


@pytest.mark.parametrize(("fixed", "broke", "p"), [
    (0, 0, 1.0),
    (1, 0, 1.0),  # one changed item: 2 * 1/2, capped at 1
    (5, 0, 0.0625),  # 2 * (1/2)^5
    (6, 0, 0.03125),
    (8, 2, 0.109375),  # 2 * (1 + 10 + 45) / 1024
    (2, 8, 0.109375),  # two-sided: symmetric
    (10, 10, 1.0),
])
def test_mcnemar_exact_p_value(fixed, broke, p):
    assert mcnemar_p(fixed, broke) == pytest.approx(p)


def test_mcnemar_counts_only_items_whose_correctness_changed():
    pairs = pair_table(["fp", "fn", "tp", "tp", "error", "tn"], ["tn", "tp", "fn", "tp", "tp", "fp"])
    test = mcnemar(pairs)
    assert (test.fixed, test.broke) == (2, 2)  # the error -> tp pair is neither


def test_side_metrics_rebuild_each_runs_counts():
    old, new = side_metrics(Counter({("tp", "tp"): 3, ("fn", "tp"): 2, ("tn", "fp"): 1}))
    assert (old.counts.tp, old.counts.fn, old.counts.tn) == (3, 2, 1)
    assert (new.counts.tp, new.counts.fp) == (5, 1)


def test_intervals_are_seeded_ordered_and_cover_the_observed_delta():
    pairs = pair_table(["fn"] * 30 + ["tp"] * 70 + ["tn"] * 100, ["tp"] * 30 + ["tp"] * 70 + ["tn"] * 100)
    first = delta_intervals(pairs, resamples=500, seed=1)
    assert first == delta_intervals(pairs, resamples=500, seed=1)
    recall = first["recall"]
    assert recall is not None and 0 < recall.low <= 0.3 <= recall.high and recall.excludes_zero()
    same = delta_intervals(pair_table(["tp", "tn"] * 50, ["tp", "tn"] * 50), resamples=200)
    assert same["accuracy"] is not None and (same["accuracy"].low, same["accuracy"].high) == (0.0, 0.0)


def test_an_undefined_metric_has_no_interval():
    # No predicted positive in either run: precision is undefined everywhere.
    pairs = pair_table(["tn", "fn"] * 20, ["tn", "fn"] * 20)
    assert delta_intervals(pairs, resamples=100)["precision"] is None


@pytest.mark.parametrize("mean", [0.0, 0.5, 4.0, 30.0, 400.0])
def test_poisson_draws_have_the_right_mean(mean):
    rng = random.Random(3)
    draws = [poisson(rng, mean) for _ in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(mean, abs=max(0.05, mean * 0.03))
