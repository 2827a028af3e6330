"""Pure parts of eval: metrics, percentiles, confusion, flips, the report builders, cache keys."""

from __future__ import annotations

import json

import pytest

from guardrail_proxy.dataset_rows import Example
from guardrail_proxy.evaluation.cache import CachedAnswer, Endpoint, cache_key, parse_entry
from guardrail_proxy.evaluation.compare import compare, find_flips, shown
from guardrail_proxy.evaluation.export import comparison_summary, result_rows, run_summary
from guardrail_proxy.evaluation.formatting import clip, one_line
from guardrail_proxy.evaluation.report import comparison_report, markdown_report
from guardrail_proxy.evaluation.results import Failure, ItemResult, Prediction, outcome_of
from guardrail_proxy.evaluation.runs import EvalRun, RunInfo
from guardrail_proxy.evaluation.scoring import Counts, count, metrics_of, percentile, summarize


def example(item_id: str, label: str, text: str = "some text", categories: tuple[str, ...] = (),
            role: str = "user") -> Example:
    level = int(label[-1]) if label[:-1] else None
    return Example(item_id, text, label, bool(int(label[-1])), level, role, (), int(item_id[1:]), categories)


def predicted(ex: Example, label: str | None, latency: float = 10.0, cached: bool = False) -> ItemResult:
    if label is None:
        return ItemResult(ex, None, Failure("unparseable", "garbage"))
    level = int(label[-1])
    prediction = Prediction(level > 0, level, label, None, f"because {ex.id}", label, latency, 100, 20)
    return ItemResult(ex, prediction, cached=cached)


@pytest.mark.parametrize(("counts", "precision", "recall", "f1", "accuracy"), [
    (Counts(tp=3, fp=1, fn=2, tn=4), 0.75, 0.6, 0.9 / 1.35, 0.7),
    (Counts(tp=5, fp=0, fn=0, tn=5), 1.0, 1.0, 1.0, 1.0),
    (Counts(tp=0, fp=2, fn=3, tn=5), 0.0, 0.0, 0.0, 0.5),
    (Counts(tp=0, fp=0, fn=0, tn=4), None, None, None, 1.0),  # nothing predicted, nothing to find
    (Counts(tp=0, fp=0, fn=4, tn=0), None, 0.0, None, 0.0),
    (Counts(tp=2, fp=2, fn=0, tn=0, errors=9), 0.5, 1.0, 2 / 3, 0.5),  # errors change nothing
    (Counts(errors=3), None, None, None, None),
])
def test_metrics_by_hand(counts, precision, recall, f1, accuracy):
    metrics = metrics_of(counts)
    assert metrics.precision == pytest.approx(precision) if precision is not None else metrics.precision is None
    assert metrics.recall == pytest.approx(recall) if recall is not None else metrics.recall is None
    assert metrics.f1 == pytest.approx(f1) if f1 is not None else metrics.f1 is None
    assert metrics.accuracy == pytest.approx(accuracy) if accuracy is not None else metrics.accuracy is None


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None),
    ([7.0], 99, 7.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
    ([4.0, 3.0, 2.0, 1.0], 90, 4.0),
    ([float(v) for v in range(1, 101)], 50, 50.0),
    ([float(v) for v in range(1, 101)], 90, 90.0),
    ([float(v) for v in range(1, 101)], 99, 99.0),
    ([float(v) for v in range(1, 11)], 99, 10.0),
    ([float(v) for v in range(1, 11)], 0, 1.0),
])
def test_nearest_rank_percentile(values, q, expected):
    assert percentile(values, q) == expected


def test_errors_are_counted_apart_and_never_scored():
    results = [predicted(example("e1", "TV2"), None), predicted(example("e2", "TV0"), None),
               predicted(example("e3", "TV2"), "TV2"), predicted(example("e4", "TV0"), "TV0")]
    assert count(results) == Counts(tp=1, fp=0, fn=0, tn=1, errors=2)
    summary = summarize(results, ("TV0", "TV1", "TV2", "TV3"))
    assert summary.errors_by_kind == {"unparseable": 2}
    assert summary.metrics.accuracy == 1.0
    # The confusion table holds scored items only: the two errors appear nowhere.
    assert sum(sum(row.values()) for row in summary.confusion.counts.values()) == 2


def test_confusion_rows_expected_columns_predicted_in_policy_order():
    results = [predicted(example("e1", "DR0"), "DR2"), predicted(example("e2", "DR2"), "DR2"),
               predicted(example("e3", "DR3"), "DR1"), predicted(example("e4", "DR0"), "DR0")]
    confusion = summarize(results, ("DR0", "DR1", "DR2", "DR3")).confusion
    assert confusion.labels == ("DR0", "DR1", "DR2", "DR3")
    assert confusion.counts["DR0"] == {"DR0": 1, "DR1": 0, "DR2": 1, "DR3": 0}
    assert confusion.counts["DR3"]["DR1"] == 1
    # Binary labels: no confusion table, only the binary metrics.
    assert summarize([predicted(example("e1", "1"), "DR2")]).confusion is None


