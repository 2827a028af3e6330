"""Reviewers' marks: validation, storage (SQLite and PostgreSQL, a real server), and the newest mark winning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guardrail_proxy.audit_postgres import connect as postgres_connect
from guardrail_proxy.audit_reviews import ReviewError, latest, make_review, run_add, run_history, run_latest
from guardrail_proxy.audit_sqlite import connect


def mark(**changes: object):
    fields: dict[str, object] = {"request_id": "r1", "phase": "input", "policy": "gv", "verdict_label": "GV2",
                                 "correct": False, "label": "GV0", "note": " too strict ", "reviewer": "Ana",
                                 "ts": 100.0}
    fields.update(changes)
    return make_review(**fields)  # type: ignore[arg-type]


def test_a_wrong_verdict_keeps_the_label_it_should_have_had() -> None:
    review = mark()
    assert (review.correct, review.label, review.note, review.reviewer) == (False, "GV0", "too strict", "Ana")


def test_a_correct_verdict_takes_the_verdicts_own_label() -> None:
    assert mark(correct=True, label="GV0").label == "GV2"


@pytest.mark.parametrize(("changes", "field"), [
    ({"reviewer": "  "}, "reviewer"),
    ({"reviewer": "a\nb"}, "reviewer"),
    ({"phase": "both"}, "phase"),
    ({"request_id": ""}, "request_id"),
    ({"policy": ""}, "policy"),
    ({"label": ""}, "label"),
    ({"label": "GV 2; drop"}, "label"),
    ({"label": "GV2"}, "label"),
    ({"note": "x" * 2001}, "note"),
])
def test_a_bad_mark_names_its_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ReviewError) as caught:
        mark(**changes)
    assert caught.value.field == field


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store: Any = (connect(str(tmp_path / "a.db")) if request.param == "sqlite"
                  else postgres_connect(request.getfixturevalue("postgres_dsn")))
    yield store
    store.close()


def test_the_newest_mark_counts_and_all_are_kept(db: Any) -> None:
    run_add(db, mark(ts=100.0))
    run_add(db, mark(correct=True, ts=200.0, reviewer="Bo"))
    run_add(db, mark(phase="output", ts=150.0))
    assert [r.reviewer for r in run_history(db, "r1")] == ["Ana", "Ana", "Bo"]
    newest = run_latest(db)
    assert newest[("r1", "input", "gv")].reviewer == "Bo" and newest[("r1", "input", "gv")].correct
    assert newest[("r1", "output", "gv")].label == "GV0"
    assert set(run_latest(db, since=120.0, until=180.0)) == {("r1", "output", "gv")}
    assert run_latest(db, policy="other") == {}


def test_latest_is_pure_over_ties() -> None:
    a, b = mark(ts=5.0), mark(ts=5.0, correct=True)
    assert latest([a, b]) == latest([b, a])
