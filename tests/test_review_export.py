"""The verdict of a phase (the one rule the console and replay share); reviewed items as dataset rows: which
text, which label, which rows are left out and counted; and the queries over a store (SQLite and PostgreSQL)
that find the reviewed records and their policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import VIOLENCE_POLICY

from guardrail_proxy.audit_postgres import connect as postgres_connect
from guardrail_proxy.audit_query import Filters
from guardrail_proxy.audit_reviews import Review, latest, make_review, run_add
from guardrail_proxy.audit_rows import rows_of
from guardrail_proxy.audit_sqlite import connect as sqlite_connect
from guardrail_proxy.datasets import parse_dataset
from guardrail_proxy.evaluation.relabel import to_jsonl
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.review_export import (
    by_request,
    phase_verdict,
    record_export,
    reviewed_rows,
    run_reviewed,
    run_reviewed_export,
    run_reviewed_policies,
)

CONTENT = {"input": "describe the fight", "input_role": "user",
           "context": [{"role": "assistant", "content": "earlier"}], "output": "they fought"}


def record(request_id: str = "r1", ts: float = 100.0, content: dict[str, Any] | None = CONTENT,
           route: str = "teen") -> dict[str, Any]:
    checks = [{"policy": "violence", "policy_digest": "d1", "result": "violation", "label": "TV2",
               "action": "block"}, {"policy": "selfharm", "policy_digest": "d2", "result": "pass", "label": "0"}]
    return {"request_id": request_id, "ts": ts, "route": route, "model": "m", "status": 400, "decision": "block",
            "phases": [{"phase": "input", "outcome": "block", "unchecked": False, "checks": checks},
                       {"phase": "output", "outcome": "allow", "unchecked": False, "checks": checks[:1]}],
            "content": content}


def mark(phase: str = "input", policy: str = "violence", label: str | None = "TV0", correct: bool = False,
         ts: float = 200.0, request_id: str = "r1", verdict: str | None = "TV2") -> Review:
    return make_review(request_id=request_id, phase=phase, policy=policy, verdict_label=verdict, correct=correct,
                       label=label, note="a game", reviewer="Ana", ts=ts)


def marks(*reviews: Review) -> dict[tuple[str, str, str], Review]:
    return latest(list(reviews))


def check(result: str, label: str | None = None, severity: int | None = None, name: str = "") -> dict[str, Any]:
    return {"result": result, "label": label, "severity": severity, "name": name}


@pytest.mark.parametrize(("checks", "result", "label", "chosen", "failed"), [
    ([check("pass", "TV0", 0, "a")], "pass", "TV0", "a", 0),
    # the most severe violation, the first of equals
    ([check("pass", "TV0", 0), check("violation", "TV1", 1, "b"), check("violation", "TV3", 3, "c"),
      check("violation", "TV3", 3, "d"), check("error")], "violation", "TV3", "c", 1),
    # a pass beside a failed check is the pass the reviewer saw, with the failure counted
    ([check("error", name="e"), check("pass", "TV0", 0, "p")], "pass", "TV0", "p", 1),
    # every check failed: an error, with no label
    ([check("error", name="e1"), check("error", name="e2")], "error", None, "e1", 2),
    ([check("violation", "stand-in-rule", None, "j")], "violation", "stand-in-rule", "j", 0),  # a JSON category
])
def test_the_verdict_of_a_phase(checks, result, label, chosen, failed):
    verdict = phase_verdict(checks)
    assert (verdict.result, verdict.label, verdict.check["name"], verdict.checks, verdict.failed) == (
        result, label, chosen, len(checks), failed)


def test_a_phase_verdict_needs_a_check():
    with pytest.raises(ValueError, match="at least one check"):
        phase_verdict([])


@pytest.mark.parametrize(("reviews", "policy", "expected"), [
    # (id, text, role, label, policy) per row
    ((mark(),), "violence", [("r1", "describe the fight", "user", "TV0", "violence")]),
    ((mark(phase="output", label="TV3", verdict="TV0"),), "violence",
     [("r1-reply", "they fought", "assistant", "TV3", "violence")]),
    ((mark(correct=True),), "violence", [("r1", "describe the fight", "user", "TV2", "violence")]),
    ((mark(), mark(ts=300.0, correct=True)), "violence", [("r1", "describe the fight", "user", "TV2", "violence")]),
    ((mark(), mark(policy="selfharm", label="1", verdict="0")), "selfharm",
     [("r1", "describe the fight", "user", "1", "selfharm")]),
    ((mark(), mark(policy="selfharm", label="1", verdict="0")), None,
     [("r1-selfharm", "describe the fight", "user", "1", "selfharm"),
      ("r1-violence", "describe the fight", "user", "TV0", "violence")]),
    ((mark(request_id="r2"),), "violence", []),  # another record's mark
    ((mark(correct=True, verdict=None),), "violence", []),  # an error verdict marked correct: no label to learn
])
def test_one_row_per_newest_mark(reviews, policy, expected):
    rows = reviewed_rows(record(), marks(*reviews), policy)
    assert [(r["id"], r["text"], r["role"], r["label"], r["policy"]) for r in rows] == expected


def test_a_row_carries_its_context_and_the_review():
    [row] = reviewed_rows(record(), marks(mark(label="TV1")), "violence")
    assert row["context"] == [{"role": "assistant", "content": "earlier"}]
    assert (row["verdict_label"], row["reviewer"], row["note"], row["correct"]) == ("TV2", "Ana", "a game", False)
    assert row["categories"] == ["violence"] and row["source"] == "review:teen"
    [reply] = reviewed_rows(record(), marks(mark(phase="output", label="TV0", verdict="TV2")), "violence")
    assert reply["context"] == [{"role": "user", "content": "describe the fight"}] and reply["categories"] == []


@pytest.mark.parametrize("content", [None, {"input": "", "output": None}, {"input": "q", "output": None}])
def test_text_that_was_not_stored_gives_no_row_and_is_counted(content):
    reviews = marks(mark(phase="output", label="TV3", verdict="TV0"), mark(policy="selfharm", label="1", verdict="0"))
    assert reviewed_rows(record(content=content), reviews, "violence") == []
    rows, skipped = record_export(record(content=content), reviews, None)
    stored_input = content is not None and bool(content["input"])
    assert (len(rows), skipped) == ((1, 1) if stored_input else (0, 2))


def test_a_record_reads_only_its_own_marks_when_indexed():
    reviews = marks(mark(), mark(request_id="r2", label="TV1"), mark(request_id="r2", phase="output", label="TV3"))
    indexed = by_request(reviews)
    assert sorted(indexed) == ["r1", "r2"] and len(indexed["r2"]) == 2
    assert reviewed_rows(record(), indexed["r1"], "violence") == reviewed_rows(record(), reviews, "violence")


def test_the_input_keeps_its_role():
    content = {**CONTENT, "input_role": "assistant"}
    [row, reply] = reviewed_rows(record(content=content), marks(mark(), mark(phase="output", label="TV3")),
                                 "violence")
    assert row["role"] == "assistant" and reply["context"] == [{"role": "assistant", "content": "describe the fight"}]


def test_rows_read_back_as_a_dataset_of_that_policy():
    policy = parse_policy(VIOLENCE_POLICY, "violence.md")
    rows = reviewed_rows(record(), marks(mark(), mark(phase="output", label="TV3", verdict="TV0")), "violence")
    read = parse_dataset(to_jsonl(rows), "reviewed.jsonl", policy=policy)
    assert not read.problems
    assert [(e.id, e.label, e.violation, e.role) for e in read.examples] == [
        ("r1", "TV0", False, "user"), ("r1-reply", "TV3", True, "assistant")]
    assert read.examples[0].context[0].text == "earlier"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        db: Any = sqlite_connect(str(tmp_path / "audit.db"))
    else:
        db = postgres_connect(request.getfixturevalue("postgres_dsn"))
    yield db
    db.close()


def put(db: Any, item: dict[str, Any]) -> None:
    rows = rows_of(item)
    db.execute(f"INSERT INTO records VALUES ({', '.join('?' for _ in rows.record)})", list(rows.record))


def test_run_reviewed_finds_reviewed_records_newest_first(store):
    put(store, record("r1", ts=100.0))
    put(store, record("r2", ts=200.0, route="kids"))
    put(store, record("r3", ts=300.0))  # not reviewed
    put(store, record("r4", ts=400.0, content=None))  # reviewed, nothing stored
    for review in (mark(request_id="r1"), mark(request_id="r2", label="TV1"), mark(request_id="r4"),
                   mark(request_id="r1", policy="selfharm", label="1", verdict="0")):
        run_add(store, review)
    rows = run_reviewed(store, Filters(), "violence", 100)
    assert [(r["id"], r["label"]) for r in rows] == [("r2", "TV1"), ("r1", "TV0")]
    assert [r["id"] for r in run_reviewed(store, Filters(route="teen"), "violence", 100)] == ["r1"]
    assert [r["id"] for r in run_reviewed(store, Filters(since=150.0), "violence", 100)] == ["r2"]
    assert [r["id"] for r in run_reviewed(store, Filters(), "violence", 1)] == ["r2"]
    assert [r["id"] for r in run_reviewed(store, Filters(), "selfharm", 100)] == ["r1"]
    assert sorted(r["id"] for r in run_reviewed(store, Filters(), None, 100)) == [
        "r1-selfharm", "r1-violence", "r2-violence"]
    assert json.loads(json.dumps(rows))  # plain JSON values only
    found = run_reviewed_export(store, Filters(), "violence", 100)
    assert (len(found.rows), found.no_text) == (2, 1)  # r4's mark: its text was not stored
    assert run_reviewed_export(store, Filters(route="teen", since=150.0), "violence", 100).no_text == 1


def test_the_reviewed_policies_are_those_of_marks_on_matching_records(store):
    put(store, record("r1", ts=100.0))
    put(store, record("r2", ts=200.0, route="kids"))
    for review in (mark(request_id="r1"), mark(request_id="r2", policy="selfharm", label="1", verdict="0"),
                   mark(request_id="gone", policy="other")):  # a mark whose record is not in the store
        run_add(store, review)
    assert run_reviewed_policies(store, Filters()) == ["selfharm", "violence"]
    assert run_reviewed_policies(store, Filters(route="teen")) == ["violence"]
    assert run_reviewed_policies(store, Filters(since=150.0)) == ["selfharm"]
    assert run_reviewed_policies(store, Filters(until=50.0)) == []
