"""The preflight's decision on the first answer: stop the run, or go on."""

from __future__ import annotations

import pytest

from guardrail_proxy.answers import Answer
from guardrail_proxy.classifier import Classification
from guardrail_proxy.errors import ClassifierError
from guardrail_proxy.evaluation.preflight import preflight_problem

ANSWER = Classification(Answer(True, 2, "TV2"), "thinking", "TV2", 5.0)


@pytest.mark.parametrize(("result", "required", "expected"), [
    (ANSWER, True, None),
    (Classification(Answer(True, 2, "TV2"), None, "TV2", 5.0), True, "answered without reasoning"),
    (Classification(Answer(True, 2, "TV2"), None, "TV2", 5.0), False, None),
    (ClassifierError("the classifier answered HTTP 404: no such model", kind="http"), True, "does not serve model 'm'"),
    (ClassifierError("answered HTTP 401: bad key", kind="http"), True, "the first classification failed"),
    # vLLM answers 500 when its parser fails on one answer: that item is scored as an error, the run goes on.
    (ClassifierError("the classifier answered HTTP 500: HarmonyError", kind="http"), True, None),
    (ClassifierError("cannot connect", kind="transport"), True, "the first classification failed"),
    (ClassifierError("no JSON", kind="malformed"), True, "the first classification failed"),
    # A fact about one item, not about the endpoint: scored as an error like any other.
    (ClassifierError("expected a code", kind="unparseable"), True, None),
    (ClassifierError("too long", kind="rejected"), True, None),
])
def test_preflight_problem(result, required, expected):
    problem = preflight_problem(result, "m", "http://x/v1", required)
    assert problem is None if expected is None else expected in (problem or "")
