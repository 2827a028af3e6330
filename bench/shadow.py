#!/usr/bin/env python3
"""What a shadow policy costs a reply: the guarded route with and without a candidate shadowing its policy.

Starts, on 127.0.0.1 only, a STAND-IN upstream (32-word reply, 0 ms) and a STAND-IN classifier answering after
`--classifier-delay-ms` (200: a realistic gpt-oss-safeguard call at low effort), and one `guardrail-proxy serve`
process with two routes over the same shipped policy (teen_safety_policies/dangerous-content, input and output):

  guarded   the policy enforced: 3 calls per request (classifier, model, classifier)
  shadowed  the same, plus a candidate (the policy's text with one more line) shadowing it at sample 1.0: every
            request also makes 2 candidate calls, in the background (max_in_flight 64: none dropped by the bound)

Targets: the stand-in upstream called directly, `guarded` and `shadowed`, at each concurrency (1 and 16), in
rounds with the order rotating, samples pooled. Columns: req/s, p50/p99 latency, p50 and p99 minus direct (what the
proxy adds), classifier calls per request (from the stand-in's /stats) and the proxy's CPU per request (from
/proc, shadow calls included: they run in the proxy's process). Below the table: the proxy's shadow
counters (/metrics), which must show every candidate call made (agree) and none dropped, except as counted.

  python bench/shadow.py            # about 3 minutes
  python bench/shadow.py --quick    # smoke run, under 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import harness
import loadgen
from harness import fmt

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "Say something harmless about the weather."
CANDIDATE = "candidates/dangerous-content.md"
ROUTES: dict[str, dict[str, Any]] = {
    "guarded": {"upstream": "standin"},
    "shadowed": {"upstream": "standin", "shadow": [{"policy": harness.POLICY_ID, "candidate": CANDIDATE,
                                                     "sample": 1.0, "max_in_flight": 64}]},
}


def write_candidate(directory: Path) -> None:
    """The shipped policy with one more sentence: a new version with the same id, outside the policy directory."""
    text = (harness.POLICIES_DIR / harness.POLICY_ID / "policy.md").read_text()
    path = directory / CANDIDATE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n\nA candidate wording line, for the benchmark.\n")


def shadow_counters(proxy_url: str) -> dict[str, float]:
    """guardrail_shadow_* samples from /metrics, by name and labels."""
    with harness.NO_PROXY.open(urllib.request.Request(f"{proxy_url}/metrics"), timeout=5) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("guardrail_shadow_") and "_created" not in line}


async def measure(targets: list[tuple[str, str, str, int | None]], plan: list[tuple[int, int]], rounds: int,
                  batch_cap: float, deadline: float, warmup: int,
                  classifier_url: str) -> dict[int, dict[str, dict[str, Any]]]:
    for name, url, model, _ in targets:
        await loadgen.run(url, model, warmup, 4, False, max_seconds=30, prompt=PROMPT, label=name)
    batches: dict[int, dict[str, list[dict[str, Any]]]] = {c: {t[0]: [] for t in targets} for c, _ in plan}
    for c, total in plan:
        per_round = max(c, math.ceil(total / rounds))
        for rnd in range(rounds):
            k = rnd % len(targets)
            for name, url, model, pid in targets[k:] + targets[:k]:
                left = deadline - time.monotonic()
                if left <= 1:
                    break
                await asyncio.sleep(0.5)  # the previous batch's shadow calls finish before this one is timed
                harness.http_json(f"{classifier_url}/stats", "POST")
                cpu0 = harness.cpu_seconds(pid) if pid else 0.0
                res = await loadgen.run(url, model, per_round, c, False, max_seconds=min(left, batch_cap),
                                        prompt=PROMPT, label=name)
                await asyncio.sleep(0.5)  # and this batch's, so they are counted with it
                res["proxy_cpu_s"] = harness.cpu_seconds(pid) - cpu0 if pid else 0.0
                res["classifier_calls"] = harness.http_json(f"{classifier_url}/stats")["requests"]
                batches[c][name].append(res)
                print(f"  c={c} round {rnd} {name:9s} ok={res['ok']} err={res['errors']} rps={res['rps']:.1f} "
                      f"p50={res['latency_ms'].get('p50', math.nan):.1f} ms", flush=True)
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for c, by in batches.items():
        out[c] = {}
        for name, bs in by.items():
            samples = [s["lat"] * 1000 for b in bs for s in b.pop("samples")]
            wall = sum(b["wall_s"] for b in bs)
            requests = sum(b["ok"] + b["errors"] for b in bs)
            out[c][name] = {"ok": len(samples), "errors": sum(b["errors"] for b in bs),
                            "rps": len(samples) / wall if wall else math.nan,
                            "latency_ms": loadgen.summarize(samples),
                            "classifier_calls_per_request": (sum(b["classifier_calls"] for b in bs) / requests
                                                             if requests else math.nan),
                            "proxy_cpu_ms_per_request": (sum(b["proxy_cpu_s"] for b in bs) * 1000 / requests
                                                         if requests else math.nan),
                            "batches": bs}
    return out


def table(results: dict[int, dict[str, dict[str, Any]]]) -> str:
    lines = ["| c | target | req/s | p50 ms | p99 ms | p50 − direct ms | p99 − direct ms | classifier calls/req "
             "| proxy CPU ms/req |", "|---|---|---|---|---|---|---|---|---|"]
    for c, by in results.items():
        direct = by["direct"]["latency_ms"]
        for name, r in by.items():
            lat = r["latency_ms"]
            added = ("-", "-") if name == "direct" else (fmt(lat["p50"] - direct["p50"], 1),
                                                         fmt(lat["p99"] - direct["p99"], 1))
            lines.append(f"| {c} | {name} | {fmt(r['rps'], 1)} | {fmt(lat['p50'], 1)} | {fmt(lat['p99'], 1)} | "
                         f"{added[0]} | {added[1]} | {fmt(r['classifier_calls_per_request'], 2)} | "
                         f"{fmt(r['proxy_cpu_ms_per_request'], 2) if name != 'direct' else '-'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--requests", type=int, nargs="+", default=[120, 480],
                   help="measured requests per target, one count per --concurrency value (split over rounds)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=8, help="unmeasured requests per target first")
    p.add_argument("--classifier-delay-ms", type=float, default=200.0)
    p.add_argument("--batch-seconds", type=float, default=25.0, help="cap on one target's batch in one round")
    p.add_argument("--max-seconds", type=float, default=200.0, help="cap on the measuring phase")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, few requests (< 30 s)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/shadow-<time>.json)")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.warmup, a.batch_seconds, a.max_seconds = 1, 4, 4.0, 25.0
        a.requests = [10 if c == 1 else 4 * c for c in a.concurrency]
    if len(a.requests) != len(a.concurrency):
        p.error("give one --requests count per --concurrency value")

    info = harness.machine()
    print(f"shadow: {info['date']}, nproc {info['nproc']}, Python {info['python']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        procs = harness.Processes(Path(tmp))
        try:
            _, upstream_url = procs.standin("upstream", "upstream", "--tokens", "32")
            _, classifier_url = procs.standin("classifier", "safeguard", "--delay-ms", str(a.classifier_delay_ms))
            directory = Path(tmp) / "proxy"
            write_candidate(directory)
            config = harness.write_proxy_config(directory, ROUTES, classifier_url,
                                                {"standin": harness.openai_upstream(upstream_url)})
            pid, url = procs.proxy("proxy", config)
            targets: list[tuple[str, str, str, int | None]] = [
                ("direct", f"{upstream_url}/v1", "stand-in-chat", None),
                *((route, f"{url}/v1", f"bench-{route}", pid) for route in ROUTES)]
            started = time.monotonic()
            foreign = harness.ForeignLoad(procs.pids)
            results = asyncio.run(measure(targets, list(zip(a.concurrency, a.requests, strict=True)), a.rounds,
                                          a.batch_seconds, started + a.max_seconds, a.warmup, classifier_url))
            foreign_note = foreign.stop()
            counters = shadow_counters(url)
        finally:
            procs.stop_all()
            for name in ("upstream", "classifier", "proxy"):
                for line in procs.log_notes(name):
                    print(f"  [{name} log] {line}")
    print()
    print(table(results))
    print()
    print(f"Classifier stand-in at {a.classifier_delay_ms:.0f} ms, upstream at 0 ms (32 words); {a.rounds} round(s); "
          f"{foreign_note}.")
    shadowed = a.warmup + sum(b["ok"] + b["errors"] for by in results.values() for b in by["shadowed"]["batches"])
    made = sum(v for k, v in counters.items() if k.startswith("guardrail_shadow_checks_total"))
    dropped = sum(v for k, v in counters.items() if k.startswith("guardrail_shadow_dropped_total"))
    print(f"Shadow calls: {2 * shadowed} expected (2 per shadowed request, warm-up included), {made:.0f} made "
          f"(each row queued for the audit store), {dropped:.0f} dropped. Counters: " +
          ("; ".join(f"{k} = {v:.0f}" for k, v in sorted(counters.items())) or "none"))
    RESULTS.mkdir(exist_ok=True)
    out = a.out or RESULTS / f"shadow-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(a).items()},
                               "results": results, "shadow_counters": counters}, indent=1))
    print(f"results: {out}")
    failed = sum(r["errors"] for by in results.values() for r in by.values())
    if failed:
        raise SystemExit(f"{failed} request(s) failed")


if __name__ == "__main__":
    main()
