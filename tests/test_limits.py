"""Limits that keep one request from starving the rest, and faults that must never become fail-open passes:
a per-phase cap on classifier calls, a bounded classifier queue, long texts split into segments, and a
classifier that refuses a text."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from conftest import metric, user

from guardrail_proxy.pipeline import over_fair_share
from guardrail_proxy.standins.safeguard import Rule

FAIL_OPEN = {"fail_mode": "open", "input": {"speculative": False}}


def post(proxy, messages, timeout: float = 30, model: str = "test-model", **extra) -> httpx.Response:
    with httpx.Client(timeout=timeout) as client:
        return client.post(f"{proxy.url}/v1/chat/completions", json={"model": model, "messages": messages, **extra})


def test_a_huge_request_is_refused_whole_and_does_not_starve_another_client(make_proxy):
    proxy = make_proxy({"input": {"scope": "all", "speculative": False}},
                       server_cfg={"max_body_bytes": 4_000_000})
    huge = [{"role": "user", "content": f"message number {i}"} for i in range(12_000)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        big = pool.submit(post, proxy, huge)
        time.sleep(0.05)
        started = time.monotonic()
        small = post(proxy, user("a one-line question"))
        small_s = time.monotonic() - started
        refused = big.result()
    assert small.status_code == 200 and small_s < 3.0
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_many_checks"
    assert "12000 new classifier calls" in refused.json()["error"]["message"]
    # The refused request made no classifier call and never reached the model.
    sent = [r["messages"][1]["content"] for r in proxy.classifier.requests]
    assert not any("message number" in s for s in sent)
    assert all("message number" not in str(r) for r in proxy.upstream.requests)
    assert any(r["status"] == 413 for r in proxy.wait_audit(2))
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert metric(metrics, "guardrail_checks_total", outcome="error", error="too_many") == 1
    assert metric(metrics, "guardrail_requests_total", status="413") == 1


def test_history_already_judged_does_not_count_against_the_cap(make_proxy):
    proxy = make_proxy({"input": {"scope": "all", "speculative": False}, "max_checks": 3})
    history = [{"role": "user", "content": f"turn {i}"} for i in range(3)]
    assert post(proxy, history).status_code == 200
    # Three earlier turns are cached; only the new turn needs a call.
    assert post(proxy, [*history, {"role": "user", "content": "turn 3"}]).status_code == 200
    assert post(proxy, [{"role": "user", "content": f"fresh {i}"} for i in range(4)]).status_code == 413


def test_a_long_text_is_checked_in_segments_to_its_last_character(make_proxy):
    proxy = make_proxy(FAIL_OPEN, classifier={"max_input_chars": 2000})
    proxy.classifier.max_content_chars = 2000
    proxy.classifier.rules.append(Rule("blood bath", 3))
    text = "A calm and ordinary sentence about the weather. " * 200 + "Then the blood bath began."
    response = post(proxy, user(text))
    assert response.status_code == 400 and response.json()["error"]["code"] == "content_policy_violation"
    sent = [r["messages"][1]["content"] for r in proxy.classifier.requests]
    assert len(sent) >= 5 and all(len(s) <= 2000 for s in sent)


def test_a_classifier_refusing_the_text_is_never_a_fail_open_pass(make_proxy):
    proxy = make_proxy(FAIL_OPEN, classifier={"max_input_chars": 50_000})
    proxy.classifier.max_content_chars = 1000  # the classifier's real context is smaller than configured
    response = post(proxy, user("padding " * 1000 + "blood bath"))
    assert response.status_code == 400, response.text
    body = response.json()["error"]
    assert body["code"] == "content_not_checkable" and "maximum context length" not in body["message"]
    assert proxy.upstream.requests == []
    [record] = proxy.wait_audit()
    assert record["phases"][0]["checks"][0]["error_kind"] == "rejected"
    assert "maximum context length" in record["phases"][0]["checks"][0]["error"]


def test_overload_is_a_503_with_retry_after_even_when_failing_open(make_proxy):
    proxy = make_proxy(FAIL_OPEN, classifier={"max_concurrency": 1, "max_queue": 0, "cache_entries": 0})
    proxy.classifier.delay_s = 0.5
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: post(proxy, user(f"question {i}")), range(3)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 200 and 503 in statuses, statuses
    overloaded = next(a for a in answers if a.status_code == 503)
    assert overloaded.json()["error"]["code"] == "guardrail_overloaded"
    assert overloaded.headers["retry-after"] == "1"
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert metric(metrics, "guardrail_checks_total", outcome="overload", error="overload") >= 1
    assert metric(metrics, "guardrail_requests_total", status="503") >= 1


@pytest.mark.parametrize(("mine", "others", "wanted", "capacity", "over"), [
    (0, 0, 500, 100, False),   # alone, a route may use the whole classifier
    (0, 1, 50, 100, False),
    (0, 1, 51, 100, True),     # with company, at most half
    (40, 5, 10, 100, False),
    (45, 5, 10, 100, True),
    (0, 3, 1, 1, False),       # the smallest share is one call
])
def test_over_fair_share(mine, others, wanted, capacity, over):
    assert over_fair_share(mine, others, wanted, capacity) is over


def test_a_busy_route_cannot_take_the_whole_classifier_from_another(make_proxy):
    other = {"models": ["other-model"], "upstream": "standin", "policies": [{"id": "violence"}],
             "input": {"speculative": False}}
    proxy = make_proxy({"input": {"scope": "all", "speculative": False}},
                       classifier={"max_concurrency": 2, "max_queue": 2, "cache_entries": 0},
                       extra_routes={"other": other})
    proxy.classifier.delay_s = 0.6
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(post, proxy, user("a question on the other route"), model="other-model")
        time.sleep(0.2)  # the other route now has a call in flight
        busy = post(proxy, [{"role": "user", "content": f"part {i}"} for i in range(3)])
        assert slow.result().status_code == 200
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "guardrail_overloaded"
    errors = [c.get("error", "") for r in proxy.wait_audit(2) for p in r["phases"] for c in p["checks"]]
    assert any("fair share" in e for e in errors)


def test_a_call_that_times_out_in_our_own_queue_is_overload_not_a_pass(make_proxy):
    proxy = make_proxy(FAIL_OPEN, classifier={"max_concurrency": 1, "max_queue": 10, "timeout_s": 0.5,
                                              "cache_entries": 0, "retries": 0})
    proxy.classifier.delay_s = 0.3
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: post(proxy, user(f"queued question {i}")), range(4)))
    assert any(a.status_code == 503 for a in answers)
    for answer in answers:
        assert "x-guardrail-unchecked" not in answer.headers, "a queue timeout became a fail-open pass"
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "guardrail_overloaded"
