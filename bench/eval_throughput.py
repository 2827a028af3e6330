#!/usr/bin/env python3
"""Offline eval throughput: `guardrail-proxy eval` on a large generated set, fresh and fully cached.

Generates a labelled JSONL set of --rows (20,000) distinct items in a temporary directory: every text is
unique (so neither the answer cache nor the in-flight sharing of identical texts shortcuts a call), about a
third contain the trigger word, a few labels are deliberately wrong (so the reports have mistakes to list
and to cap), some labels are 0/1 instead of the policy's codes, some rows carry categories, some are
assistant replies with a context string.

For each classifier delay (--delays-ms, default 0 and 50) a STAND-IN classifier is started on 127.0.0.1
(`python -m guardrail_proxy.standins safeguard`, keyword rule: the trigger -> level 2). For each
--concurrency (8 and 64) and each classifier --transports (default: openai, the eval's default when only
--base-url is given; aiohttp: the raw client, through a generated config) the eval runs twice as a child process:

  fresh   a new, empty --cache-dir: every item is a classifier call
  cached  the same cache dir again: every item is a cache hit (no call reaches the stand-in)

Per run: the eval's own timing (summary.json `timing`: the items phase only, after reading the set and the
preflight, before scoring and writing), the child's wall time, its CPU time and peak RSS (`os.wait4`, the
child's own rusage), report.md / report.html / results.jsonl sizes, and checks: exit code 0, the item count,
0 classifier errors, the metrics equal to what the generated labels imply, and the stand-in's call counter
(fresh: one call per item; cached: none).

  python bench/eval_throughput.py                         # default, about 3.5 minutes on 2 cores
  python bench/eval_throughput.py --rows 2000 --delays-ms 0 --concurrency 8   # smoke run, seconds
  python bench/eval_throughput.py --transports aiohttp    # the same through the aiohttp transport
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import yaml
from harness import fmt

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_POLICY = harness.POLICIES_DIR / "graphic-violent-content" / "policy.md"
TRIGGER = "fight"
LEVEL = 2
SCENES = ("a quiet morning at the harbour", "a school trip to the museum", "two friends planning a garden",
          "a long train ride through the hills", "a rainy afternoon in the library", "a football match")
ENDINGS = ("and everyone went home tired.", "and nobody was hurt.", "and the teacher wrote it up for the newsletter.",
           "and the story stops there.", "and they laughed about it later.")


@dataclass
class Expected:
    """What the generated labels imply, given the stand-in's rule (trigger -> violation, else allowed)."""

    rows: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def label_codes(policy: Path) -> tuple[str, str]:
    """(allowed, violation) labels in the policy's own codes (e.g. GV0, GV2), or ("0", "1")."""
    text = policy.read_text(encoding="utf-8")
    front: dict[str, Any] = {}
    if text.startswith("---"):
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
    prefix = front.get("label_prefix")
    labels = [str(k) for k in front.get("labels") or {}]
    if front.get("format") != "label" or not prefix:
        return "0", "1"
    hit = f"{prefix}{LEVEL}"
    return f"{prefix}0", hit if hit in labels else labels[-1]


def write_dataset(path: Path, rows: int, allowed: str, violation: str) -> Expected:
    """rows distinct items; about 1 in 3 contains the trigger; 1 in 17 is labelled against the stand-in's rule."""
    exp = Expected(rows=rows)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            harmful = i % 3 == 0
            body = (f"a story about {SCENES[i % len(SCENES)]} where a {TRIGGER} broke out"
                    if harmful else f"a story about {SCENES[i % len(SCENES)]}")
            text = f"item {i}: {body}, {ENDINGS[i % len(ENDINGS)]} (variant {i * 7919 % 100_003})"
            says_violation = harmful != (i % 17 == 5)  # a wrong label now and then: FP and FN for the reports
            row: dict[str, Any] = {"id": f"bench-{i}", "text": text}
            if i % 10 == 7:
                row["label"] = int(says_violation)  # some rows use 0/1 instead of the policy's codes
                exp.kinds["0/1"] = exp.kinds.get("0/1", 0) + 1
            else:
                row["label"] = violation if says_violation else allowed
                exp.kinds["code"] = exp.kinds.get("code", 0) + 1
            if i % 4 == 0:
                row["categories"] = ["fiction", "school"] if i % 8 == 0 else "sports;news"
            if i % 5 == 0:
                row["role"] = "assistant"
                row["context"] = f"Can you tell me story number {i}?"
            out.write(json.dumps(row) + "\n")
            if says_violation and harmful:
                exp.tp += 1
            elif says_violation:
                exp.fn += 1
            elif harmful:
                exp.fp += 1
            else:
                exp.tn += 1
    return exp


