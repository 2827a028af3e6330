"""Choosing and writing the rows worth relabelling, from results.jsonl rows."""

from __future__ import annotations

import csv
import io
import json

import pytest

from guardrail_proxy.evaluation.relabel import flips, mistakes, to_csv, to_jsonl


def row(item_id: str, outcome: str, predicted: str | None, violation: bool | None, **extra: object) -> dict:
    return {"id": item_id, "text": f"text {item_id}", "label": "TV0", "role": "user", "context": [],
            "categories": ["a", "b"], "source": None, "outcome": outcome, "predicted": predicted,
            "predicted_violation": violation, "rationale": "why", "error": None, **extra}


def test_mistakes_are_false_positives_and_negatives_and_errors_on_request():
    rows = [row("1", "tp", "TV2", True), row("2", "fp", "TV2", True), row("3", "fn", "TV0", False),
            row("4", "error", None, None, error="boom")]
    assert [r["id"] for r in mistakes(rows)] == ["2", "3"]
    assert [r["id"] for r in mistakes(rows, errors=True)] == ["2", "3", "4"]


def test_mistakes_of_a_route_eval_use_the_route_rows_only():
    rows = [row("1", "fp", "1", True, scope="route"), row("1", "fp", "TV2", True, scope="violence")]
    assert len(mistakes(rows)) == 1


def test_flips_pair_old_and_new_by_id():
    rows = [row("1", "fp", "TV2", True, version="old"), row("2", "tn", "TV0", False, version="old"),
            row("1", "tn", "TV0", False, version="new"), row("2", "tn", "TV0", False, version="new")]
    [flip] = flips(rows)
    assert (flip["id"], flip["effect"], flip["old_predicted"], flip["predicted"]) == ("1", "fixed", "TV2", "TV0")
    with pytest.raises(ValueError, match="not from a compare"):
        flips([row("1", "fp", "TV2", True)])


def test_csv_and_jsonl_writers():
    rows = mistakes([row("2", "fp", "TV2", True, context=[{"role": "user", "content": "q, \"x\""}])])
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert json.loads(parsed[0]["categories"]) == ["a", "b"]
    assert json.loads(parsed[0]["context"])[0]["content"] == 'q, "x"'
    assert json.loads(to_jsonl(rows))["categories"] == ["a", "b"]
