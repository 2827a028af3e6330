"""Runs -> JSON-ready values for results.jsonl and summary.json. Pure.

One results.jsonl row per item (per item and policy for a route's policies) holds everything needed to
re-check it by hand and to feed it back as a dataset: the text, role and context as labelled, its id,
categories and source, the expected and predicted labels, and the classifier's raw answer and reasoning.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .compare import Comparison
from .results import ItemResult, outcome_of
from .runs import EvalRun


def result_row(result: ItemResult, info_digest: str, threshold: int = 1, version: str | None = None,
               scope: str | None = None) -> dict[str, Any]:
    example, p, failure = result.example, result.prediction, result.failure
    row: dict[str, Any] = {
        "id": example.id, "line": example.source_line, "role": example.role, "text": example.text,
        "context": [{"role": t.role, "content": t.text} for t in example.context],
        "categories": list(example.categories), "source": example.source,
        "label": example.label, "expected_violation": example.violation,
        "predicted": p.label if p else None, "predicted_violation": p.violation if p else None,
        "severity": p.severity if p else None, "outcome": outcome_of(result, threshold), "cached": result.cached,
        "rationale": p.rationale if p else None, "reasoning": p.reasoning if p else None,
        "raw": p.raw if p else None, "latency_ms": round(p.latency_ms, 1) if p else None,
        "prompt_tokens": p.prompt_tokens if p else None, "completion_tokens": p.completion_tokens if p else None,
        "error_kind": failure.kind if failure else None, "error": failure.message if failure else None,
        "policy_digest": info_digest,
    }
    if version:
        row["version"] = version
    if scope:
        row["scope"] = scope
    return row


def result_rows(run: EvalRun, version: str | None = None) -> list[dict[str, Any]]:
    """The run's items; for a route, each policy's rows follow, with `scope` naming the policy."""
    threshold = run.summary.threshold
    rows = [result_row(r, run.info.policy_digest, threshold, version, "route" if run.parts else None)
            for r in run.results]
    for part in run.parts:
        rows += [result_row(r, part.info.policy_digest, threshold, version, part.info.policy_id) for r in part.results]
    return rows


def run_summary(run: EvalRun) -> dict[str, Any]:
    timing = run.timing
    summary: dict[str, Any] = {"run": asdict(run.info), **asdict(run.summary)}
    if timing is not None:
        summary["timing"] = {"seconds": round(timing.seconds, 3), "items": timing.items, "calls": timing.calls,
                             "items_per_s": round(timing.items_per_s, 2) if timing.items_per_s else None}
    if run.parts:
        summary["policies"] = {part.info.policy_id: asdict(part.summary) for part in run.parts}
        summary["actions"] = run.actions
    return summary


def comparison_summary(old: EvalRun, new: EvalRun, comparison: Comparison) -> dict[str, Any]:
    return {
        "old": run_summary(old),
        "new": run_summary(new),
        "deltas": {d.name: {"old": d.old, "new": d.new, "delta": d.delta,
                            "interval_95": [d.interval.low, d.interval.high] if d.interval else None}
                   for d in comparison.deltas},
        "mcnemar": asdict(comparison.mcnemar),
        "flips": [{"id": f.example.id, "line": f.example.source_line, "label": f.example.label, "effect": f.effect,
                   "old": flip_side(f.old), "new": flip_side(f.new)} for f in comparison.flips],
    }


def flip_side(result: ItemResult) -> dict[str, Any]:
    p = result.prediction
    return {"predicted": p.label if p else None, "violation": p.violation if p else None,
            "rationale": p.rationale if p else None, "reasoning": p.reasoning if p else None,
            "error": result.failure.message if result.failure else None}
