"""Which rows an eval runs: bad rows admitted or refused, samples and limits."""

from __future__ import annotations

import pytest

from guardrail_proxy.dataset_read import DatasetRead, Problem
from guardrail_proxy.dataset_rows import Example
from guardrail_proxy.errors import ConfigError
from guardrail_proxy.evaluation.selection import admit, problem_lines, subset, too_many

EXAMPLES = tuple(Example(f"e{i}", f"t{i}", "0", False, None, "user", (), i) for i in range(1, 11))
PROBLEMS = (Problem("set.jsonl", 11, "not valid JSON"), Problem("set.jsonl", 12, "missing 'label'"))


@pytest.mark.parametrize(("count", "skip", "max_errors", "stops"), [
    (0, False, None, False),
    (2, False, None, True),
    (2, True, None, False),
    (2, False, 2, False),
    (2, False, 1, True),
    (2, True, 1, True),  # a cap wins over --skip-invalid
])
def test_too_many(count, skip, max_errors, stops):
    assert too_many(PROBLEMS[:count], skip, max_errors) is stops


def test_admit_lists_every_bad_row():
    read = DatasetRead("set.jsonl", EXAMPLES, PROBLEMS)
    with pytest.raises(ConfigError) as info:
        admit(read)
    assert "2 bad rows" in info.value.reason
    assert "set.jsonl: line 11: not valid JSON" in info.value.reason and "line 12: missing 'label'" in info.value.reason
    assert admit(read, skip_invalid=True) == list(EXAMPLES)
    with pytest.raises(ConfigError, match="no usable examples"):
        admit(DatasetRead("set.jsonl", (), PROBLEMS), skip_invalid=True)


def test_problem_lines_are_capped():
    many = [Problem("s", n, "bad") for n in range(1, 61)]
    lines = problem_lines(many, shown=50)
    assert len(lines) == 51 and lines[-1] == "... and 10 more bad rows"


@pytest.mark.parametrize(("limit", "sample", "seed", "count"), [
    (None, None, 0, 10), (3, None, 0, 3), (None, 4, 0, 4), (2, 4, 0, 2), (None, 50, 0, 10), (20, None, 0, 10),
])
def test_subset_sizes(limit, sample, seed, count):
    assert len(subset(EXAMPLES, limit, sample, seed)) == count


def test_a_sample_keeps_set_order_and_follows_its_seed():
    first = subset(EXAMPLES, sample=5, seed=11)
    assert first == subset(EXAMPLES, sample=5, seed=11)
    assert [e.source_line for e in first] == sorted(e.source_line for e in first)
    assert any(subset(EXAMPLES, sample=5, seed=s) != first for s in range(5))