def test_latency_usage_and_cache_counts():
    results = [predicted(example(f"e{i}", "TV0"), "TV0", latency=float(i), cached=i % 2 == 0) for i in range(1, 11)]
    summary = summarize([*results, predicted(example("e11", "TV0"), None)])
    assert (summary.latency.p50, summary.latency.p90, summary.latency.p99) == (5.0, 9.0, 10.0)
    assert (summary.usage.prompt_tokens, summary.usage.completion_tokens, summary.usage.reported) == (1000, 200, 10)
    assert (summary.cache_hits, summary.cache_misses) == (5, 6)


def test_flips_are_verdict_changes_with_their_effect():
    items = [example("e1", "TV0"), example("e2", "TV2"), example("e3", "TV2"), example("e4", "TV0"),
             example("e5", "TV1")]
    old = [predicted(items[0], "TV2"), predicted(items[1], "TV0"), predicted(items[2], "TV2"),
           predicted(items[3], "TV0"), predicted(items[4], None)]
    new = [predicted(items[0], "TV0"), predicted(items[1], "TV3"), predicted(items[2], "TV3"),
           predicted(items[3], "TV1"), predicted(items[4], "TV1")]
    flips = find_flips(old, new)
    assert [(f.example.id, shown(f.old), shown(f.new), f.effect) for f in flips] == [
        ("e1", "violation TV2", "allowed TV0", "fixed"),
        ("e2", "allowed TV0", "violation TV3", "fixed"),
        ("e4", "allowed TV0", "violation TV1", "broke"),
        ("e5", "error", "violation TV1", "changed"),
    ]  # e3 went TV2 -> TV3: a severity change, not a flip
    with pytest.raises(ValueError, match="same examples"):
        find_flips(old, new[::-1])


INFO = RunInfo("violence", "a" * 64, "violence.md", "set.jsonl", "m", "low", "http://x/v1", "2025-01-01T00:00:00")


def test_markdown_report_lists_mistakes_with_reasoning_and_errors():
    items = [example("e1", "TV0", "pillow | fight"), example("e2", "TV2", "quiet\nthreat"), example("e3", "TV1")]
    results = (predicted(items[0], "TV2"), predicted(items[1], "TV0"), predicted(items[2], None))
    run = EvalRun(INFO, results, summarize(results, ("TV0", "TV1", "TV2", "TV3")))
    report = markdown_report(run)
    assert "| 0.000 | 0.000 | 0.000 | 0.000 | 0 | 1 | 1 | 0 | 1 |" in report
    assert "## False positives (1)" in report and "### `e1` (line 1, user): expected TV0, predicted TV2" in report
    assert "## False negatives (1)" in report and "> quiet\n> threat" in report
    assert "> because e1" in report and "> because e2" in report
    assert "- `e3` (line 3): unparseable: garbage" in report
    assert "| **TV0** | 0 | 0 | 1 | 0 |" in report
    assert "\n\n\n" not in report
    rows = result_rows(run)
    assert [r["outcome"] for r in rows] == ["fp", "fn", "error"]
    assert rows[2]["error_kind"] == "unparseable" and rows[2]["predicted"] is None
    json.dumps(run_summary(run))  # JSON-ready all the way down


def test_comparison_report_shows_deltas_and_flips():
    items = [example("e1", "TV0", "pillow fight"), example("e2", "TV2")]
    old_results = (predicted(items[0], "TV2"), predicted(items[1], "TV2"))
    new_results = (predicted(items[0], "TV0"), predicted(items[1], "TV2"))
    old = EvalRun(INFO, old_results, summarize(old_results))
    new = EvalRun(INFO, new_results, summarize(new_results))
    comparison = compare(old_results, new_results, old.summary, new.summary)
    report = comparison_report(old, new, comparison)
    assert "| precision | 0.500 | 1.000 | +0.500 |" in report
    assert "| accuracy | 0.500 | 1.000 | +0.500 |" in report
    assert "1 fixed, 0 broke, p = 1" in report  # one changed item is never significant
    assert "## Flipped verdicts (1: 1 fixed, 0 broke, 0 to or from an error)" in report
    assert "| `e1` | 1 | TV0 | violation TV2 | allowed TV0 | fixed | pillow fight |" in report
    summary = comparison_summary(old, new, comparison)
    [flip] = summary["flips"]
    assert (flip["id"], flip["label"], flip["effect"]) == ("e1", "TV0", "fixed")
    assert flip["old"]["predicted"] == "TV2" and flip["new"]["predicted"] == "TV0"
    assert flip["old"]["reasoning"] == "because e1" and flip["new"]["violation"] is False
    assert "**old:** violation TV2" in report and "**new:** allowed TV0" in report
    assert summary["deltas"]["precision"]["delta"] == pytest.approx(0.5)


