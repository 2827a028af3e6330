"""The overview's numbers: per policy and per period of a window, the requests it judged, how many it blocked,
how many of its checks failed or let a request through unchecked, how reviewers marked its verdicts, and how
often a shadow candidate agreed with it.

`WINDOWS` is the one table of windows the console offers (the overview's and the shadow page's picker, and
the query string's `window`). Periods are whole UTC hours (a 24h window) or days (7d, 30d), the current one
last. Each period is asked with a plain range over an indexed `ts`, which both SQLite and PostgreSQL answer
the same way (bucketing inside SQL would need each one's own rounding function). Reviews count toward the
period of the decision they mark, not of the mark; the newest mark on a verdict is the one that counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ..audit_reviews import REVIEW_COLUMNS, latest, review_of


@dataclass(frozen=True)
class Window:
    count: int  # periods
    size: int  # seconds per period
    title: str


WINDOWS = {"24h": Window(24, 3600, "last 24 hours, hourly"), "7d": Window(7, 86400, "last 7 days, daily"),
           "30d": Window(30, 86400, "last 30 days, daily")}
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True)
class Period:
    start: float
    end: float

    def label(self, size: int) -> str:
        moment = datetime.fromtimestamp(self.start, UTC)
        return moment.strftime("%H:00" if size == 3600 else "%b %d")


def periods(window: str, now: float) -> tuple[tuple[Period, ...], int]:
    """The window's periods, oldest first, the one holding `now` last; and their size in seconds."""
    count, size = WINDOWS[window].count, WINDOWS[window].size
    last = now - now % size
    starts = [last - (count - 1 - i) * size for i in range(count)]
    return tuple(Period(start, start + size) for start in starts), size


def bounds(window: str, now: float) -> tuple[float, float]:
    """[since, until) of the window's periods: what the overview plots and the shadow page counts."""
    spans, _ = periods(window, now)
    return spans[0].start, spans[-1].end


@dataclass(frozen=True)
class Point:
    """One policy in one period."""

    requests: int = 0
    violations: int = 0
    blocks: int = 0
    errors: int = 0
    troubled: int = 0  # requests with a violation or a failed check (or both): each counted once
    unchecked: int = 0
    reviewed: int = 0
    correct: int = 0
    shadow_agree: int = 0
    shadow_disagree: int = 0
    shadow_failed: int = 0

    def __add__(self, other: Point) -> Point:
        return Point(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, ...]:
        return (self.requests, self.violations, self.blocks, self.errors, self.troubled, self.unchecked,
                self.reviewed, self.correct, self.shadow_agree, self.shadow_disagree, self.shadow_failed)

    @staticmethod
    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def passed(self) -> int:
        """Requests with neither a violation nor a failed check of this policy."""
        return self.requests - self.troubled

    @property
    def failed_only(self) -> int:
        """Requests with a failed check and no violation (a violation counts as flagged or blocked)."""
        return self.troubled - self.violations

    @property
    def block_rate(self) -> float | None:
        return self.share(self.blocks, self.requests)

    @property
    def error_rate(self) -> float | None:
        return self.share(self.errors, self.requests)

    @property
    def unchecked_rate(self) -> float | None:
        return self.share(self.unchecked, self.requests)

    @property
    def reviewer_agreement(self) -> float | None:
        return self.share(self.correct, self.reviewed)

    @property
    def shadow_agreement(self) -> float | None:
        return self.share(self.shadow_agree, self.shadow_agree + self.shadow_disagree)


@dataclass(frozen=True)
class Glance:
    window: str
    periods: tuple[Period, ...]
    size: int
    series: dict[str, tuple[Point, ...]] = field(default_factory=dict)  # policy -> one point per period

    def total(self, policy: str) -> Point:
        points = self.series.get(policy, ())
        return sum(points, Point())


CHECKS = ("SELECT c.policy, COUNT(DISTINCT c.request_id), "
          "COUNT(DISTINCT CASE WHEN c.result = 'violation' THEN c.request_id END), "
          "COUNT(DISTINCT CASE WHEN c.result = 'violation' AND c.action = 'block' THEN c.request_id END), "
          "COUNT(DISTINCT CASE WHEN c.result = 'error' THEN c.request_id END), "
          "COUNT(DISTINCT CASE WHEN c.result IN ('violation', 'error') THEN c.request_id END), "
          "COUNT(DISTINCT CASE WHEN c.result = 'error' AND r.unchecked = 1 THEN c.request_id END) "
          "FROM checks c JOIN records r ON r.request_id = c.request_id "
          "WHERE c.ts >= ? AND c.ts < ? AND c.policy IS NOT NULL GROUP BY c.policy")
SHADOWS = ("SELECT policy, SUM(CASE WHEN agree = 1 THEN 1 ELSE 0 END), SUM(CASE WHEN agree = 0 THEN 1 ELSE 0 END), "
           "SUM(CASE WHEN agree IS NULL THEN 1 ELSE 0 END) FROM shadow_checks WHERE ts >= ? AND ts < ? "
           "GROUP BY policy")
MARKED = (f"SELECT {', '.join('v.' + c for c in REVIEW_COLUMNS)}, r.ts FROM reviews v "
          "JOIN records r ON r.request_id = v.request_id WHERE r.ts >= ? AND r.ts < ?")


def index_of(spans: tuple[Period, ...], ts: float) -> int | None:
    for i, span in enumerate(spans):
        if span.start <= ts < span.end:
            return i
    return None


def run_glance(db: Any, window: str, now: float) -> Glance:
    spans, size = periods(window, now)
    grid: dict[str, list[Point]] = {}

    def cell(policy: str, i: int) -> Point:
        return grid.setdefault(policy, [Point()] * len(spans))[i]

    def put(policy: str, i: int, point: Point) -> None:
        grid.setdefault(policy, [Point()] * len(spans))[i] = point

    for i, span in enumerate(spans):
        for policy, requests, found, blocks, errors, troubled, unchecked in db.execute(CHECKS, [span.start,
                                                                                                 span.end]):
            put(policy, i, replace(cell(policy, i), requests=int(requests), violations=int(found),
                                   blocks=int(blocks), errors=int(errors), troubled=int(troubled),
                                   unchecked=int(unchecked)))
        for policy, agree, disagree, failed in db.execute(SHADOWS, [span.start, span.end]):
            put(policy, i, replace(cell(policy, i), shadow_agree=int(agree or 0), shadow_disagree=int(disagree or 0),
                                   shadow_failed=int(failed or 0)))
    rows = db.execute(MARKED, [spans[0].start, spans[-1].end]).fetchall()
    decided = {row[1]: float(row[-1]) for row in rows}  # request_id -> the decision's time
    for review in latest([review_of(tuple(row[:-1])) for row in rows]).values():
        at = index_of(spans, decided[review.request_id])
        if at is not None:
            point = cell(review.policy, at)
            put(review.policy, at, replace(point, reviewed=point.reviewed + 1,
                                           correct=point.correct + int(review.correct)))
    return Glance(window, spans, size, {policy: tuple(points) for policy, points in sorted(grid.items())})
