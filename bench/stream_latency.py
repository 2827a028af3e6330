#!/usr/bin/env python3
"""Streaming latency: time to first content and total time, buffer vs window vs no guardrail.

Starts, on 127.0.0.1 only, a STAND-IN upstream that streams a fixed reply one word per SSE chunk with a
per-chunk delay, a STAND-IN classifier that answers after a fixed delay, and one `guardrail-proxy serve`
with one route per mode (all provider `openai`, one shipped policy on input and output):

  none           input and output checks disabled (the proxy's own relay cost)
  window         output stream_mode window (--window-chars), speculative input check
  window-nospec  the same with input.speculative false (the model starts after the input verdict)
  buffer         output stream_mode buffer (the whole completion is checked before any of it is sent)
  buffer-nospec  the same with input.speculative false

and measures each against the stand-in upstream called directly. Per request: TTFT, the time to the first
SSE chunk carrying non-empty `delta.content` (what a user sees), and total time to the end of the stream.
Requests run closed-loop at each concurrency (default 1 and 8), split into rounds; in every round each
target gets its share back to back, the order rotating from round to round, and the samples are pooled.
Also counted per request: classifier calls (stand-in /stats) and proxy CPU time (/proc).

With --baseline DIR, a second proxy runs the same routes from another copy of the code (say
`git archive <commit> guardrail_proxy | tar -x -C DIR`), its targets named `base-{route}`: before and after a
change in one run, on the same stand-ins.

Every run is bounded (--max-seconds for the measuring phase). Results: a Markdown table on stdout and a
JSON file under bench/results/.

  python bench/stream_latency.py            # default, about 1.5-2 minutes
  python bench/stream_latency.py --quick    # smoke run, about 20 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import loadgen
from harness import fmt

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "Say something harmless about the weather."


def routes(window_chars: int) -> dict[str, dict[str, Any]]:
    def guarded(mode: str, speculative: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"stream_mode": mode}
        if mode == "window":
            out["window_chars"] = window_chars
        return {"upstream": "standin", "input": {"speculative": speculative}, "output": out}

    return {
        "none": {"upstream": "standin", "input": {"enabled": False}, "output": {"enabled": False}},
        "window": guarded("window", True),
        "window-nospec": guarded("window", False),
        "buffer": guarded("buffer", True),
        "buffer-nospec": guarded("buffer", False),
    }


def pooled(batches: list[dict[str, Any]]) -> dict[str, Any]:
    samples = [s for b in batches for s in b["samples"]]
    requests = sum(b["ok"] + b["errors"] for b in batches)
    calls = sum(b.get("classifier_calls", 0) for b in batches)
    cpu = sum(b.get("proxy_cpu_s", 0.0) for b in batches)
    return {
        "ok": len(samples), "errors": sum(b["errors"] for b in batches),
        "error_kinds": [k for b in batches for k in b["error_kinds"]],
        "ttft_ms": loadgen.summarize([s["ttft"] * 1000 for s in samples]),
        "ttfb_ms": loadgen.summarize([s["ttfb"] * 1000 for s in samples]),
        "total_ms": loadgen.summarize([s["lat"] * 1000 for s in samples]),
        "classifier_calls_per_request": calls / requests if requests else math.nan,
        "upstream_calls_per_request": (sum(b.get("upstream_calls", 0) for b in batches) / requests
                                       if requests else math.nan),
        "proxy_cpu_ms_per_request": cpu * 1000 / requests if requests else math.nan,
        "upstream_standin_cpu_ms_per_request": (sum(b.get("upstream_cpu_s", 0.0) for b in batches) * 1000 / requests
                                                if requests else math.nan),
        "cut": any(b["cut_by_max_seconds"] for b in batches),
    }


def table(results: dict[int, dict[str, dict[str, Any]]]) -> str:
    head = ("| c | target | TTFT p50 | TTFT p90 | TTFT p50 − direct | total p50 | total p90 | total p50 ÷ direct "
            "| classifier calls/req | proxy CPU ms/req | ok / errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c, by_target in results.items():
        base = by_target.get("direct")
        for name, r in by_target.items():
            if not r["ok"]:
                lines.append(f"| {c} | {name} | - | - | - | - | - | - | - | - | 0 / {r['errors']} |")
                continue
            ttft, total = r["ttft_ms"], r["total_ms"]
            added = ttft["p50"] - base["ttft_ms"]["p50"] if base and base["ok"] else math.nan
            ratio = total["p50"] / base["total_ms"]["p50"] if base and base["ok"] else math.nan
            direct = name == "direct"
            lines.append("| " + " | ".join([
                str(c), name, fmt(ttft["p50"], 1), fmt(ttft["p90"], 1), "—" if direct else f"+{fmt(added, 1)}",
                fmt(total["p50"]), fmt(total["p90"]), "1.00" if direct else fmt(ratio, 2),
                "—" if direct else fmt(r["classifier_calls_per_request"], 2),
                "—" if direct else fmt(r["proxy_cpu_ms_per_request"], 1),
                f"{r['ok']} / {r['errors']}" + (" (cut)" if r["cut"] else ""),
            ]) + " |")
    return "\n".join(lines)


def notes(results: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    out = []
    for c, by in results.items():
        direct = by.get("direct")
        if direct and direct["ok"]:
            out.append(f"c={c}: the stand-in upstream itself used "
                       f"{direct['upstream_standin_cpu_ms_per_request']:.1f} CPU ms per streamed request "
                       "(a control for the proxy CPU column: same chunks, same pacing)")
        for mode in ("window", "buffer"):
            on, off = by.get(mode), by.get(f"{mode}-nospec")
            if on and off and on["ok"] and off["ok"]:
                out.append(f"c={c} {mode}: speculative input check saves "
                           f"{off['ttft_ms']['p50'] - on['ttft_ms']['p50']:.1f} ms TTFT p50 and "
                           f"{off['total_ms']['p50'] - on['total_ms']['p50']:.1f} ms total p50")
    return out


async def measure(targets: list[tuple[str, str, str, int]], plan: list[tuple[int, int]], rounds: int,
                  deadline: float, upstream_pid: int, classifier_url: str, upstream_url: str,
                  warmup: int) -> dict[int, dict[str, dict[str, Any]]]:
    """`targets`: (name, base URL, model, pid of the proxy serving it; the upstream's own for `direct`)."""
    for name, url, model, _ in targets:  # unmeasured: connections, first-route work, imports
        await loadgen.run(url, model, warmup, 1, True, max_seconds=30, prompt=PROMPT, label=name)
    batches: dict[int, dict[str, list[dict[str, Any]]]] = {c: {t[0]: [] for t in targets} for c, _ in plan}
    for c, total in plan:
        per_round = max(c, math.ceil(total / rounds / c) * c)
        for rnd in range(rounds):
            k = rnd % len(targets)
            for name, url, model, proxy_pid in targets[k:] + targets[:k]:
                left = deadline - time.monotonic()
                if left <= 1:
                    break
                harness.http_json(f"{classifier_url}/stats", "POST")
                harness.http_json(f"{upstream_url}/stats", "POST")
                cpu0, up0 = harness.cpu_seconds(proxy_pid), harness.cpu_seconds(upstream_pid)
                res = await loadgen.run(url, model, per_round, c, True, max_seconds=left, prompt=PROMPT,
                                        label=name)
                res["proxy_cpu_s"] = 0.0 if name == "direct" else harness.cpu_seconds(proxy_pid) - cpu0
                res["upstream_cpu_s"] = harness.cpu_seconds(upstream_pid) - up0
                res["classifier_calls"] = harness.http_json(f"{classifier_url}/stats")["requests"]
                res["upstream_calls"] = harness.http_json(f"{upstream_url}/stats")["requests"]
                res["round"] = rnd
                batches[c][name].append(res)
                ttft = res.get("ttft_ms", {}).get("p50", math.nan)
                print(f"  c={c} round {rnd} {name:14s} ok={res['ok']} err={res['errors']} "
                      f"ttft_p50={ttft:.1f} ms total_p50={res['latency_ms'].get('p50', math.nan):.0f} ms",
                      flush=True)
    return {c: {name: {**pooled(bs), "batches": bs} for name, bs in by.items()} for c, by in batches.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier-delay-ms", type=float, default=50.0, help="stand-in classifier delay per call")
    p.add_argument("--words", type=int, default=200, help="words in the streamed reply (one chunk each)")
    p.add_argument("--chunk-delay-ms", type=float, default=5.0, help="stand-in upstream delay per chunk")
    p.add_argument("--window-chars", type=int, default=400, help="window mode: characters per check")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--requests", type=int, nargs="+", default=[6, 24],
                   help="measured requests per target, one count per --concurrency value")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="unmeasured requests per target first")
    p.add_argument("--max-seconds", type=float, default=95.0, help="cap on the measuring phase")
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="also run the routes from the guardrail_proxy package under DIR, as base-{route}")
    p.add_argument("--quick", action="store_true", help="smoke run: 100 words, 1 round, few requests (~20 s)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/stream_latency-<time>.json)")
    a = p.parse_args()
    if a.quick:
        a.words, a.rounds, a.max_seconds = 100, 1, 20.0
        a.requests = [2 if c == 1 else c for c in a.concurrency]
    if len(a.requests) != len(a.concurrency):
        p.error("give one --requests count per --concurrency value")

    info = harness.machine()
    print(f"stream_latency: {info['date']}, nproc {info['nproc']}, Python {info['python']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        procs = harness.Processes(Path(tmp))
        try:
            upstream_pid, upstream_url = procs.standin("upstream", "upstream", "--tokens", str(a.words),
                                            "--chunk-delay-ms", str(a.chunk_delay_ms))
            _, classifier_url = procs.standin("classifier", "safeguard", "--delay-ms", str(a.classifier_delay_ms))
            config = harness.write_proxy_config(Path(tmp), routes(a.window_chars), classifier_url,
                                                {"standin": harness.openai_upstream(upstream_url)})
            proxy_pid, proxy_url = procs.proxy("proxy", config)
            targets = [("direct", f"{upstream_url}/v1", "stand-in-chat", upstream_pid)]
            targets += [(name, f"{proxy_url}/v1", f"bench-{name}", proxy_pid) for name in routes(a.window_chars)]
            rss = {"proxy": harness.rss_mb(proxy_pid)}
            if a.baseline:
                base_pid, base_url = procs.proxy("proxy-base", config, code=a.baseline)
                targets += [(f"base-{name}", f"{base_url}/v1", f"bench-{name}", base_pid)
                            for name in routes(a.window_chars)]
                rss["proxy-base"] = harness.rss_mb(base_pid)
            started = time.monotonic()
            foreign = harness.ForeignLoad(procs.pids)
            results = asyncio.run(measure(targets, list(zip(a.concurrency, a.requests, strict=True)), a.rounds,
                                          started + a.max_seconds, upstream_pid, classifier_url,
                                          upstream_url, a.warmup))
            elapsed = time.monotonic() - started
            foreign_note = foreign.stop()
            proxy_rss = harness.rss_mb(proxy_pid)
        finally:
            procs.stop_all()
            for name in ("upstream", "classifier", "proxy", *(["proxy-base"] if a.baseline else [])):
                for line in procs.log_notes(name):
                    print(f"  [{name} log] {line}")

    settings = (f"stand-in upstream: {a.words} words, one SSE chunk each, {a.chunk_delay_ms:g} ms per chunk; "
                f"stand-in classifier: {a.classifier_delay_ms:g} ms per call; window_chars {a.window_chars}; "
                f"{a.rounds} round(s); measuring phase {elapsed:.0f} s; proxy RSS when ready "
                f"{', '.join(f'{k} {v:.0f} MB' for k, v in rss.items())}, at the end {proxy_rss:.0f} MB; "
                f"{foreign_note}")
    text = "\n".join([f"Latency in ms. {settings}.", "", table(results), "", *notes(results)])
    print("\n" + text)
    out = a.out or RESULTS / f"stream_latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "command": sys.argv, "args": {k: str(v) for k, v in vars(a).items()},
                               "settings": settings, "results": results, "table": text}, indent=1))
    print(f"\nwrote {out}")
    bad = any(r["errors"] or not r["ok"] for by in results.values() for r in by.values())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
