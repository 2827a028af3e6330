"""A finished run: where its numbers came from, its items, and their summary."""

from __future__ import annotations

from dataclasses import dataclass

from .results import ItemResult
from .scoring import Summary


@dataclass(frozen=True)
class RunInfo:
    """Printed with every report, so its numbers can be traced and reproduced."""

    policy_id: str
    policy_digest: str
    policy_source: str
    dataset: str
    model: str
    reasoning_effort: str
    base_url: str
    started: str  # ISO 8601, local time


@dataclass(frozen=True)
class EvalRun:
    info: RunInfo
    results: tuple[ItemResult, ...]
    summary: Summary
