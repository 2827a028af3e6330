"""Counters and latency sums, exposed at /metrics in the Prometheus text format.

Built per app in create_app; nothing here is module-level state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .decisions import CheckFailure, CheckOutcome

Labels = tuple[tuple[str, str], ...]


@dataclass
class Metrics:
    counters: Counter[tuple[str, Labels]] = field(default_factory=Counter)
    sums: Counter[tuple[str, Labels]] = field(default_factory=Counter)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += amount  # type: ignore[assignment]

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.sums[key] += seconds  # type: ignore[assignment]
        self.counters[(name + "_count", key[1])] += 1

    def record_check(self, outcome: CheckOutcome) -> None:
        if isinstance(outcome, CheckFailure):
            self.inc("guardrail_checks_total", phase=outcome.phase, policy=outcome.policy_id,
                     result="error", error=outcome.kind)
            return
        result = "violation" if outcome.violation else "pass"
        self.inc("guardrail_checks_total", phase=outcome.phase, policy=outcome.policy_id, result=result,
                 error="")
        if outcome.cached:
            self.inc("guardrail_check_cache_hits_total", policy=outcome.policy_id)
        else:
            self.observe("guardrail_classifier_seconds", outcome.latency_ms / 1000, policy=outcome.policy_id)

    def render(self) -> str:
        """Prometheus text format, one group per family; summaries as their _sum and _count series."""
        summaries = {name for name, _ in self.sums}
        families: dict[str, list[str]] = {}
        for (name, labels), value in sorted(self.counters.items()):
            family = name.removesuffix("_count") if name.removesuffix("_count") in summaries else name
            families.setdefault(family, []).append(f"{name}{fmt(labels)} {value}")
        for (name, labels), value in sorted(self.sums.items()):
            families.setdefault(name, []).append(f"{name}_sum{fmt(labels)} {value:.6f}")
        lines: list[str] = []
        for family, samples in sorted(families.items()):
            lines.append(f"# TYPE {family} {'summary' if family in summaries else 'counter'}")
            lines += samples
        return "\n".join(lines) + "\n"


def fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
