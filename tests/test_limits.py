"""Limits that keep one request from starving the rest, and faults that must never become fail-open passes:
a per-phase cap on classifier calls, a bounded classifier queue, long texts split into segments, and a
classifier that refuses a text."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
from conftest import user

from guardrail_proxy.standins.safeguard import Rule

FAIL_OPEN = {"fail_mode": "open", "input": {"speculative": False}}


def post(proxy, messages, timeout: float = 30, **extra) -> httpx.Response:
    return httpx.post(f"{proxy.url}/v1/chat/completions",
                      json={"model": "test-model", "messages": messages, **extra}, timeout=timeout)


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
