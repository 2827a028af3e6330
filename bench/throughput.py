#!/usr/bin/env python3
"""Non-streaming throughput: req/s, latency and proxy CPU per request, guarded vs unguarded vs direct.

Starts, on 127.0.0.1 only, a STAND-IN upstream (fixed 32-word reply) and a STAND-IN classifier, both
answering at once (0 ms), and one `guardrail-proxy serve` process per upstream provider (`openai`: the SDK
fast path; `litellm`; `openai-asyncio`: the openai provider on asyncio's own loop instead of uvloop). Each
proxy has three routes:

  none     input and output checks disabled: the proxy's own cost (parse, route, forward, audit)
  guarded  one shipped policy on input and output: 3 calls per request (classifier, model, classifier), the
           classifier through its default raw aiohttp transport
  guarded-sdk  the same with the classifier called through the openai SDK (transport: openai)

Targets: the stand-in upstream called directly, then {providers} x {none,guarded,guarded-sdk}. With --streams,
also streams: `direct-stream` (the stand-in upstream streaming its reply) and `{provider}/none-stream` (the
same stream through the proxy with no checks). With --baseline DIR, every provider also runs as `base-{provider}`
from another copy of the code (say `git archive <commit> guardrail_proxy | tar -x -C DIR`): before and after a
change in one run, on the same stand-ins. Each concurrency
level (default 1 and 32) runs in rounds; in every round each target gets its requests back to back, the
order rotating from round to round. Per batch the stand-ins' /stats counters are zeroed and read back, to
check that every guarded request made exactly 2 classifier calls and 1 upstream call (and unguarded ones
0 and 1), and the proxy's CPU time is read from /proc. The proxies' RSS is read at start-up and at the end. With
--rss-requests N, each proxy named by --rss-providers (default openai) then serves 1,000 guarded requests at
c=32, its RSS is read, then N more, and its RSS is read again: the growth is what a long run would leak.

  python bench/throughput.py            # default, about 1.5 minutes
  python bench/throughput.py --quick    # smoke run, under 30 s
  python bench/throughput.py --providers openai litellm --streams --rss-requests 20000 --baseline /tmp/base
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
ROUTES: dict[str, dict[str, Any]] = {
    "none": {"upstream": "standin", "input": {"enabled": False}, "output": {"enabled": False}},
    "guarded": {"upstream": "standin"},
    "guarded-sdk": {"upstream": "standin", "classifier": "sdk"},
}
EXPECTED_CLASSIFIER_CALLS = {"none": 0, "guarded": 2, "guarded-sdk": 2}
RSS_WARMUP = 1000
Target = tuple[str, str, str, int | None, bool]  # name, base URL, model, proxy pid (None: direct), stream


def pooled(batches: list[dict[str, Any]]) -> dict[str, Any]:
    samples = [s for b in batches for s in b["samples"]]
    wall = sum(b["wall_s"] for b in batches)
    requests = sum(b["ok"] + b["errors"] for b in batches)
    return {
        "ok": len(samples), "errors": sum(b["errors"] for b in batches),
        "error_kinds": [k for b in batches for k in b["error_kinds"]],
        "rps": len(samples) / wall if wall else 0.0,
        "rps_per_round": [b["rps"] for b in batches],
        "latency_ms": loadgen.summarize([s["lat"] * 1000 for s in samples]),
        "classifier_calls": sum(b.get("classifier_calls", 0) for b in batches),
        "upstream_calls": sum(b.get("upstream_calls", 0) for b in batches),
        "requests": requests,
        "proxy_cpu_ms_per_request": (sum(b.get("proxy_cpu_s", 0.0) for b in batches) * 1000 / requests
                                     if requests else math.nan),
        "cut": any(b["cut_by_max_seconds"] for b in batches),
    }


def check_calls(name: str, r: dict[str, Any]) -> str:
    """'ok' when the stand-ins saw exactly the expected calls for this target's requests."""
    route = name.split("/")[-1]
    want_classifier = EXPECTED_CLASSIFIER_CALLS.get(route, 0) * r["requests"]
    if r["classifier_calls"] == want_classifier and r["upstream_calls"] == r["requests"]:
        return "ok"
    return f"MISMATCH: classifier {r['classifier_calls']} (want {want_classifier}), " \
           f"upstream {r['upstream_calls']} (want {r['requests']})"


