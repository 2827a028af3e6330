"""The token bucket's arithmetic, and the limiter's bookkeeping per client."""

from __future__ import annotations

import pytest

from guardrail_proxy.auth import Client
from guardrail_proxy.config import RateLimit
from guardrail_proxy.errors import RateLimited
from guardrail_proxy.rate_limit import Bucket, RateLimiter, take

TEN_PER_S = RateLimit(requests=10, per_s=1)


@pytest.mark.parametrize(("tokens", "elapsed", "left", "wait"), [
    (10.0, 0.0, 9.0, 0.0),     # a full bucket: go
    (1.0, 0.0, 0.0, 0.0),      # the last token
    (0.0, 0.0, 0.0, 0.1),      # empty: one token takes 1/10 s
    (0.0, 0.05, 0.5, 0.05),    # half a token refilled: half the wait left
    (0.0, 5.0, 9.0, 0.0),      # refilled past capacity: capped at 10, then one taken
    (0.5, 0.05, 0.0, 0.0),     # 0.5 + 0.5 refilled = 1: go
])
def test_take(tokens, elapsed, left, wait):
    bucket, waited = take(Bucket(tokens, 100.0), TEN_PER_S, 100.0 + elapsed)
    assert bucket.tokens == pytest.approx(left, abs=1e-9) and waited == pytest.approx(wait)
    assert bucket.at == 100.0 + elapsed


def test_burst_caps_the_bucket():
    bucket, _ = take(Bucket(0.0, 0.0), RateLimit(requests=100, per_s=1, burst=3), 60.0)
    assert bucket.tokens == pytest.approx(2.0)


def test_limiter_refuses_with_retry_after_and_refills():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    client = Client("team", None, rate_limit=RateLimit(requests=2, per_s=10))
    limiter.admit(client)
    limiter.admit(client)
    with pytest.raises(RateLimited) as info:
        limiter.admit(client)
    assert info.value.status_code == 429 and info.value.headers() == {"retry-after": "5"}
    assert "team" in info.value.message
    now[0] = 5.0
    limiter.admit(client)  # one token back after per_s / requests seconds


def test_limits_are_per_client_and_a_new_limit_starts_full():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    one = Client("one", None, rate_limit=RateLimit(requests=1, per_s=60))
    limiter.admit(one)
    limiter.admit(Client("two", None, rate_limit=RateLimit(requests=1, per_s=60)))
    with pytest.raises(RateLimited):
        limiter.admit(one)
    limiter.admit(Client("one", None, rate_limit=RateLimit(requests=5, per_s=60)))  # a reload raised its limit
    limiter.admit(Client("free", None))
    limiter.admit(None)
