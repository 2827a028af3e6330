"""Whether an HTTP client's timeout error was a timeout: decided by our own clock, not the client's internals.

The openai SDK's aiohttp client (the cheaper of its two, by about a quarter of the proxy's throughput here)
raises `APITimeoutError` for a refused connection too, within milliseconds. The public exception types
cannot tell the two apart and the exception chain is no contract, but the clock can: a real timeout fires
only once its budget has run out (every phase of a call shares one budget), so one raised well before that
means nothing answered at all. Callers time the call and ask `timed_out`.
"""

from __future__ import annotations

# Timers never fire early; the margin only absorbs clock granularity, never a real wait.
GENUINE_FRACTION = 0.9


def timed_out(elapsed_s: float, budget_s: float) -> bool:
    """True when a timeout error raised after `elapsed_s` of a `budget_s` budget is a real timeout."""
    return elapsed_s >= budget_s * GENUINE_FRACTION
