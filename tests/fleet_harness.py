"""Helpers shared by the fleet tests (test_workers.py, test_worker_process.py, test_metrics_fleet.py): the
deadline every wait polls against, and reading a merged /metrics page by its per-worker series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

DEADLINE_S = 30.0


def samples(text: str, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()]


def by_worker(text: str, name: str, **labels: str) -> dict[str, float]:
    """A per-worker metric summed by its worker label (every sample must carry one)."""
    out: dict[str, float] = {}
    for found, value in samples(text, name, **labels):
        assert "worker" in found, (name, found)
        out[found["worker"]] = out.get(found["worker"], 0) + value
    return out


def fleet_total(text: str, name: str, **labels: str) -> float:
    """`sum without (worker) (...)`, as the README's queries do."""
    return sum(by_worker(text, name, **labels).values())
