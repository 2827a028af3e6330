"""The metrics as Prometheus reads them: parsed back with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from conftest import JSON_POLICY, VIOLENCE_POLICY, metric
from prometheus_client.parser import text_string_to_metric_families

from guardrail_proxy.audit import AuditRecord
from guardrail_proxy.config import Action
from guardrail_proxy.decisions import CheckFailure, Decision, Outcome, Triggered, Verdict
from guardrail_proxy.metrics import Metrics, label_of, outcome_kind
from guardrail_proxy.policies import parse_policy

POLICIES = {"p": parse_policy(VIOLENCE_POLICY.replace("id: violence", "id: p"), "p.md"),
            "spam": parse_policy(JSON_POLICY, "spam.md")}
VIOLATION = Verdict("p", "d", "input", True, 2, "TV2", latency_ms=250.0)
PASS = Verdict("p", "d", "input", False, 0, "TV0", cached=True)
TIMEOUT = CheckFailure("p", "d", "output", "timeout", 'slow "x"', latency_ms=2000.0)
OVERLOAD = CheckFailure("p", "d", "output", "overload", "queue full")


@pytest.mark.parametrize(("outcome", "decision_outcome", "failures", "kind"), [
    (VIOLATION, Outcome.BLOCK, (), "violation"),
    (PASS, Outcome.ALLOW, (), "pass"),
    (TIMEOUT, Outcome.UNAVAILABLE, (TIMEOUT,), "error"),      # failed closed
    (TIMEOUT, Outcome.ALLOW, (TIMEOUT,), "unchecked"),        # let through by a fail-open route
    (OVERLOAD, Outcome.UNAVAILABLE, (OVERLOAD,), "overload"),
])
def test_outcome_kind(outcome, decision_outcome, failures, kind):
    assert outcome_kind(Decision("input", decision_outcome, (outcome,), (), failures), outcome) == kind


@pytest.mark.parametrize(("outcome", "label"), [
    (VIOLATION, "TV2"),                                                    # a label the policy defines
    (Verdict("p", "d", "input", True, 2, "TV9"), "1"),                     # one it does not: 0/1
    (Verdict("spam", "d", "input", True, 1, "any text the classifier chose"), "1"),  # a JSON category
    (Verdict("spam", "d", "input", False, 0, None), "0"),
    (Verdict("gone", "d", "input", False, 0, "TV0"), "0"),                 # a policy no longer loaded
    (TIMEOUT, ""),
])
def test_labels_are_bounded_by_the_policies(outcome, label):
    assert label_of(outcome, POLICIES) == label


class Load:
    def load(self):
        return {"default": (3, 7)}

    def in_flight(self):
        return 5

    def relayed_skips(self):
        return 12


def test_exposition_parses_and_counts():
    metrics = Metrics()
    metrics.watch(Load())
    for outcome in (VIOLATION, PASS, TIMEOUT):
        metrics.record_check(outcome)
    record = AuditRecord("r1", route="teen", model="m", client="teen-app", status=400)
    triggered = Triggered(VIOLATION, Action.BLOCK, "no", "")
    record.decisions.append(Decision("input", Outcome.BLOCK, (VIOLATION,), (triggered,)))
    record.timing.upstream_s, record.timing.total_s = 0.5, 0.62
    metrics.record_request("chat", record, POLICIES)
    text = metrics.render()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"guardrail_requests", "guardrail_checks", "guardrail_classifier_seconds", "guardrail_added_latency_seconds",
            "guardrail_stream_ttft_seconds", "guardrail_requests_in_flight", "guardrail_classifier_queue_depth",
            "guardrail_check_cache_hits", "guardrail_config_reloads"} <= names
    assert metric(text, "guardrail_requests_total", endpoint="chat", route="teen", client="teen-app", status="400",
                  decision="block") == 1
    assert metric(text, "guardrail_checks_total", route="teen", phase="input", policy="p", label="TV2", action="block",
                  outcome="violation") == 1
    assert metric(text, "guardrail_check_cache_hits_total", policy="p") == 1
    assert metric(text, "guardrail_classifier_seconds_count", policy="p", result="ok") == 1
    assert metric(text, "guardrail_classifier_seconds_sum", policy="p", result="ok") == pytest.approx(0.25)
    assert metric(text, "guardrail_classifier_seconds_count", result="timeout") == 1
    assert metric(text, "guardrail_added_latency_seconds_sum", kind="completion") == pytest.approx(0.12)
    assert metric(text, "guardrail_requests_in_flight") == 5
    assert metric(text, "guardrail_classifier_in_flight", classifier="default") == 3
    assert metric(text, "guardrail_classifier_queue_depth", classifier="default") == 7


def test_a_stream_counts_its_time_to_first_token_and_what_the_proxy_added():
    metrics = Metrics()
    record = AuditRecord("r2", route="teen", model="m")
    record.timing.upstream_first_s, record.timing.first_event_s = 0.2, 0.35
    metrics.record_request("chat", record, POLICIES)
    text = metrics.render()
    assert metric(text, "guardrail_stream_ttft_seconds_sum", route="teen") == pytest.approx(0.35)
    assert metric(text, "guardrail_added_latency_seconds_sum", kind="stream_ttft") == pytest.approx(0.15)
    assert metric(text, "guardrail_added_latency_seconds_count", kind="completion") == 0


def test_two_apps_keep_their_own_registries():
    one, two = Metrics(), Metrics()
    one.reloaded(True)
    assert metric(two.render(), "guardrail_config_reloads_total") == 0