def table(results: dict[int, dict[str, dict[str, Any]]]) -> str:
    head = ("| c | target | req/s | req/s ÷ direct | p50 ms | p90 ms | p99 ms | p50 − direct ms "
            "| proxy CPU ms/req | classifier calls/req | ok / errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c, by in results.items():
        for name, r in by.items():
            base = by.get("direct-stream" if name.endswith("-stream") else "direct")  # streams against streams
            lat = r["latency_ms"]
            if not r["ok"]:
                lines.append(f"| {c} | {name} | - | - | - | - | - | - | - | - | 0 / {r['errors']} |")
                continue
            direct = name.startswith("direct")
            rps_ratio = r["rps"] / base["rps"] if base and base["ok"] else math.nan
            added = lat["p50"] - base["latency_ms"]["p50"] if base and base["ok"] else math.nan
            lines.append("| " + " | ".join([
                str(c), name, fmt(r["rps"]), "1.00" if direct else fmt(rps_ratio, 3),
                fmt(lat["p50"], 2), fmt(lat["p90"], 2), fmt(lat["p99"], 2), "—" if direct else f"+{fmt(added, 2)}",
                "—" if direct else fmt(r["proxy_cpu_ms_per_request"], 2),
                fmt(r["classifier_calls"] / r["requests"], 2) if r["requests"] else "-",
                f"{r['ok']} / {r['errors']}" + (" (cut)" if r["cut"] else ""),
            ]) + " |")
    return "\n".join(lines)


async def measure(targets: list[Target], plan: list[tuple[int, int]], rounds: int,
                  batch_cap: float, deadline: float, warmup: int, classifier_url: str,
                  upstream_url: str) -> dict[int, dict[str, dict[str, Any]]]:
    for name, url, model, _, stream in targets:  # unmeasured: connections, lazy imports, first-call work
        await loadgen.run(url, model, warmup, 4, stream, max_seconds=30, prompt=PROMPT, label=name)
    batches: dict[int, dict[str, list[dict[str, Any]]]] = {c: {t[0]: [] for t in targets} for c, _ in plan}
    for c, total in plan:
        per_round = max(c, math.ceil(total / rounds))
        for rnd in range(rounds):
            k = rnd % len(targets)
            for name, url, model, pid, stream in targets[k:] + targets[:k]:
                left = deadline - time.monotonic()
                if left <= 1:
                    break
                harness.http_json(f"{classifier_url}/stats", "POST")
                harness.http_json(f"{upstream_url}/stats", "POST")
                cpu0 = harness.cpu_seconds(pid) if pid else 0.0
                res = await loadgen.run(url, model, per_round, c, stream, max_seconds=min(left, batch_cap),
                                        prompt=PROMPT, label=name)
                res["proxy_cpu_s"] = harness.cpu_seconds(pid) - cpu0 if pid else 0.0
                res["classifier_calls"] = harness.http_json(f"{classifier_url}/stats")["requests"]
                res["upstream_calls"] = harness.http_json(f"{upstream_url}/stats")["requests"]
                res["round"] = rnd
                batches[c][name].append(res)
                print(f"  c={c} round {rnd} {name:16s} ok={res['ok']} err={res['errors']} "
                      f"rps={res['rps']:.0f} p50={res['latency_ms'].get('p50', math.nan):.2f} ms", flush=True)
    out = {c: {name: {**pooled(bs), "batches": bs} for name, bs in by.items()} for c, by in batches.items()}
    for by in batches.values():
        for bs in by.values():
            for b in bs:
                b.pop("samples")  # thousands per batch: the summaries are kept, the raw samples are not
    return out


async def rss_growth(url: str, pid: int, requests: int) -> dict[str, float]:
    """RSS (MB) after RSS_WARMUP guarded requests at c=32, then after `requests` more."""
    await loadgen.run(url, "bench-guarded", RSS_WARMUP, 32, False, max_seconds=600, prompt=PROMPT)
    warm = harness.rss_mb(pid)
    res = await loadgen.run(url, "bench-guarded", requests, 32, False, max_seconds=1800, prompt=PROMPT)
    after = harness.rss_mb(pid)
    return {"after_warmup_mb": warm, "after_run_mb": after, "requests": res["ok"], "errors": res["errors"],
            "growth_pct": (after - warm) / warm * 100}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    p.add_argument("--requests", type=int, nargs="+", default=[600, 1500],
                   help="measured requests per target, one count per --concurrency value (split over rounds)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=40, help="unmeasured requests per target first")
    p.add_argument("--batch-seconds", type=float, default=8.0, help="cap on one target's batch in one round")
    p.add_argument("--max-seconds", type=float, default=90.0, help="cap on the measuring phase")
    p.add_argument("--providers", nargs="+", choices=["openai", "openai-asyncio", "litellm"],
                   default=["openai", "litellm"],
                   help="openai-asyncio: the openai provider on asyncio's own event loop instead of uvloop")
    p.add_argument("--streams", action="store_true",
                   help="also streams/s: direct-stream and {provider}/none-stream (no checks)")
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="also run every provider from the guardrail_proxy package under DIR, as base-{provider}")
    p.add_argument("--rss-requests", type=int, default=0, metavar="N",
                   help=f"after the run: RSS after {RSS_WARMUP} guarded requests at c=32, then after N more")
    p.add_argument("--rss-providers", nargs="+", default=["openai"], help="the providers --rss-requests measures")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, few requests (< 30 s)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/throughput-<time>.json)")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.warmup, a.batch_seconds, a.max_seconds = 1, 10, 2.0, 18.0
        a.requests = [100 if c == 1 else 20 * c for c in a.concurrency]
        a.rss_requests = min(a.rss_requests, 2000)
    if len(a.requests) != len(a.concurrency):
        p.error("give one --requests count per --concurrency value")

    info = harness.machine()
    print(f"throughput: {info['date']}, nproc {info['nproc']}, Python {info['python']}", flush=True)
    rss: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        procs = harness.Processes(Path(tmp))
        try:
            _, upstream_url = procs.standin("upstream", "upstream", "--tokens", "32")
            _, classifier_url = procs.standin("classifier", "safeguard")
            targets: list[Target] = [("direct", f"{upstream_url}/v1", "stand-in-chat", None, False)]
            if a.streams:
                targets.append(("direct-stream", f"{upstream_url}/v1", "stand-in-chat", None, True))
            pids: dict[str, int] = {}
            urls: dict[str, str] = {}
            runs = [(p, p, None) for p in a.providers]
            runs += [(f"base-{p}", p, a.baseline) for p in a.providers] if a.baseline else []
            for label, provider, code in runs:
                make = harness.litellm_upstream if provider == "litellm" else harness.openai_upstream
                server = {"event_loop": "asyncio"} if provider.endswith("-asyncio") else {}
                config = harness.write_proxy_config(Path(tmp) / label, ROUTES, classifier_url,
                                                    {"standin": make(upstream_url)}, server=server)
                pid, url = procs.proxy(f"proxy-{label}", config, code=code)
                pids[label], urls[label] = pid, url
                rss[label] = {"ready_mb": harness.rss_mb(pid)}
                targets += [(f"{label}/{route}", f"{url}/v1", f"bench-{route}", pid, False) for route in ROUTES]
                if a.streams:
                    targets.append((f"{label}/none-stream", f"{url}/v1", "bench-none", pid, True))
            started = time.monotonic()
            foreign = harness.ForeignLoad(procs.pids)
            results = asyncio.run(measure(targets, list(zip(a.concurrency, a.requests, strict=True)), a.rounds,
                                          a.batch_seconds, started + a.max_seconds, a.warmup, classifier_url,
                                          upstream_url))
            elapsed = time.monotonic() - started
            foreign_note = foreign.stop()
            for provider, pid in pids.items():
                rss[provider]["after_run_mb"] = harness.rss_mb(pid)
            if a.rss_requests:
                for label in [p for p in a.providers if p in a.rss_providers]:
                    print(f"  RSS growth: {label}, {RSS_WARMUP} + {a.rss_requests} guarded requests at c=32",
                          flush=True)
                    rss[label]["growth"] = asyncio.run(rss_growth(f"{urls[label]}/v1", pids[label], a.rss_requests))
        finally:
            procs.stop_all()
            for name in ("upstream", "classifier", *(f"proxy-{p}" for p in rss)):
                for line in procs.log_notes(name):
                    print(f"  [{name} log] {line}")

    checks = {f"c={c} {name}": check_calls(name, r) for c, by in results.items() for name, r in by.items()
              if r["requests"]}
    rss_line = "; ".join(f"{prov}: {v['ready_mb']:.0f} MB when ready, {v['after_run_mb']:.0f} MB after the run"
                         for prov, v in rss.items())
    growth = {prov: v["growth"] for prov, v in rss.items() if "growth" in v}
    growth_line = "; ".join(
        f"{prov}: {g['after_warmup_mb']:.1f} MB after {RSS_WARMUP} requests, {g['after_run_mb']:.1f} MB after "
        f"{g['requests']:,} more ({g['growth_pct']:+.1f}%, {g['errors']} errors)" for prov, g in growth.items())
    settings = (f"stand-ins at 0 ms, 32-word non-streaming reply; {a.rounds} round(s); measuring phase "
                f"{elapsed:.0f} s; {foreign_note}. Proxy RSS (VmRSS) — {rss_line}")
    bad_checks = {k: v for k, v in checks.items() if v != "ok"}
    check_line = ("Call counts: every target's classifier and upstream calls matched the requests exactly "
                  "(guarded: 2 classifier + 1 upstream per request; none: 0 + 1)."
                  if not bad_checks else "Call counts: " + "; ".join(f"{k}: {v}" for k, v in bad_checks.items()))
    text = "\n".join([f"{settings}.", "", table(results), "", check_line,
                      *(["", f"RSS growth (guarded, c=32): {growth_line}."] if growth else [])])
    print("\n" + text)
    out = a.out or RESULTS / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "command": sys.argv, "args": {k: str(v) for k, v in vars(a).items()},
                               "settings": settings, "rss_mb": rss, "call_checks": checks, "results": results,
                               "table": text}, indent=1))
    print(f"\nwrote {out}")
    bad = bad_checks or any(r["errors"] or not r["ok"] for by in results.values() for r in by.values()) \
        or any(g["errors"] for g in growth.values())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
