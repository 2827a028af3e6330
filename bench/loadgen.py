"""Closed-loop load for OpenAI-compatible /chat/completions, loopback targets only.

Adapted from the shared harness (/work/shared/bench/loadgen.py): the same raw asyncio HTTP/1.1 keep-alive
client (~0.3 ms/request; one connection per in-flight slot), without the httpx client and header options,
plus per-request samples so callers can pool them across interleaved rounds. httpx is deliberately not
used: on a 2-core box its own CPU cost (~1 ms/request) and its pool collapse at c >= 16
(encode/httpx#3215) would dominate what we measure.

Per request: `lat` (send to end of body), `ttfb` (first body bytes) and, for streams, `ttft` (first SSE
chunk carrying non-empty `delta.content`).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import itertools
import json
import math
import re
import secrets
import sys
import time
from typing import Any
from urllib.parse import urlsplit

CONTENT_RE = re.compile(rb'"content":\s*"[^"]')  # a non-empty delta.content in an SSE chunk


def require_loopback(url: str) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok or parts.scheme != "http":
        sys.exit(f"refusing target {url!r}: plain http to 127.0.0.1 / localhost / [::1] only")


def pct(sorted_vals: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_vals[max(0, min(len(sorted_vals) - 1, math.ceil(p / 100 * len(sorted_vals)) - 1))]


def summarize(vals: list[float]) -> dict[str, float]:
    v = sorted(vals)
    if not v:
        return {}
    return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
            "mean": sum(v) / len(v), "min": v[0], "max": v[-1]}


class RawConn:
    """One HTTP/1.1 keep-alive connection; Content-Length and chunked bodies."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes, t0: float,
                      stream: bool) -> tuple[int, bytes, float | None, float | None]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        rd = self.reader
        self.writer.write(raw)
        head = await rd.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        ttfb = ttft = None
        body = bytearray()
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await rd.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await rd.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                part = (await rd.readexactly(size + 2))[:-2]
                if ttfb is None:
                    ttfb = time.perf_counter() - t0
                if stream and ttft is None and CONTENT_RE.search(part):
                    ttft = time.perf_counter() - t0
                body += part
        else:  # Content-Length, or a body delimited by connection close
            ttfb = time.perf_counter() - t0
            if "content-length" in hdrs:
                body += await rd.readexactly(int(hdrs["content-length"]))
            else:
                body += await rd.read()
                self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, bytes(body), ttfb, ttft


def check_body(status: int, body: bytes, stream: bool) -> None:
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:160]!r}")
    if stream:
        events = [ln[5:].strip() for ln in body.split(b"\n") if ln.startswith(b"data:")]
        if not events or events[-1] != b"[DONE]":
            raise RuntimeError(f"stream without [DONE]: {body[-160:]!r}")
        for event in events[:-1]:
            if b'"error"' in event and b'"choices"' not in event:
                raise RuntimeError(f"error event in stream: {event[:160]!r}")
        json.loads(events[0])
    elif not isinstance(json.loads(body)["choices"][0]["message"]["content"], str):
        raise RuntimeError("no content in response")


REQUEST_IDS = itertools.count()
RUN_TOKEN = secrets.token_hex(4)


def build_request(base_url: str, model: str, stream: bool, prompt: str, unique: bool) -> tuple[str, int, bytes]:
    """(host, port, raw HTTP request). With `unique`, the prompt ends with a tag no other request in this
    process has, so a proxy-side verdict cache cannot answer for the classifier."""
    require_loopback(base_url)
    u = urlsplit(base_url.rstrip("/") + "/chat/completions")
    if unique:
        prompt = f"{prompt} (request {RUN_TOKEN}-{next(REQUEST_IDS)})"
    payload = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                          "stream": stream}).encode()
    hdrs = {"Host": u.netloc, "Content-Type": "application/json", "Content-Length": str(len(payload))}
    raw = (f"POST {u.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
           + "\r\n").encode() + payload
    return u.hostname or "127.0.0.1", u.port or 80, raw


async def run(base_url: str, model: str, n: int, concurrency: int, stream: bool, *, warmup: int = 0,
              max_seconds: float = 60.0, timeout: float = 30.0,
              prompt: str = "Say something harmless about the weather.", unique: bool = True,
              label: str = "") -> dict[str, Any]:
    """`n` measured requests with `concurrency` in flight (after `warmup` unmeasured ones), stopping
    early after `max_seconds`. Every request has its own prompt unless `unique` is false. Returns
    summaries in ms and the raw per-request samples (seconds)."""
    host, port, _ = build_request(base_url, model, stream, prompt, False)
    samples: list[dict[str, float]] = []
    errors: collections.Counter[str] = collections.Counter()

    async def one(conn: RawConn) -> dict[str, float]:
        raw = build_request(base_url, model, stream, prompt, unique)[2]
        t0 = time.perf_counter()
        status, data, ttfb, ttft = await asyncio.wait_for(conn.request(raw, t0, stream), timeout)
        lat = time.perf_counter() - t0
        check_body(status, data, stream)
        out = {"lat": lat, "ttfb": ttfb or lat}
        if stream:
            out["ttft"] = ttft or lat
        return out

    async def worker(quota: list[int], deadline: float, sink: list[dict[str, float]] | None) -> None:
        conn = RawConn(host, port)
        try:
            while quota[0] > 0 and time.perf_counter() < deadline:
                quota[0] -= 1
                try:
                    res = await one(conn)
                    if sink is not None:
                        sink.append(res)
                except Exception as e:  # every failure is counted, none stops the run
                    conn.close()
                    if sink is not None:
                        errors[(type(e).__name__ + ": " + str(e))[:200]] += 1
        finally:
            conn.close()

    if warmup:
        q = [warmup]
        await asyncio.gather(*(worker(q, time.perf_counter() + max_seconds, None)
                               for _ in range(min(concurrency, warmup))))
    q = [n]
    t_start = time.perf_counter()
    await asyncio.gather(*(worker(q, t_start + max_seconds, samples) for _ in range(concurrency)))
    wall = time.perf_counter() - t_start

    def ms(key: str) -> dict[str, float]:
        return summarize([s[key] * 1000 for s in samples if key in s])

    out: dict[str, Any] = {
        "label": label, "base_url": base_url, "model": model, "stream": stream, "concurrency": concurrency,
        "requested": n, "ok": len(samples), "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)), "wall_s": wall,
        "rps": len(samples) / wall if wall > 0 else 0.0,
        "latency_ms": ms("lat"), "ttfb_ms": ms("ttfb"),
        "cut_by_max_seconds": len(samples) + sum(errors.values()) < n,
        "samples": samples,
    }
    if stream:
        out["ttft_ms"] = ms("ttft")
    return out
