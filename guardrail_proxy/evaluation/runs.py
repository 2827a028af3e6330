"""A finished run: where its numbers came from, its items, their summary, and how fast it went."""

from __future__ import annotations

from dataclasses import dataclass, field

from .results import ItemResult
from .scoring import Summary


@dataclass(frozen=True)
class RunInfo:
    """Printed with every report, so its numbers can be traced and reproduced."""

    policy_id: str  # for a route eval, "route <name>"
    policy_digest: str
    policy_source: str
    dataset: str
    model: str
    reasoning_effort: str
    base_url: str
    started: str  # ISO 8601, local time
    max_tokens: int | None = None


@dataclass(frozen=True)
class Timing:
    seconds: float
    items: int
    calls: int  # classifier calls paid for: not cached, not shared with an identical item in flight

    @property
    def items_per_s(self) -> float | None:
        return self.items / self.seconds if self.seconds > 0 else None


@dataclass(frozen=True)
class EvalRun:
    info: RunInfo
    results: tuple[ItemResult, ...]
    summary: Summary
    timing: Timing | None = None
    parts: tuple[EvalRun, ...] = ()  # a route eval: each policy alone, on the items it checks
    actions: dict[str, int] = field(default_factory=dict)  # a route eval: what the proxy would have done
