from __future__ import annotations

from guardrail_proxy.decisions import CheckFailure, Verdict
from guardrail_proxy.metrics import Metrics


def test_prometheus_text():
    metrics = Metrics()
    metrics.inc("guardrail_requests_total", route="r", status="200", decision="allow")
    metrics.record_check(Verdict("p", "d", "input", True, 2, "X2", latency_ms=250.0))
    metrics.record_check(Verdict("p", "d", "input", False, 0, "X0", cached=True))
    metrics.record_check(CheckFailure("p", "d", "output", "timeout", 'slow "x"'))
    text = metrics.render()
    assert "# TYPE guardrail_requests_total counter" in text
    assert 'guardrail_requests_total{decision="allow",route="r",status="200"} 1' in text
    assert 'guardrail_checks_total{error="timeout",phase="output",policy="p",result="error"} 1' in text
    assert 'guardrail_check_cache_hits_total{policy="p"} 1' in text
    assert "# TYPE guardrail_classifier_seconds summary" in text
    assert 'guardrail_classifier_seconds_count{policy="p"} 1' in text
    assert 'guardrail_classifier_seconds_sum{policy="p"} 0.250000' in text