def test_cache_key_covers_endpoint_model_effort_max_tokens_digest_and_text():
    endpoint = Endpoint("http://a/v1", "m", "low")
    base = cache_key(endpoint, "d1", "text")
    assert base == cache_key(Endpoint("http://a/v1/", "m", "low"), "d1", "text")  # a trailing slash is no change
    others = {cache_key(endpoint, "d2", "text"), cache_key(endpoint, "d1", "text!"),
              cache_key(Endpoint("http://b/v1", "m", "low"), "d1", "text"),
              cache_key(Endpoint("http://a/v1", "m2", "low"), "d1", "text"),
              cache_key(Endpoint("http://a/v1", "m", "high"), "d1", "text"),
              cache_key(Endpoint("http://a/v1", "m", "low", 4096), "d1", "text")}
    assert len(others) == 6 and base not in others


@pytest.mark.parametrize(("line", "expected"), [
    ('{"key": "k", "raw": "TV2", "reasoning": "r", "latency_ms": 3, "prompt_tokens": 1, "completion_tokens": 2}',
     ("k", CachedAnswer("TV2", "r", 3.0, 1, 2))),
    ('{"key": "k", "raw": "TV2", "latency_ms": 3}', ("k", CachedAnswer("TV2", None, 3.0, None, None))),
    ('{"key": "k", "raw": "TV2", "lat', None),  # torn by an interrupted run
    ('{"key": "k"}', None),
    ("[]", None),
    ("", None),
])
def test_cache_lines(line, expected):
    assert parse_entry(line) == expected


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("a  b\nc", 80, "a b c"),
    ("abcdef", 4, "abc…"),
])
def test_one_line(text, limit, expected):
    assert one_line(text, limit) == expected


def test_clip_says_how_much_is_left_out():
    assert clip("abcdef", 4) == "abcd… [2 more characters]"
    assert clip("abc", 4) == "abc"


@pytest.mark.parametrize(("label", "predicted_label", "threshold", "outcome"), [
    ("TV2", "TV2", 1, "tp"),
    ("TV1", "TV2", 2, "fp"),  # a level-1 label is negative at threshold 2
    ("TV2", "TV1", 2, "fn"),  # a level-1 answer is negative at threshold 2
    ("TV1", "TV1", 2, "tn"),
    ("TV3", "TV3", 3, "tp"),
    ("1", "TV1", 2, "fn"),  # a 0/1 label has no level: "1" stays positive at any threshold
    ("TV3", "1", 3, "tp"),  # a binary answer has no level either
    ("TV0", None, 2, "error"),
])
def test_a_severity_threshold_moves_the_positive_class(label, predicted_label, threshold, outcome):
    assert outcome_of(predicted(example("e1", label), predicted_label), threshold) == outcome


def test_breakdowns_by_category_role_and_label():
    results = [
        predicted(example("e1", "TV2", categories=("weapons", "gore")), "TV2"),
        predicted(example("e2", "TV2", categories=("weapons",)), "TV0"),
        predicted(example("e3", "TV0", categories=("gore",), role="assistant"), "TV1"),
        predicted(example("e4", "TV0", role="assistant"), "TV0"),
    ]
    b = summarize(results).breakdowns
    by_category = {g.name: g for g in b.by_category}
    assert list(by_category) == ["gore", "weapons"]  # e4 has none and is in no category group
    assert by_category["weapons"].items == 2 and by_category["weapons"].metrics.recall == pytest.approx(0.5)
    assert by_category["gore"].metrics.counts == Counts(tp=1, fp=1)
    assert by_category["gore"].metrics.precision == pytest.approx(0.5)
    assert [(g.name, g.items) for g in b.by_role] == [("assistant", 2), ("user", 2)]
    assert [(g.name, g.metrics.counts) for g in b.by_label] == [("TV0", Counts(fp=1, tn=1)),
                                                                ("TV2", Counts(tp=1, fn=1))]
    report = markdown_report(EvalRun(INFO, tuple(results), summarize(results)))
    assert "| weapons | 2 | 1.000 | 0.500 |" in report and "### By role" in report


def test_the_markdown_report_is_capped():
    results = tuple(predicted(example(f"e{i}", "TV0", f"text {i}"), "TV2") for i in range(1, 31))
    report = markdown_report(EvalRun(INFO, results, summarize(results)), max_listed=5)
    assert report.count("### `e") == 5 and "... and 25 more in results.jsonl." in report


def test_at_a_threshold_flips_are_outcome_changes_as_mcnemar_counts_them():
    items = [example("e1", "TV2"), example("e2", "TV0")]
    old = [predicted(items[0], "TV1"), predicted(items[1], "TV1")]
    new = [predicted(items[0], "TV2"), predicted(items[1], "TV0")]
    comparison = compare(old, new, summarize(old, threshold=2), summarize(new, threshold=2))
    # e1 went fn -> tp; e2 stayed a tn at threshold 2 (TV1 and TV0 both count as allowed there).
    assert [(f.example.id, f.effect) for f in comparison.flips] == [("e1", "fixed")]
    assert (comparison.mcnemar.fixed, comparison.mcnemar.broke) == (1, 0)
