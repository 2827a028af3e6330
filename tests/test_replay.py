"""Replay's pure parts: which stored phases become items, the enforced verdict of a phase, labels as compared,
the basis (by label only when both sides use the same codes, else by decision), and the comparison (agreement,
flips, label changes, reviewers) with known counts; the report as text, JSON and dataset rows."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import VIOLENCE_POLICY

from guardrail_proxy.audit_reviews import latest, make_review
from guardrail_proxy.datasets import parse_dataset
from guardrail_proxy.evaluation.relabel import to_jsonl
from guardrail_proxy.evaluation.results import Failure, Prediction
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.replay import (
    BY_DECISION,
    BY_LABEL,
    Enforced,
    Item,
    Replayed,
    basis_of,
    comparable_label,
    compare,
    enforced_of,
    gather,
    readable_label,
    reviewed_label,
    wilson,
)
from guardrail_proxy.replay_report import WINDOWS_NOTE, Scope, flip_rows, report_json, report_lines

CONTENT = {"input": "a pillow fight", "context": [{"role": "user", "content": "hi"}], "output": "sounds fun"}
CODES = ("TV0", "TV1", "TV2", "TV3")


def check(result: str = "pass", label: str | None = "TV0", severity: int = 0, policy: str = "violence",
          reasoning: str = "because") -> dict[str, Any]:
    return {"policy": policy, "policy_digest": "d", "result": result, "label": label, "severity": severity,
            "reasoning": reasoning}


def record(request_id: str = "r1", phases: dict[str, list[dict[str, Any]]] | None = None,
           content: dict[str, Any] | None = CONTENT) -> dict[str, Any]:
    phases = phases if phases is not None else {"input": [check("violation", "TV2", 2)], "output": [check()]}
    return {"request_id": request_id, "ts": 10.0, "route": "teen", "content": content,
            "phases": [{"phase": name, "checks": checks} for name, checks in phases.items()]}


@pytest.mark.parametrize(("checks", "expected"), [
    ([check()], ("pass", "TV0", 1, 0)),
    ([check(), check("violation", "TV1", 1), check("violation", "TV3", 3), check("error", None)],
     ("violation", "TV3", 4, 1)),
    ([check(), check("error", None)], ("pass", "TV0", 2, 1)),  # the pass a reviewer saw, the failure counted
    ([check(label=None)], ("pass", "0", 1, 0)),  # a binary policy's pass
    ([check("violation", None, 1)], ("violation", "1", 1, 0)),
    ([check("violation", "stand-in-rule", 1)], ("violation", "1", 1, 0)),  # a JSON policy's category
])
def test_a_phase_verdict_is_its_most_severe_check(checks, expected):
    found = enforced_of(checks)
    assert found is not None and (found.result, found.label, found.checks, found.failed) == expected


def test_a_phase_whose_checks_all_failed_is_no_verdict():
    assert enforced_of([check("error", None), check("error", None)]) is None


@pytest.mark.parametrize(("raw", "violation", "readable", "comparable"), [
    ("TV2", True, "TV2", "TV2"), ("true", True, "1", "1"), ("0", False, "0", "0"), (None, False, None, "0"),
    ("stand-in-rule", True, None, "1"),  # free text (a JSON policy's category) is no label: the decision
    ("TV0", True, "TV0", "1"),  # a code that contradicts its verdict is not trusted either
])
def test_labels_as_compared(raw, violation, readable, comparable):
    assert readable_label(raw) == readable and comparable_label(raw, violation) == comparable


def enforced(label: str = "TV2") -> Enforced:
    return Enforced("pass" if label in ("TV0", "0") else "violation", label, None, "d", 1)


@pytest.mark.parametrize(("label", "correct", "verdict", "expected"), [
    ("TV0", False, enforced("TV2"), "TV0"),
    ("TV2", True, enforced("TV2"), "TV2"),
    ("stand-in-rule", True, enforced("1"), "1"),  # a JSON category confirmed: the enforced decision
    ("other-category", False, enforced("1"), None),  # a JSON category said to be wrong: no decision to score
])
def test_a_reviewers_label_as_scored(label, correct, verdict, expected):
    mark = make_review(request_id="r1", phase="input", policy="violence", verdict_label="x" if not correct else label,
                       correct=correct, label=label, note="", reviewer="Ana", ts=1.0)
    assert reviewed_label(mark, verdict) == expected
    assert reviewed_label(None, verdict) is None


def test_gather_takes_stored_phases_of_the_policy_and_counts_the_rest():
    marks = latest([make_review(request_id="r1", phase="input", policy="violence", verdict_label="TV2", correct=False,
                                label="TV0", note="", reviewer="Ana", ts=1.0)])
    records = [
        record("r1"),
        record("r2", content=None),  # two phases, no text: two items in one record skipped
        record("r3", content={"input": "q", "output": None}),  # the reply was not stored
        record("r4", phases={"input": [check(policy="other")]}),  # another policy only: not an item
        record("r5", phases={"input": [check("error", None)]}),  # the enforced check failed
        record("r6", phases={"input": [check("error", None), check()]}),  # a pass beside a failure: compared
    ]
    found = gather(records, "violence", marks)
    assert [(i.request_id, i.phase, i.enforced.label, i.reviewed) for i in found.items] == [
        ("r1", "input", "TV2", "TV0"), ("r1", "output", "TV0", None), ("r3", "input", "TV2", None),
        ("r6", "input", "TV0", None)]
    assert (found.records, found.no_text, found.no_text_records, found.enforced_errors, found.partial) == (
        6, 3, 2, 1, 1)
    assert found.items[1].role == "assistant" and found.items[1].context == ({"role": "user",
                                                                             "content": "a pillow fight"},)
    assert found.items[1].key == "r1-reply"


def item(n: int, enforced: str, reviewed: str | None = None) -> Item:
    result = "violation" if enforced not in ("TV0", "0", "XV0") else "pass"
    return Item(f"r{n}", 1.0, "teen", "input", f"text {n}", "user", (), Enforced(result, enforced, "old why", "d", 1),
                reviewed)


def said(label: str | None) -> Prediction | None:
    """The candidate's answer: a code, 0/1, or a JSON policy's category ("cat:1" a violation, "cat:0" none)."""
    if label is None:
        return None
    violation = label.endswith(("1", "2", "3")) and label != "cat:0"
    return Prediction(violation, int(violation), label, None, "new why", label, 1.0)


def replayed(rows: list[tuple[str, str | None, str | None]]) -> list[Replayed]:
    """(enforced, candidate or None for an error, reviewer) per item."""
    return [Replayed(item(n, enforced, reviewer), said(candidate),
                     None if candidate else Failure("timeout", "slow")) for n, (enforced, candidate, reviewer)
            in enumerate(rows)]


@pytest.mark.parametrize(("rows", "agreed", "changes", "decisions", "reviewers"), [
    # nothing changes
    ([("TV2", "TV2", None), ("TV0", "TV0", None)], 2, [], 0, (0, 0, 0, 0, 0)),
    # the candidate lets two blocks through and raises one severity: three flips, two decisions
    ([("TV2", "TV0", None), ("TV2", "TV0", None), ("TV1", "TV3", None), ("TV0", "TV0", None)], 1,
     [(("TV2", "TV0"), 2), (("TV1", "TV3"), 1)], 2, (0, 0, 0, 0, 0)),
    # reviewers: the candidate fixes two items the proxy got wrong and breaks one it got right
    ([("TV2", "TV0", "TV0"), ("TV2", "TV0", "TV0"), ("TV2", "TV0", "TV2"), ("TV0", "TV0", "TV0")], 1,
     [(("TV2", "TV0"), 3)], 3, (4, 2, 3, 2, 1)),
    # a candidate error is neither agreement nor flip, nor a reviewed item
    ([("TV2", None, "TV0"), ("TV0", "TV2", None)], 0, [(("TV0", "TV2"), 1)], 1, (0, 0, 0, 0, 0)),
])
def test_compare_counts_flips_and_reviewers(rows, agreed, changes, decisions, reviewers):
    comparison = compare(replayed(rows), CODES)
    assert comparison.basis.by == BY_LABEL
    errors = sum(1 for _, candidate, _ in rows if candidate is None)
    assert comparison.compared == len(rows) - errors and len(comparison.candidate_errors) == errors
    assert comparison.agreed == agreed and len(comparison.flips) == comparison.compared - agreed
    assert list(comparison.changes) == changes and comparison.decisions_changed == decisions
    r = comparison.reviewers
    assert (r.items, r.enforced_right, r.candidate_right, r.mcnemar.fixed, r.mcnemar.broke) == reviewers


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (95, 100, 0.8882, 0.9785),
])
def test_wilson_interval(k, n, low, high):
    interval = wilson(k, n)
    assert interval is not None
    assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    assert wilson(0, 0) is None


@pytest.mark.parametrize(("rows", "codes", "agreed", "changes", "reviewers"), [
    # a binary candidate against enforced codes: TV2 and 1 agree, TV1 -> 0 is a flip
    ([("TV2", "1", "TV2"), ("TV0", "0", None), ("TV1", "0", "TV0")], (), 2, [(("TV1", "0"), 1)], (2, 1, 2, 1, 0)),
    # enforced codes of another prefix: compared by decision, not as a flip on every item
    ([("XV2", "TV3", None), ("XV0", "TV0", "XV0"), ("XV2", "TV0", "TV0")], CODES, 2, [(("XV2", "TV0"), 1)],
     (2, 1, 2, 1, 0)),
    # a JSON candidate: its categories are free text, so only the decisions count
    ([("1", "cat:1", None), ("0", "cat:0", None), ("1", "cat:0", "0")], (), 2, [(("1", "0"), 1)], (1, 0, 1, 1, 0)),
])
def test_different_label_formats_compare_by_decision(rows, codes, agreed, changes, reviewers):
    comparison = compare(replayed(rows), codes)
    assert comparison.basis.by == BY_DECISION and comparison.agreed == agreed
    assert list(comparison.changes) == changes and comparison.decisions_changed == len(comparison.flips)
    r = comparison.reviewers
    assert (r.items, r.enforced_right, r.candidate_right, r.mcnemar.fixed, r.mcnemar.broke) == reviewers


@pytest.mark.parametrize(("enforced_labels", "codes", "by", "reason"), [
    (["TV2", "TV0"], CODES, BY_LABEL, "both sides use the candidate's codes"),
    (["TV2", "1"], CODES, BY_DECISION, "not the candidate's codes: 1"),
    (["XV2", "XV0", "TV1"], CODES, BY_DECISION, "not the candidate's codes: XV0, XV2"),
    (["TV2"], (), BY_DECISION, "the candidate answers without label codes"),
    ([], CODES, BY_LABEL, "both sides"),
])
def test_the_basis_says_why(enforced_labels, codes, by, reason):
    basis = basis_of([item(n, label) for n, label in enumerate(enforced_labels)], codes)
    assert basis.by == by and reason in basis.reason


SCOPE = Scope("violence", "cand.md", "abcdef0123456789", 0.0, None)


def test_report_text_json_and_rows():
    rows = [("TV2", "TV0", "TV0"), ("TV2", "TV2", "TV2"), ("TV0", "TV0", None)]
    comparison = compare(replayed(rows), CODES)
    gathered = gather([], "violence", {})
    text = "\n".join(report_lines(SCOPE, gathered, comparison, flips_max=10))
    assert "compared by label: both sides use the candidate's codes" in text
    assert "agreement with the enforced verdicts: 2/3 = 66.7% (95% interval" in text
    assert "label changes: 1 (1 change the decision): TV2 -> TV0 1" in text
    assert "enforced right 1/2 = 50.0%, candidate right 2/2 = 100.0%" in text and "fixes 1, breaks 0" in text
    assert "r0 input [teen]: TV2 -> TV0 (decision changes); reviewer: TV0" in text
    assert "enforced:  old why" in text and "candidate: new why" in text and WINDOWS_NOTE in " ".join(text.split())
    data = report_json(SCOPE, gathered, comparison)
    assert data["agreement"]["agreed"] == 2 and data["changes"] == [{"enforced": "TV2", "candidate": "TV0", "items": 1}]
    assert data["flips"][0]["candidate_reasoning"] == "new why" and data["reviewers"]["mcnemar"]["fixed"] == 1
    assert data["compared_by"] == "label"
    flips = flip_rows(comparison, "violence")
    read = parse_dataset(to_jsonl(flips), "flips.jsonl", policy=parse_policy(VIOLENCE_POLICY, "v.md"))
    assert not read.problems and [(e.id, e.label) for e in read.examples] == [("r0", "TV0")]  # the reviewer's label


def test_flips_compared_by_decision_are_written_with_the_decision():
    comparison = compare(replayed([("XV2", "TV0", None), ("XV0", "TV2", "XV1"), ("XV2", "TV2", None)]), CODES)
    text = "\n".join(report_lines(SCOPE, gather([], "violence", {}), comparison, flips_max=10))
    assert "compared by decision (violation against pass): enforced labels that are not the candidate's codes" in text
    flips = flip_rows(comparison, "violence")
    assert [(row["label"], row["enforced_label"], row["candidate_label"]) for row in flips] == [
        ("1", "XV2", "TV0"), ("1", "XV0", "TV2")]  # the enforced XV2 (to review); the reviewer's XV1
    read = parse_dataset(to_jsonl(flips), "flips.jsonl", policy=parse_policy(VIOLENCE_POLICY, "v.md"))
    assert not read.problems and [e.label for e in read.examples] == ["1", "1"]
