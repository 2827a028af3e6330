"""Per-key rate limits: a token bucket per client name, in this process.

`take` is pure arithmetic on a bucket and a clock reading; `RateLimiter` keeps one bucket per client for
the life of the app (a config reload keeps the buckets of keys whose limit did not change). With several
replicas each holds its own buckets, so a key may reach the limit once per replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .auth import Client
from .config import RateLimit
from .errors import RateLimited


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at: float  # the clock reading `tokens` was counted at


def take(bucket: Bucket, limit: RateLimit, now: float) -> tuple[Bucket, float]:
    """(the bucket after one request, seconds to wait before it may be sent; 0 when it may go now). Pure.

    Tokens refill at requests/per_s up to `burst`; a request costs one. A refused request costs nothing."""
    capacity = float(limit.burst or limit.requests)
    rate = limit.requests / limit.per_s
    tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.at) * rate)
    if tokens >= 1 - 1e-9:  # a refill that lands on a whole token through float arithmetic counts as whole
        return Bucket(max(0.0, tokens - 1), now), 0.0
    return Bucket(tokens, now), (1 - tokens) / rate


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[str, tuple[RateLimit, Bucket]] = {}

    def admit(self, client: Client | None) -> None:
        """Count one request for this client; RateLimited (429 with Retry-After) when it is over its limit."""
        if client is None or client.rate_limit is None:
            return
        limit, now = client.rate_limit, self.clock()
        held = self.buckets.get(client.name)
        bucket = held[1] if held and held[0] == limit else Bucket(float(limit.burst or limit.requests), now)
        bucket, wait = take(bucket, limit, now)
        self.buckets[client.name] = (limit, bucket)
        if wait > 0:
            raise RateLimited(f"rate limit reached for API key '{client.name}': {limit.requests} requests per "
                              f"{limit.per_s:g}s; retry in {wait:.1f}s", retry_after_s=wait)
