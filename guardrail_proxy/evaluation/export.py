"""Runs -> JSON-ready values for results.jsonl and summary.json. Pure.

One results.jsonl row per item holds everything needed to re-check it by hand: the text as labelled, the
expected and predicted labels, the classifier's raw answer and reasoning, and whether it came from cache.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .compare import Comparison
from .results import ItemResult
from .runs import EvalRun


def result_row(result: ItemResult, info_digest: str, version: str | None = None) -> dict[str, Any]:
    example, p, failure = result.example, result.prediction, result.failure
    row: dict[str, Any] = {
        "id": example.id, "line": example.source_line, "role": example.role, "text": example.text,
        "context": example.context, "expected": example.label, "expected_violation": example.violation,
        "predicted": p.label if p else None, "predicted_violation": p.violation if p else None,
        "severity": p.severity if p else None, "outcome": result.outcome, "cached": result.cached,
        "rationale": p.rationale if p else None, "reasoning": p.reasoning if p else None,
        "raw": p.raw if p else None, "latency_ms": round(p.latency_ms, 1) if p else None,
        "prompt_tokens": p.prompt_tokens if p else None, "completion_tokens": p.completion_tokens if p else None,
        "error_kind": failure.kind if failure else None, "error": failure.message if failure else None,
        "policy_digest": info_digest,
    }
    if version:
        row["version"] = version
    return row


def result_rows(run: EvalRun, version: str | None = None) -> list[dict[str, Any]]:
    return [result_row(r, run.info.policy_digest, version) for r in run.results]


def run_summary(run: EvalRun) -> dict[str, Any]:
    return {"run": asdict(run.info), **asdict(run.summary)}


def comparison_summary(old: EvalRun, new: EvalRun, comparison: Comparison) -> dict[str, Any]:
    return {
        "old": run_summary(old),
        "new": run_summary(new),
        "deltas": {d.name: {"old": d.old, "new": d.new, "delta": d.delta} for d in comparison.deltas},
        "flips": [{"id": f.example.id, "line": f.example.source_line, "expected": f.example.label, "old": f.old,
                   "new": f.new, "effect": f.effect} for f in comparison.flips],
    }