def run_child(cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Run cmd; its exit code, wall time, and its own CPU time and peak RSS from os.wait4 (not RUSAGE_CHILDREN,
    which is the maximum over every child so far)."""
    with log.open("wb") as handle:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=harness.REPO)
        deadline = started + timeout
        cut = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline and not cut:
                cut = True
                proc.send_signal(signal.SIGKILL)
            time.sleep(0.02)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait for it again
    return {"rc": proc.returncode, "wall_s": wall, "cut": cut, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def aiohttp_config(directory: Path, url: str) -> Path:
    """A config whose only classifier is the stand-in over `transport: aiohttp`, otherwise at its defaults (the
    same retries and deadline as the SDK run). The route and upstream are there because a config needs them."""
    path = harness.write_proxy_config(directory, {"unused": {"upstream": "unused"}}, url,
                                      {"unused": harness.openai_upstream(url)})
    proxy = yaml.safe_load(path.read_text(encoding="utf-8"))
    proxy["classifiers"] = {"default": {"base_url": f"{url}/v1", "transport": "aiohttp"}}
    path.write_text(yaml.safe_dump(proxy, sort_keys=False), encoding="utf-8")
    return path


def eval_command(a: argparse.Namespace, dataset: Path, url: str, cache: Path, out: Path, c: int,
                 config: Path | None) -> list[str]:
    return [sys.executable, "-m", "guardrail_proxy", "eval", "--policy", str(a.policy), "--dataset", str(dataset),
            *(["--config", str(config)] if config else []), "--base-url", f"{url}/v1", "--cache-dir", str(cache),
            "--out", str(out), "--quiet", "--concurrency", str(c)]


def check_run(kind: str, res: dict[str, Any], exp: Expected, calls_seen: int) -> list[str]:
    """Problems with one run; empty when everything matched."""
    if res["cut"]:
        return [f"cut after {res['wall_s']:.0f} s (--max-seconds)"]
    if res["rc"] != 0:
        return [f"exit code {res['rc']}"]
    s = res["summary"]
    problems = []
    counts = s["metrics"]["counts"]
    want = {"tp": exp.tp, "fp": exp.fp, "fn": exp.fn, "tn": exp.tn, "errors": 0}
    if s["items"] != exp.rows or s["timing"]["items"] != exp.rows:
        problems.append(f"items {s['items']} / timing {s['timing']['items']}, want {exp.rows}")
    if {k: counts[k] for k in want} != want:
        problems.append(f"counts {counts}, want {want}")
    if s.get("errors_by_kind"):
        problems.append(f"errors {s['errors_by_kind']}")
    if res["results_rows"] != exp.rows:
        problems.append(f"results.jsonl has {res['results_rows']} rows")
    if kind == "fresh":
        if s["cache_hits"] > 1 or calls_seen != exp.rows:  # the preflight's answer serves the first item
            problems.append(f"cache hits {s['cache_hits']}, stand-in calls {calls_seen}, want <= 1 and {exp.rows}")
    elif s["cache_hits"] != exp.rows or calls_seen != 0 or s["timing"]["calls"] != 0:
        problems.append(f"cache hits {s['cache_hits']}, stand-in calls {calls_seen}, timing.calls "
                        f"{s['timing']['calls']}; want {exp.rows}, 0, 0")
    return problems


def one_run(a: argparse.Namespace, kind: str, dataset: Path, url: str, cache: Path, out: Path, c: int,
            config: Path | None, exp: Expected) -> dict[str, Any]:
    harness.http_json(f"{url}/stats", "POST")
    res = run_child(eval_command(a, dataset, url, cache, out, c, config), out.with_suffix(".log"), a.max_seconds)
    calls_seen = int(harness.http_json(f"{url}/stats")["requests"])
    res["standin_calls"] = calls_seen
    if res["rc"] == 0 and not res["cut"]:
        res["summary"] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        for name in ("report.md", "report.html", "results.jsonl"):
            res[f"{name}_kb"] = (out / name).stat().st_size / 1024
        with (out / "results.jsonl").open("rb") as handle:
            res["results_rows"] = sum(1 for _ in handle)
    res["problems"] = check_run(kind, res, exp, calls_seen)
    if res["problems"]:
        log = out.with_suffix(".log")
        res["log_tail"] = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    timing = res.get("summary", {}).get("timing", {})
    print(f"    {kind:6s} rc={res['rc']} wall {res['wall_s']:.1f} s, timed {timing.get('seconds', float('nan')):.1f} s,"
          f" {timing.get('items_per_s') or float('nan'):,.0f} items/s, CPU {res['cpu_s']:.1f} s, "
          f"peak RSS {res['peak_rss_mb']:.0f} MB, stand-in calls {calls_seen}"
          + (f"  PROBLEMS: {'; '.join(res['problems'])}" if res["problems"] else ""), flush=True)
    return res


def items_per_s(res: dict[str, Any]) -> float:
    value = res.get("summary", {}).get("timing", {}).get("items_per_s")
    return float(value) if value else float("nan")


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| delay ms | transport | c | items | items/s fresh | items/s cached | wall s fresh / cached "
            "| CPU ms/item fresh | peak RSS MB fresh / cached | report.md KB | report.html KB | results.jsonl MB "
            "| checks |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        fresh, cached = r["fresh"], r.get("cached", {})
        items = fresh.get("summary", {}).get("items", 0)
        problems = fresh["problems"] + cached.get("problems", [])
        lines.append("| " + " | ".join([
            fmt(r["delay_ms"]), r["transport"], str(r["concurrency"]), fmt(items), fmt(items_per_s(fresh)),
            fmt(items_per_s(cached)),
            f"{fresh['wall_s']:.1f} / {cached.get('wall_s', float('nan')):.1f}",
            fmt(fresh["cpu_s"] * 1000 / items, 2) if items else "-",
            f"{fresh['peak_rss_mb']:.0f} / {cached.get('peak_rss_mb', float('nan')):.0f}",
            fmt(fresh.get("report.md_kb", float("nan")), 1), fmt(fresh.get("report.html_kb", float("nan")), 1),
            fmt(fresh.get("results.jsonl_kb", float("nan")) / 1024, 1),
            "ok" if not problems else "FAILED",
        ]) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000, help="items in the generated set (20,000)")
    p.add_argument("--delays-ms", type=float, nargs="+", default=[0.0, 50.0], help="stand-in classifier delays")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 64], help="eval --concurrency values")
    p.add_argument("--transports", nargs="+", choices=["openai", "aiohttp"], default=["openai"],
                   help="classifier transports (default: openai, the SDK)")
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file (default: graphic-violent-content)")
    p.add_argument("--max-seconds", type=float, default=360.0, help="cap on one eval run; a run over it is killed")
    p.add_argument("--no-cached", action="store_true", help="skip the cached re-runs")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/eval-throughput-<time>.json)")
    a = p.parse_args()
    a.policy = a.policy.resolve()

    info = harness.machine()
    print(f"eval throughput: {info['date']}, nproc {info['nproc']}, Python {info['python']}, "
          f"load {info['loadavg_at_start']}", flush=True)
    allowed, violation = label_codes(a.policy)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp_name:
        tmp = Path(tmp_name)
        dataset = tmp / "set.jsonl"
        exp = write_dataset(dataset, a.rows, allowed, violation)
        print(f"  set: {exp.rows:,} rows ({dataset.stat().st_size / 1024 / 1024:.1f} MB), labels {allowed}/"
              f"{violation} and 0/1 ({exp.kinds}); expected TP {exp.tp} FP {exp.fp} FN {exp.fn} TN {exp.tn}",
              flush=True)
        busy0, mine0 = harness.busy_seconds(), os.times()
        started = time.monotonic()
        for delay in a.delays_ms:
            procs = harness.Processes(tmp)
            name = f"classifier-{delay:g}ms"
            try:
                _, url = procs.standin(name, "safeguard", "--delay-ms", f"{delay:g}", "--trigger", TRIGGER,
                                       "--level", str(LEVEL))
                for transport in a.transports:
                    config = aiohttp_config(tmp / f"config-{delay:g}", url) if transport == "aiohttp" else None
                    for c in a.concurrency:
                        print(f"  delay {delay:g} ms, transport {transport}, concurrency {c}", flush=True)
                        run_dir = tmp / f"d{delay:g}-{transport}-c{c}"
                        run_dir.mkdir()
                        cache = run_dir / "cache"  # fresh: nothing cached for this run
                        row: dict[str, Any] = {"delay_ms": delay, "transport": transport, "concurrency": c}
                        row["fresh"] = one_run(a, "fresh", dataset, url, cache, run_dir / "out-fresh", c, config, exp)
                        if not a.no_cached and row["fresh"]["rc"] == 0:
                            row["cached"] = one_run(a, "cached", dataset, url, cache, run_dir / "out-cached", c,
                                                    config, exp)
                        rows.append(row)
            finally:
                procs.stop_all()
                for line in procs.log_notes(name):
                    print(f"  [{name} log] {line}")
        elapsed = time.monotonic() - started
        mine1 = os.times()
        ours = sum(getattr(mine1, f) - getattr(mine0, f) for f in ("user", "system", "children_user",
                                                                    "children_system"))
        foreign = max(harness.busy_seconds() - busy0 - ours, 0.0)

    foreign_note = f"other processes used {foreign:.1f} CPU-s in the {elapsed:.0f} s measuring phase"
    if foreign > 0.05 * elapsed * (os.cpu_count() or 1):
        foreign_note += " (the machine was busy with other work: absolute numbers are inflated, compare ratios)"
    settings = (f"{exp.rows:,} distinct items, policy {a.policy.parent.name}, stand-in classifier on the same "
                f"{info['nproc']} cores; items/s from summary.json `timing` (the items phase only); {foreign_note}")
    text = "\n".join([f"{settings}.", "", table(rows)])
    print("\n" + text)
    for r in rows:
        for kind in ("fresh", "cached"):
            res = r.get(kind)
            if res and res["problems"]:
                print(f"\ndelay {r['delay_ms']:g} ms {r['transport']} c={r['concurrency']} {kind}: "
                      f"{'; '.join(res['problems'])}\n--- eval output tail ---\n{res.get('log_tail', '')}")
    out = a.out or RESULTS / f"eval-throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for r in rows:
        for kind in ("fresh", "cached"):
            if kind in r and "summary" in r[kind]:
                r[kind]["summary"] = {k: r[kind]["summary"].get(k) for k in ("items", "timing", "cache_hits",
                                                                             "cache_misses", "latency", "metrics")}
    out.write_text(json.dumps({"machine": info, "command": sys.argv, "args": {k: str(v) for k, v in vars(a).items()},
                               "expected": vars(exp), "settings": settings, "runs": rows, "table": text},
                              indent=1))
    print(f"\nwrote {out}")
    bad = any(r[k]["problems"] for r in rows for k in ("fresh", "cached") if k in r)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
