"""Pure parts of the audit queries: time parsing, WHERE clauses, periods, record summaries, the stored text of
a phase and dataset rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guardrail_proxy.audit_query import (
    Filters,
    bucket_start,
    dataset_rows,
    parse_when,
    shadow_of,
    stored_text,
    violations,
    where,
)
from guardrail_proxy.audit_rows import is_flagged, rows_of

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", NOW - 1800), ("24h", NOW - 86400), ("7d", NOW - 7 * 86400), ("2w", NOW - 14 * 86400),
    ("1.5h", NOW - 5400),
    ("2026-11-28", datetime(2026, 11, 28, tzinfo=UTC).timestamp()),
    ("2026-11-28T10:30", datetime(2026, 11, 28, 10, 30, tzinfo=UTC).timestamp()),
    ("2026-11-28T10:30+01:00", datetime(2026, 11, 28, 9, 30, tzinfo=UTC).timestamp()),
])
def test_parse_when(text, expected):
    assert parse_when(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-3d", ""])
def test_parse_when_says_what_it_expects(text):
    with pytest.raises(ValueError, match="expected a time like 24h"):
        parse_when(text, NOW)


@pytest.mark.parametrize(("filters", "clause", "values"), [
    (Filters(), "", []),
    (Filters(since=1.0, route="teen"), " WHERE r.ts >= ? AND r.route = ?", [1.0, "teen"]),
    (Filters(unchecked=True, flagged=True), " WHERE r.unchecked = ? AND r.flagged = ?", [1, 1]),
    (Filters(policy="gv", label="GV2", decision="block"),
     " WHERE r.decision = ? AND r.request_id IN (SELECT c.request_id FROM checks c WHERE c.policy = ? AND "
     "c.label = ?)", ["block", "gv", "GV2"]),
    (Filters(label="GV2"), " WHERE r.request_id IN (SELECT c.request_id FROM checks c WHERE c.label = ?)", ["GV2"]),
])
def test_where(filters, clause, values):
    assert where(filters) == (clause, values)


@pytest.mark.parametrize(("bucket", "expected"), [("hour", "2026-11-29 12:00"), ("day", "2026-11-29")])
def test_bucket_start(bucket, expected):
    assert bucket_start(NOW + 1234, bucket) == expected


def record(status=200, results=(("input", "pass", None),), content=None):
    checks = [{"policy": "gv", "policy_digest": "d", "result": r, "label": label, "action": "block" if r ==
               "violation" else None, "severity": 2} for _, r, label in results]
    phases = [{"phase": phase, "outcome": "allow", "unchecked": False, "checks": [check]}
              for (phase, _, _), check in zip(results, checks, strict=True)]
    return {"request_id": "r1", "ts": NOW, "route": "teen", "model": "m", "status": status, "decision": "allow",
            "phases": phases, "content": content}


@pytest.mark.parametrize(("item", "flagged"), [
    (record(), False),
    (record(status=401, results=()), True),
    (record(results=(("input", "violation", "GV2"),)), True),
    (record(results=(("output", "error", None),)), True),
])
def test_flagged_and_rows(item, flagged):
    assert is_flagged(item) is flagged
    rows = rows_of(item)
    assert rows.record[0] == "r1" and rows.record[13] == int(flagged) and len(rows.checks) == len(item["phases"])


def test_violations_and_dataset_rows_from_stored_content():
    content = {"input": "how do I win the fight", "input_role": "user",
               "context": [{"role": "assistant", "content": "hi"}], "output": "like this"}
    item = record(results=(("input", "violation", "GV2"), ("output", "pass", "GV0")), content=content)
    assert violations(item) == ["input: gv GV2 (block)"]
    rows = dataset_rows(item)
    assert [(r["id"], r["role"], r["label"], r["categories"]) for r in rows] == [
        ("r1", "user", 1, ["gv"]), ("r1-reply", "assistant", 0, [])]
    assert rows[0]["context"] == [{"role": "assistant", "content": "hi"}] and rows[1]["context"][0]["content"] == \
        "how do I win the fight"
    assert dataset_rows(record()) == []  # nothing stored, nothing to export
    asked_as = dataset_rows(record(content={**content, "input_role": "assistant", "output": None}))
    assert [(r["role"], r["text"]) for r in asked_as] == [("assistant", "how do I win the fight")]


EARLIER = ({"role": "assistant", "content": "hi"},)


@pytest.mark.parametrize(("content", "phase", "expected"), [
    ({"input": "q", "input_role": "user", "context": list(EARLIER), "output": "a"}, "input", ("q", "user", EARLIER)),
    ({"input": "q", "input_role": "user", "context": [], "output": "a"}, "output",
     ("a", "assistant", ({"role": "user", "content": "q"},))),
    # the input keeps its role; one a dataset row cannot have is a user item, but stays as written in context
    ({"input": "q", "input_role": "assistant", "output": "a"}, "input", ("q", "assistant", ())),
    ({"input": "q", "input_role": "tool", "output": "a"}, "input", ("q", "user", ())),
    ({"input": "q", "input_role": "tool", "output": "a"}, "output", ("a", "assistant", ({"role": "tool",
                                                                                          "content": "q"},))),
    ({"input": "q", "output": "a"}, "input", ("q", "user", ())),  # stored before input_role existed
    ({"input": "q", "input_role": "user", "output": None}, "output", None),  # the reply was not kept
    ({"input": "  ", "output": "a"}, "output", None),  # no input: the reply has no context, no item
    (None, "input", None),
])
def test_the_stored_text_of_a_phase(content, phase, expected):
    found = stored_text(record(content=content), phase)
    assert (found if found is None else (found.text, found.role, found.context)) == expected


@pytest.mark.parametrize(("agree", "detail", "shown_agree", "shown_detail"), [
    (1, '{"reasoning": "r"}', True, {"reasoning": "r"}),
    (0, '{"reasoning": "r"}', False, {"reasoning": "r"}),
    (None, "not json", None, "not json"),  # kept as written, never a failure of `audit show`
])
def test_a_shadow_row_as_json(agree, detail, shown_agree, shown_detail):
    row = (1.0, "teen", "input", "gv", 0, "e", "c", "violation", "GV2", "pass", "GV0", 0, agree, None, 2.0, detail)
    shown = shadow_of(row)
    assert (shown["agree"], shown["detail"], shown["candidate_digest"], shown["label"]) == (
        shown_agree, shown_detail, "c", "GV0")
