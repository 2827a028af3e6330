"""Telling a refused connection from a timeout by the clock (deadlines.py)."""

from __future__ import annotations

import pytest

from guardrail_proxy.deadlines import timed_out


@pytest.mark.parametrize(("elapsed", "budget", "expected"), [
    (0.002, 20.0, False),   # refused at once: nothing timed out
    (1.0, 20.0, False),     # a slow refusal is still not a timeout
    (17.9, 20.0, False),
    (18.0, 20.0, True),     # within timer granularity of the budget
    (20.0, 20.0, True),
    (35.0, 20.0, True),     # a stream that stalled after flowing for a while
    (0.0, 0.0, True),
])
def test_timed_out(elapsed, budget, expected):
    assert timed_out(elapsed, budget) is expected
