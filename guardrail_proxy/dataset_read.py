"""A whole set's rows -> the examples kept and the rows that are bad, each named by file and line. Pure.

A bad row is never dropped silently: a quietly smaller set makes metrics look better than they are. The
strict reading (`policy lint`, the official pack's datasets) stops at the first bad row; `eval` gathers every
bad row, reports them together, and scores the good ones only when asked to (`--skip-invalid`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .dataset_rows import Example, RowError
from .errors import ConfigError


@dataclass(frozen=True)
class Problem:
    source: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: line {self.line}: {self.reason}" if self.line else f"{self.source}: {self.reason}"

    def as_error(self) -> ConfigError:
        return ConfigError(self.source, f"line {self.line}" if self.line else "", self.reason)


@dataclass(frozen=True)
class DatasetRead:
    source: str
    examples: tuple[Example, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...] = ()


def problem_of(error: RowError, source: str) -> Problem:
    """'line 4: reason' -> Problem(source, 4, 'reason')."""
    match = re.match(r"line (\d+): (.*)", str(error), re.DOTALL)
    return Problem(source, int(match.group(1)), match.group(2)) if match else Problem(source, None, str(error))


def consistency_problems(examples: Iterable[Example], source: str) -> tuple[list[Example], list[Problem]]:
    """Unique ids, and one label prefix per file (mixing two policies' codes is a mistake): the first row
    with an id or a prefix wins, and each later row that breaks the rule is a problem."""
    seen: dict[str, int] = {}
    prefix_at: tuple[str, int] | None = None
    kept: list[Example] = []
    problems: list[Problem] = []
    for example in examples:
        if example.id in seen:
            problems.append(Problem(source, example.source_line,
                                    f"id '{example.id}' is also on line {seen[example.id]}"))
            continue
        if example.level is not None:
            prefix = example.label.rstrip("0123456789")
            if prefix_at is None:
                prefix_at = (prefix, example.source_line)
            elif prefix != prefix_at[0]:
                problems.append(Problem(source, example.source_line, f"label {example.label} mixes prefix {prefix} "
                                                                     f"with {prefix_at[0]} (line {prefix_at[1]})"))
                continue
        seen[example.id] = example.source_line
        kept.append(example)
    return kept, problems


def gather(rows: Iterable[Example | RowError], source: str, warnings: Iterable[str] = ()) -> DatasetRead:
    parsed: list[Example] = []
    problems: list[Problem] = []
    for row in rows:
        if isinstance(row, RowError):
            problems.append(problem_of(row, source))
        else:
            parsed.append(row)
    kept, inconsistent = consistency_problems(parsed, source)
    ordered = sorted([*problems, *inconsistent], key=lambda p: p.line or 0)
    return DatasetRead(source, tuple(kept), tuple(ordered), tuple(warnings))


def strict(read: DatasetRead) -> list[Example]:
    """Every row good and at least one: the examples; otherwise the first problem as a ConfigError."""
    if read.problems:
        raise read.problems[0].as_error()
    if not read.examples:
        raise ConfigError(read.source, "", "the dataset has no examples")
    return list(read.examples)
