"""A replay's comparison as people and scripts read it: text lines, JSON, and the flips as dataset rows. Pure.

The flips file (`replay --out flips.jsonl`) is a policy-lab dataset: each flip's text, role and context, its
label the reviewer's where one marked the item and the enforced label otherwise (to be reviewed), followed
by columns `eval` ignores: both labels and both reasonings. When the replay compared by decision (the two
sides use different label codes), the label is that decision, "1" or "0", so the file reads with the candidate
policy whatever its codes. `eval --compare old.md new.md --dataset flips.jsonl` then runs on exactly the items
the edit changes.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .evaluation.formatting import one_line
from .evaluation.significance import Interval
from .replay import BY_LABEL, Comparison, Flip, Gathered, violation_of

WINDOWS_NOTE = ("the proxy judged streamed replies in windows as they arrived; replay judges the stored reply "
                "whole, so a reply's flip may come from that and not from the wording")
TEXT_MAX = 200


@dataclass(frozen=True)
class Scope:
    """What was replayed: the candidate, where it came from, and the time range."""

    policy: str
    source: str
    digest: str
    since: float | None
    until: float | None


def percent(part: int, whole: int) -> str:
    return f"{part}/{whole} = {100 * part / whole:.1f}%" if whole else f"{part}/{whole}"


def interval_text(interval: Interval | None) -> str:
    return "" if interval is None else f" (95% interval {100 * interval.low:.1f}% to {100 * interval.high:.1f}%)"


def moment(ts: float | None, empty: str) -> str:
    return empty if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="minutes")


def flip_lines(flip: Flip) -> list[str]:
    item = flip.item
    old, new = flip.change
    reviewer = f"; reviewer: {item.reviewed}" if item.reviewed is not None else ""
    decision = " (decision changes)" if flip.decision_changed else ""
    candidate = flip.candidate.reasoning or flip.candidate.rationale or ""
    return [f"  {item.request_id} {item.phase} [{item.route}]: {old} -> {new}{decision}{reviewer}",
            f"    text:      {one_line(item.text, TEXT_MAX)}",
            f"    enforced:  {one_line(item.enforced.reasoning or '', TEXT_MAX) or '(no reasoning stored)'}",
            f"    candidate: {one_line(candidate, TEXT_MAX) or '(no reasoning)'}"]


def basis_text(comparison: Comparison) -> str:
    basis = comparison.basis
    how = "by label" if basis.by == BY_LABEL else "by decision (violation against pass)"
    return f"compared {how}: {basis.reason}"


def report_lines(scope: Scope, gathered: Gathered, comparison: Comparison, flips_max: int) -> list[str]:
    lines = [f"replay of {scope.policy}: candidate {scope.source} ({scope.digest[:12]}), records from "
             f"{moment(scope.since, 'the start')} to {moment(scope.until, 'now')}",
             f"  records read {gathered.records}; items compared {comparison.compared}",
             f"  skipped: {gathered.no_text} items in {gathered.no_text_records} records whose text was not stored; "
             f"{gathered.enforced_errors} whose enforced checks all failed; {len(comparison.candidate_errors)} the "
             "candidate failed on",
             f"  {basis_text(comparison)}"]
    if gathered.partial:
        lines.append(f"  {gathered.partial} items compared with an enforced pass beside a failed check (the pass "
                     "judged part of the text)")
    lines += [textwrap.fill(f"note: {WINDOWS_NOTE}", width=110, initial_indent="  ", subsequent_indent="        "),
              f"agreement with the enforced verdicts: {percent(comparison.agreed, comparison.compared)}"
              + interval_text(comparison.interval)]
    if comparison.changes:
        lines.append(f"label changes: {len(comparison.flips)} ({comparison.decisions_changed} change the decision): "
                     + ", ".join(f"{old} -> {new} {n}" for (old, new), n in comparison.changes))
    reviewers = comparison.reviewers
    if reviewers.items:
        test = reviewers.mcnemar
        lines += [f"reviewers' labels ({reviewers.items} marked items): enforced right "
                  f"{percent(reviewers.enforced_right, reviewers.items)}, candidate right "
                  f"{percent(reviewers.candidate_right, reviewers.items)}",
                  f"  McNemar's exact test: candidate fixes {test.fixed}, breaks {test.broke}, p = {test.p_value:.3g}"]
    else:
        lines.append("reviewers' labels: none of these items was marked")
    if comparison.flips:
        shown = comparison.flips[:flips_max]
        lines.append(f"flips ({len(shown)} of {len(comparison.flips)} shown):")
        for flip in shown:
            lines += flip_lines(flip)
    return lines


def flip_json(flip: Flip) -> dict[str, Any]:
    item = flip.item
    return {"request_id": item.request_id, "route": item.route, "phase": item.phase, "text": item.text,
            "enforced_label": item.enforced.label, "candidate_label": flip.change[1],
            "decision_changed": flip.decision_changed, "reviewer_label": item.reviewed,
            "enforced_reasoning": item.enforced.reasoning, "candidate_reasoning": flip.candidate.reasoning,
            "candidate_rationale": flip.candidate.rationale}


def report_json(scope: Scope, gathered: Gathered, comparison: Comparison) -> dict[str, Any]:
    interval = comparison.interval
    reviewers = comparison.reviewers
    return {
        "policy": scope.policy, "candidate": scope.source, "candidate_digest": scope.digest,
        "since": scope.since, "until": scope.until, "records": gathered.records, "compared": comparison.compared,
        "compared_by": comparison.basis.by, "compared_by_reason": comparison.basis.reason,
        "enforced_partial": gathered.partial,
        "skipped": {"text_not_stored": gathered.no_text, "records_without_text": gathered.no_text_records,
                    "enforced_errors": gathered.enforced_errors,
                    "candidate_errors": len(comparison.candidate_errors)},
        "agreement": {"agreed": comparison.agreed, "rate": comparison.agreement,
                      "interval_95": None if interval is None else [interval.low, interval.high]},
        "changes": [{"enforced": old, "candidate": new, "items": n} for (old, new), n in comparison.changes],
        "decisions_changed": comparison.decisions_changed,
        "reviewers": {"items": reviewers.items, "enforced_right": reviewers.enforced_right,
                      "candidate_right": reviewers.candidate_right,
                      "mcnemar": {"fixed": reviewers.mcnemar.fixed, "broke": reviewers.mcnemar.broke,
                                  "p_value": reviewers.mcnemar.p_value}},
        "flips": [flip_json(f) for f in comparison.flips],
        "candidate_errors": [{"request_id": r.item.request_id, "phase": r.item.phase,
                              "kind": r.failure.kind if r.failure else None,
                              "message": r.failure.message if r.failure else None}
                             for r in comparison.candidate_errors],
        "notes": [WINDOWS_NOTE],
    }


def flip_rows(comparison: Comparison, policy: str) -> list[dict[str, Any]]:
    """The flips as dataset rows (see the module docstring)."""
    rows = []
    for flip in comparison.flips:
        item = flip.item
        label = item.reviewed or item.enforced.label
        if comparison.basis.by != BY_LABEL:
            label = "1" if violation_of(label) else "0"
        rows.append({"id": item.key, "text": item.text, "label": label,
                     "role": item.role, "context": list(item.context), "categories": [],
                     "source": f"replay:{item.route}", "policy": policy, "enforced_label": item.enforced.label,
                     "candidate_label": flip.change[1], "reviewer_label": item.reviewed,
                     "enforced_reasoning": item.enforced.reasoning, "candidate_reasoning": flip.candidate.reasoning})
    return rows
