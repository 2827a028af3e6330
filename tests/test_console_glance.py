"""The overview's numbers on both stores: periods of a window, per-policy counts per period, reviewer agreement
by the decision's period (the newest mark counting), and shadow agreement."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from console_seed import Seeded, check, record, shadow

from guardrail_proxy.console.glance import Point, periods, run_glance

NOW = datetime(2027, 1, 15, 10, 30, tzinfo=UTC).timestamp()
HOUR = 3600.0


@pytest.mark.parametrize(("window", "count", "size", "first"), [
    ("24h", 24, 3600, datetime(2027, 1, 14, 11, tzinfo=UTC)),
    ("7d", 7, 86400, datetime(2027, 1, 9, tzinfo=UTC)),
    ("30d", 30, 86400, datetime(2026, 12, 17, tzinfo=UTC)),
])
def test_periods_end_with_the_current_one(window, count, size, first) -> None:
    spans, got_size = periods(window, NOW)
    assert (len(spans), got_size, spans[0].start) == (count, size, first.timestamp())
    assert spans[-1].start <= NOW < spans[-1].end
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))


@pytest.mark.parametrize(("point", "rates"), [
    (Point(), (None, None, None, None, None)),
    (Point(requests=10, blocks=2, errors=1, unchecked=1, reviewed=4, correct=3, shadow_agree=9, shadow_disagree=1,
           shadow_failed=5), (0.2, 0.1, 0.1, 0.75, 0.9)),
])
def test_rates(point: Point, rates) -> None:
    assert (point.block_rate, point.error_rate, point.unchecked_rate, point.reviewer_agreement,
            point.shadow_agreement) == rates


def test_a_request_with_a_violation_and_a_failed_check_is_counted_once(seeded: Seeded) -> None:
    """The overview's bars (passed, flagged, blocked, failed) split the requests: none is subtracted twice."""
    seeded.records(
        record("both", NOW - 60, decision="block", inputs=[check(result="violation", label="TV2", action="block")],
               outputs=[check(result="error")]),
        record("fine", NOW - 60, inputs=[check()]),
        record("failed", NOW - 60, inputs=[check(result="error")]),
    )
    point = run_glance(seeded.db, "24h", NOW).series["violence"][-1]
    assert (point.requests, point.violations, point.blocks, point.errors, point.troubled) == (3, 1, 1, 2, 2)
    assert (point.passed, point.failed_only) == (1, 1)
    assert point.passed + (point.violations - point.blocks) + point.blocks + point.failed_only == point.requests


def test_points_add() -> None:
    assert Point(requests=1, correct=1) + Point(requests=2, shadow_failed=3) == Point(requests=3, correct=1,
                                                                                      shadow_failed=3)


def test_counts_per_policy_and_period(seeded: Seeded) -> None:
    last_hour = NOW - 10 * 60  # 10:20, the current period
    earlier = NOW - 3 * HOUR  # 07:30
    seeded.records(
        record("a", last_hour, inputs=[check()], outputs=[check()]),  # two checks, one request
        record("b", last_hour, decision="block", inputs=[check(result="violation", label="TV2", action="block")]),
        record("c", last_hour, decision="annotate", inputs=[check(result="violation", label="TV1",
                                                                  action="annotate")]),
        record("d", earlier, decision="unchecked", unchecked=True, inputs=[check(result="error"),
                                                                          check("selfharm", label="0")]),
        record("e", earlier, decision="unavailable", status=503, inputs=[check(result="error")]),
        record("old", NOW - 30 * HOUR, inputs=[check()]),  # outside the window
    )
    seeded.mark("b", NOW, correct=True)
    seeded.mark("c", NOW - 60, verdict="TV1", label="TV0")
    seeded.mark("c", NOW, verdict="TV1", correct=True)  # the newest mark counts
    seeded.mark("d", NOW, policy="selfharm", verdict="0", label="1")
    seeded.mark("old", NOW, verdict="TV0", correct=True)  # a mark on a decision outside the window
    seeded.shadows(shadow("b", last_hour), shadow("b", last_hour, phase="output", agree=True, enforced="TV0"),
                   shadow("c", last_hour, agree=None, result="error"), shadow("d", earlier, agree=True, enforced="TV0"))
    glance = run_glance(seeded.db, "24h", NOW)
    violence = glance.series["violence"]
    assert len(violence) == 24 and set(glance.series) == {"violence", "selfharm"}
    assert violence[-1] == Point(requests=3, violations=2, blocks=1, troubled=2, reviewed=2, correct=2,
                                 shadow_agree=1, shadow_disagree=1, shadow_failed=1)
    assert violence[-4] == Point(requests=2, errors=2, troubled=2, unchecked=1, shadow_agree=1)
    assert glance.series["selfharm"][-4] == Point(requests=1, reviewed=1, correct=0)
    assert glance.total("violence").requests == 5 and glance.total("nope") == Point()
    week = run_glance(seeded.db, "7d", NOW)
    assert len(week.series["violence"]) == 7
    assert week.series["violence"][-1].requests == 5 and week.series["violence"][-2].requests == 1
    assert week.total("violence").reviewed == 3  # the old decision's mark counts in its day
