"""Which rows of a set an eval runs: bad rows admitted or not, and a quick subset. Pure.

Bad rows are all reported together, with file and line. Without `--skip-invalid` (or with more bad rows than
`--max-errors`) the run stops before any call is paid for; with it, the good rows are scored and the bad ones
listed again at the end, and counted in summary.json, so nobody mistakes a smaller set for the whole one.
A sample keeps the set's order and is the same for the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..dataset_read import DatasetRead, Problem
from ..dataset_rows import Example
from ..errors import ConfigError

SHOWN_PROBLEMS = 50


def too_many(problems: Sequence[Problem], skip_invalid: bool, max_errors: int | None) -> bool:
    if not problems:
        return False
    if max_errors is not None:
        return len(problems) > max_errors
    return not skip_invalid


def problem_lines(problems: Sequence[Problem], shown: int = SHOWN_PROBLEMS) -> list[str]:
    lines = [str(p) for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"... and {len(problems) - shown} more bad rows")
    return lines


def admit(read: DatasetRead, skip_invalid: bool = False, max_errors: int | None = None) -> list[Example]:
    """The examples to run, or a ConfigError whose reason lists every bad row (up to SHOWN_PROBLEMS)."""
    if too_many(read.problems, skip_invalid, max_errors):
        allowed = "" if max_errors is None else f" (--max-errors {max_errors})"
        count = f"{len(read.problems)} bad row" + ("s" if len(read.problems) > 1 else "")
        raise ConfigError(read.source, "", f"{count}{allowed}; fix them, or pass --skip-invalid to score the good "
                                           "ones:\n  " + "\n  ".join(problem_lines(read.problems)))
    if not read.examples:
        raise ConfigError(read.source, "", "the dataset has no usable examples")
    return list(read.examples)


def subset(examples: Sequence[Example], limit: int | None = None, sample: int | None = None,
           seed: int = 0) -> list[Example]:
    """A random sample of `sample` rows (in set order), then the first `limit` of them."""
    picked = list(examples)
    if sample is not None and sample < len(picked):
        keep = sorted(random.Random(seed).sample(range(len(picked)), sample))
        picked = [picked[i] for i in keep]
    return picked[:limit] if limit is not None else picked
