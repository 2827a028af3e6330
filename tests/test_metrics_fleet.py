"""The merge of the workers' /metrics pages (metrics_fleet.py), pure: each metric merges by its own rule
(counters and histograms per worker, gauges combined), no counter series goes down when a worker misses a
scrape or is replaced, the worker label is the merge's own, and a garbled page counts as not answered."""

from __future__ import annotations

import pytest
from conftest import metric
from fleet_harness import fleet_total
from prometheus_client.parser import text_string_to_metric_families

from guardrail_proxy.metrics_fleet import Page, merge

PAGE = """# HELP guardrail_requests_total Requests
# TYPE guardrail_requests_total counter
guardrail_requests_total{{route="main"}} {requests}
# HELP guardrail_requests_created Requests
# TYPE guardrail_requests_created gauge
guardrail_requests_created{{route="main"}} {created}
# HELP guardrail_classifier_seconds One call
# TYPE guardrail_classifier_seconds histogram
guardrail_classifier_seconds_bucket{{le="0.1"}} {fast}
guardrail_classifier_seconds_bucket{{le="+Inf"}} {requests}
guardrail_classifier_seconds_count {requests}
guardrail_classifier_seconds_sum {seconds}
# HELP guardrail_requests_in_flight In flight
# TYPE guardrail_requests_in_flight gauge
guardrail_requests_in_flight {flying}
# HELP guardrail_config_generation Generation
# TYPE guardrail_config_generation gauge
guardrail_config_generation {generation}
# HELP guardrail_config_last_reload_ok Last reload
# TYPE guardrail_config_last_reload_ok gauge
guardrail_config_last_reload_ok {ok}
"""


def page(worker: int, requests: int, fast: int, seconds: float, flying: int, generation: int, ok: int,
         created: float) -> Page:
    return Page(worker, 100 + worker, PAGE.format(requests=requests, fast=fast, seconds=seconds, flying=flying,
                                                  generation=generation, ok=ok, created=created), f"d{worker}")


def merged(*pages: Page) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(merge(pages)) for s in family.samples}


@pytest.mark.parametrize(("sample", "labels", "expected"), [
    ("guardrail_requests_total", {"route": "main", "worker": "0"}, 10),  # counters: one series per worker
    ("guardrail_requests_total", {"route": "main", "worker": "1"}, 2),
    ("guardrail_classifier_seconds_bucket", {"le": "0.1", "worker": "0"}, 6),  # histograms too, every part
    ("guardrail_classifier_seconds_bucket", {"le": "+Inf", "worker": "1"}, 2),
    ("guardrail_classifier_seconds_count", {"worker": "0"}, 10),
    ("guardrail_classifier_seconds_sum", {"worker": "1"}, 0.5),
    ("guardrail_requests_created", {"route": "main", "worker": "1"}, 1000.0),  # a counter's start, per worker
    ("guardrail_requests_in_flight", {}, 5),  # load gauges: summed
    ("guardrail_config_generation", {}, 2),  # the oldest generation serving
    ("guardrail_config_last_reload_ok", {}, 0),  # any failed reload shows
    ("guardrail_fleet_workers", {}, 3),
    ("guardrail_worker_up", {"worker": "0", "pid": "100"}, 1),
    ("guardrail_worker_up", {"worker": "2", "pid": ""}, 0),  # did not answer: counted as down, not as zero
    ("guardrail_worker_config_generation", {"worker": "1"}, 2),
    ("guardrail_worker_config_last_reload_ok", {"worker": "1"}, 0),
    ("guardrail_worker_config_info", {"worker": "1", "digest": "d1"}, 1),
])
def test_pages_merge_by_the_rule_of_each_metric(sample, labels, expected):
    pages = [page(0, 10, 6, 1.0, 3, 3, 1, 2000.0), page(1, 2, 1, 0.5, 2, 2, 0, 1000.0), Page(2, None, None)]
    assert merged(*pages)[(sample, tuple(sorted(labels.items())))] == expected


def test_no_counter_series_goes_down_when_a_worker_misses_a_scrape_or_is_replaced():
    both = merged(page(0, 10, 6, 1.0, 0, 1, 1, 1.0), page(1, 7, 7, 0.7, 0, 1, 1, 1.0))
    missed = merged(page(0, 11, 7, 1.1, 0, 1, 1, 1.0), Page(1, 101, None))
    replaced = merged(page(0, 12, 8, 1.2, 0, 1, 1, 1.0), page(1, 1, 1, 0.1, 0, 0, 1, 50.0))
    counters = {key for key in both if key[0].startswith("guardrail_classifier_seconds")
                or key[0] == "guardrail_requests_total"}
    for key in counters:  # worker 0's series only grows; worker 1's is absent, then restarts: a reset of its own
        worker = dict(key[1])["worker"]
        if worker == "0":
            assert both[key] <= missed[key] <= replaced[key]
        else:
            assert key not in missed and replaced[key] <= both[key]
    assert not [key for key in {*both, *replaced} if key[0].endswith(("_total", "_count", "_sum", "_bucket"))
                and "worker" not in dict(key[1])]


def test_a_worker_label_is_the_merges_own():
    series = merged(Page(4, 1, "# TYPE x_total counter\nx_total{worker=\"elsewhere\"} 3\n"))
    assert [(key, value) for key, value in series.items() if key[0] == "x_total"] == [
        (("x_total", (("worker", "4"),)), 3.0)]


def test_a_garbled_page_counts_as_not_answered():
    text = merge([page(0, 4, 4, 0.1, 0, 0, 1, 1.0), Page(1, 101, "guardrail_requests_total{{{ nonsense")])
    assert fleet_total(text, "guardrail_requests_total") == 4
    assert metric(text, "guardrail_worker_up", worker="1") == 0
    assert metric(text, "guardrail_worker_up", worker="0") == 1
