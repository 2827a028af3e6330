#!/usr/bin/env python3
"""Non-streaming throughput with each audit store: what the record of every request costs.

Starts, on 127.0.0.1 only, a STAND-IN upstream (fixed 32-word reply) and a STAND-IN classifier, both answering
at once (0 ms), and one `guardrail-proxy serve` process per audit variant (provider `openai`), each with its own
config and its audit files in the temporary directory:

  jsonl         audit.store jsonl, durability batch, batch_ms 50 (the benchmarks' usual sink; the baseline)
  sqlite-batch  audit.store sqlite (WAL, synchronous=FULL), durability batch, batch_ms 50 (the default)
  sqlite-sync   audit.store sqlite, durability sync: a reply waits for its record's commit
  jsonl-sync    (only with --variants) jsonl under sync: the wait for the commit without SQLite's cost

Each proxy has two routes, `none` (input and output checks disabled: nothing hides the audit cost) and
`guarded` (one policy on input and output, classifier over aiohttp: a realistic request). Each concurrency
level runs in rounds; in every round each target (variant x route) gets its requests back to back, the order
rotating from round to round, so drift hits every variant alike. After each batch: how many records the store
already holds when the last reply has arrived (under sync it must be all of them), then a pause of at least
--settle-ms and until the store holds every record, so a batch's last group is committed (and its CPU charged)
before the proxy's CPU time is read from /proc.

Then, with --sustain-seconds > 0, each variant in turn gets that long a closed-loop run at the highest
concurrency on the `none` route while /metrics is polled every 0.5 s: the records answered but not yet
committed (guardrail_requests_total - guardrail_audit_records_total), i.e. what a crash would lose, and how long
the writer needs to catch up once the load stops.

After a clean stop (SIGTERM: the writer commits what waits) every SQLite database must hold exactly one row in
`records` per request sent (warm-up included), per route, and every JSONL file one line per request.

  python bench/audit_throughput.py            # default, about 2.5 minutes
  python bench/audit_throughput.py --quick    # smoke run, under 40 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import loadgen
import throughput
from harness import fmt

RESULTS = Path(__file__).resolve().parent / "results"
ROUTES = {name: throughput.ROUTES[name] for name in ("none", "guarded")}
BASELINE = "jsonl"
VARIANTS: dict[str, dict[str, Any]] = {  # the audit: section, without its path
    "jsonl": {"store": "jsonl", "durability": "batch", "batch_ms": 50},
    "sqlite-batch": {"store": "sqlite", "durability": "batch", "batch_ms": 50},
    "sqlite-sync": {"store": "sqlite", "durability": "sync"},
    "jsonl-sync": {"store": "jsonl", "durability": "sync"},
}
CHECKS_PER_REQUEST = {"none": 0, "guarded": 2}  # rows in the SQLite `checks` table (input + output)


@dataclass
class Variant:
    name: str
    audit: dict[str, Any]
    pid: int = 0
    url: str = ""
    sent: Counter[str] = field(default_factory=Counter)  # requests sent per route, warm-up included
    lag: list[int] = field(default_factory=list)  # per batch: records not yet committed at the last reply

    @property
    def path(self) -> Path:
        return Path(self.audit["path"])

    @property
    def sqlite(self) -> bool:
        return bool(self.audit["store"] == "sqlite")


def sqlite_counts(path: Path) -> tuple[Counter[str], int]:
    """(records per route, rows in `checks`), read-only, on a connection closed at once."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        routes = Counter({route: n for route, n in db.execute("SELECT route, COUNT(*) FROM records GROUP BY route")})
        checks = int(db.execute("SELECT COUNT(*) FROM checks").fetchone()[0])
    finally:
        db.close()
    return routes, checks


def jsonl_counts(path: Path) -> tuple[Counter[str], int]:
    """(lines per route, unparsable lines)."""
    routes: Counter[str] = Counter()
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            routes[json.loads(line).get("route") or ""] += 1
        except (json.JSONDecodeError, AttributeError):
            bad += 1
    return routes, bad


def committed_now(v: Variant) -> int:
    """Records the store holds at this moment (all routes)."""
    if not v.path.exists():
        return 0
    if v.sqlite:
        return sum(sqlite_counts(v.path)[0].values())
    with v.path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def fsync_probe(directory: Path, n: int = 200) -> dict[str, dict[str, float]]:
    """What a commit costs on this disk: one-row SQLite commits (WAL, synchronous=FULL, as the store) and raw
    fsync() of a small append, in ms. A fast result means the disk (or the VM) acknowledges fsync from cache."""
    db = sqlite3.connect(str(directory / "probe.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (a TEXT)")
    commits = []
    for i in range(n):
        t0 = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?)", ("x" * 1000 + str(i),))
        db.execute("COMMIT")
        commits.append((time.perf_counter() - t0) * 1000)
    db.close()
    fsyncs = []
    fd = os.open(directory / "probe.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 1000)
            t0 = time.perf_counter()
            os.fsync(fd)
            fsyncs.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
    return {"sqlite_commit_ms": loadgen.summarize(commits), "fsync_ms": loadgen.summarize(fsyncs)}


def metrics_text(url: str) -> str:
    with harness.NO_PROXY.open(f"{url}/metrics", timeout=5.0) as response:
        return str(response.read().decode())


def metrics_lines(url: str) -> list[str]:
    """The proxy's guardrail_audit_* samples from /metrics."""
    return [ln for ln in metrics_text(url).splitlines() if ln.startswith("guardrail_audit")]


def uncommitted(url: str) -> int:
    """Requests answered (their record submitted) minus records committed, from the proxy's own counters."""
    text = metrics_text(url)
    answered = sum(float(x) for x in re.findall(r"^guardrail_requests_total(?:\{[^}]*\})? (\S+)$", text, re.M))
    committed = sum(float(x) for x in re.findall(r"^guardrail_audit_records_total(?:\{[^}]*\})? (\S+)$", text, re.M))
    return int(answered - committed)


async def settle(v: Variant, minimum_s: float, limit_s: float = 10.0) -> float:
    """Wait at least `minimum_s`, then until the store holds every record sent to `v`; the time waited."""
    t0 = time.monotonic()
    await asyncio.sleep(minimum_s)
    while committed_now(v) < sum(v.sent.values()) and time.monotonic() - t0 < limit_s:
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def sustain(v: Variant, route: str, c: int, seconds: float, poll_s: float = 0.5) -> dict[str, Any]:
    """A closed-loop run of `seconds` at concurrency `c` while the backlog of uncommitted records is polled."""
    backlog: list[int] = []

    async def poll() -> None:
        while True:
            await asyncio.sleep(poll_s)
            backlog.append(await asyncio.to_thread(uncommitted, v.url))  # off the load generator's loop

    poller = asyncio.create_task(poll())
    try:
        res = await loadgen.run(f"{v.url}/v1", f"bench-{route}", 10**9, c, False, max_seconds=seconds,
                                prompt=throughput.PROMPT, label=f"sustain {v.name}")
    finally:
        poller.cancel()
    v.sent[route] += res["ok"] + res["errors"]
    stopped = time.monotonic()
    left = uncommitted(v.url)
    while left and time.monotonic() - stopped < 30:
        await asyncio.sleep(0.02)
        left = uncommitted(v.url)
    res.pop("samples")
    rps = res["rps"] or math.nan
    return {"variant": v.name, "route": route, "concurrency": c, "seconds": res["wall_s"], "rps": res["rps"],
            "latency_ms": res["latency_ms"], "ok": res["ok"], "errors": res["errors"], "backlog": backlog,
            "backlog_max": max(backlog, default=0), "backlog_mean": sum(backlog) / len(backlog) if backlog else 0.0,
            "backlog_max_s": max(backlog, default=0) / rps, "drain_s": time.monotonic() - stopped,
            "drained": left == 0}


def sustain_table(rows: list[dict[str, Any]]) -> str:
    head = ("| audit | route | c | s | req/s | p50 ms | p99 ms | uncommitted: max | ≈ s of traffic | mean "
            "| catch-up after the load s | ok / errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["variant"], r["route"], str(r["concurrency"]), fmt(r["seconds"]), fmt(r["rps"]),
            fmt(r["latency_ms"].get("p50", math.nan), 2), fmt(r["latency_ms"].get("p99", math.nan), 2),
            fmt(r["backlog_max"]), fmt(r["backlog_max_s"], 2), fmt(r["backlog_mean"]),
            fmt(r["drain_s"], 2) + ("" if r["drained"] else " (NOT drained)"), f"{r['ok']} / {r['errors']}",
        ]) + " |")
    return "\n".join(lines)


async def measure(targets: list[tuple[str, str, Variant]], plan: list[tuple[int, int]], rounds: int,
                  batch_cap: float, deadline: float, warmup: int, settle_s: float, classifier_url: str,
                  upstream_url: str) -> dict[int, dict[str, dict[str, Any]]]:
    for name, route, v in targets:  # unmeasured (but audited): connections, lazy imports, first-call work
        await loadgen.run(f"{v.url}/v1", f"bench-{route}", warmup, 4, False, max_seconds=30,
                          prompt=throughput.PROMPT, label=name)
        v.sent[route] += warmup
    for v in {id(t[2]): t[2] for t in targets}.values():
        await settle(v, settle_s)
    batches: dict[int, dict[str, list[dict[str, Any]]]] = {c: {t[0]: [] for t in targets} for c, _ in plan}
    for c, total in plan:
        per_round = max(c, math.ceil(total / rounds))
        for rnd in range(rounds):
            k = rnd % len(targets)
            for name, route, v in targets[k:] + targets[:k]:
                left = deadline - time.monotonic()
                if left <= 1:
                    break
                harness.http_json(f"{classifier_url}/stats", "POST")
                harness.http_json(f"{upstream_url}/stats", "POST")
                cpu0 = harness.cpu_seconds(v.pid)
                res = await loadgen.run(f"{v.url}/v1", f"bench-{route}", per_round, c, False,
                                        max_seconds=min(left, batch_cap), prompt=throughput.PROMPT, label=name)
                v.sent[route] += res["ok"] + res["errors"]
                lag = sum(v.sent.values()) - committed_now(v)
                v.lag.append(lag)
                res["settle_s"] = await settle(v, settle_s)  # the last group's commit lands in this batch's CPU
                res["proxy_cpu_s"] = harness.cpu_seconds(v.pid) - cpu0
                res["classifier_calls"] = harness.http_json(f"{classifier_url}/stats")["requests"]
                res["upstream_calls"] = harness.http_json(f"{upstream_url}/stats")["requests"]
                res["round"], res["uncommitted_at_last_reply"] = rnd, lag
                batches[c][name].append(res)
                print(f"  c={c} round {rnd} {name:26s} ok={res['ok']} err={res['errors']} rps={res['rps']:.0f} "
                      f"p50={res['latency_ms'].get('p50', math.nan):.2f} ms uncommitted={lag}", flush=True)
    out = {c: {name: {**throughput.pooled(bs), "batches": bs} for name, bs in by.items()} for c, by in batches.items()}
    for by in out.values():
        for r in by.values():
            samples = {b["round"]: sorted(s["lat"] * 1000 for s in b["samples"]) for b in r["batches"]}
            r["p50_per_round"] = {rnd: loadgen.pct(s, 50) for rnd, s in samples.items() if s}
    for by in batches.values():
        for bs in by.values():
            for b in bs:
                b.pop("samples")  # thousands per batch: the summaries are kept, the raw samples are not
    return out


def signed(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:+,.{digits}f}"


def row(c: int, route: str, variant: str, r: dict[str, Any], base: dict[str, Any] | None) -> str:
    """One table row; the differences are against `base`, the jsonl variant on the same route (None for it)."""
    if not r["ok"]:
        return f"| {c} | {route} | {variant} |" + " - |" * 9 + f" 0 / {r['errors']} |"
    lat = r["latency_ms"]
    cells = [str(c), route, variant, fmt(r["rps"])]
    if base is None or not base["ok"]:
        cells += ["1.00" if variant == BASELINE else "-", fmt(lat["p50"], 2), fmt(lat["p99"], 2), "—", "—", "—",
                  fmt(r["proxy_cpu_ms_per_request"], 2), "—"]
    else:
        rounds = sorted(set(r["p50_per_round"]) & set(base["p50_per_round"]))
        cells += [fmt(r["rps"] / base["rps"], 3), fmt(lat["p50"], 2), fmt(lat["p99"], 2),
                  signed(lat["p50"] - base["latency_ms"]["p50"]), signed(lat["p99"] - base["latency_ms"]["p99"]),
                  " ".join(signed(r["p50_per_round"][k] - base["p50_per_round"][k]) for k in rounds),
                  fmt(r["proxy_cpu_ms_per_request"], 2),
                  signed(r["proxy_cpu_ms_per_request"] - base["proxy_cpu_ms_per_request"])]
    cells.append(f"{r['ok']} / {r['errors']}" + (" (cut)" if r["cut"] else ""))
    return "| " + " | ".join(cells) + " |"


def table(results: dict[int, dict[str, dict[str, Any]]], variants: list[str]) -> str:
    head = ("| c | route | audit | req/s | req/s ÷ jsonl | p50 ms | p99 ms | p50 − jsonl | p99 − jsonl "
            "| p50 − jsonl per round | proxy CPU ms/req | CPU − jsonl | ok / errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c, by in results.items():
        for route in ROUTES:
            for variant in variants:
                base = None if variant == BASELINE else by.get(f"{BASELINE}/{route}")
                lines.append(row(c, route, variant, by[f"{variant}/{route}"], base))
    return "\n".join(lines)


def record_checks(variants: list[Variant]) -> tuple[list[str], bool]:
    """Lines describing each store's contents after the clean stop, and whether everything matched."""
    lines, ok = [], True
    for v in variants:
        want = dict(sorted(v.sent.items()))
        if not v.path.exists():
            lines.append(f"MISMATCH {v.name}: {v.path.name} does not exist; {sum(want.values())} requests were sent")
            ok = False
            continue
        if v.sqlite:
            got, checks = sqlite_counts(v.path)
            want_checks = sum(CHECKS_PER_REQUEST[route] * n for route, n in want.items())
            extra = f"; `checks` rows {checks} (want {want_checks})"
            ok_checks = checks == want_checks
        else:
            got, bad = jsonl_counts(v.path)
            extra, ok_checks = f"; unparsable lines {bad}", bad == 0
        same = dict(sorted(got.items())) == want
        late = [lag for lag in v.lag if lag]
        sync = v.audit["durability"] == "sync"
        lag_note = (f"uncommitted at a batch's last reply: max {max(v.lag, default=0)}, "
                    f"in {len(late)} of {len(v.lag)} batches")
        good = same and ok_checks and not (sync and late)
        ok = ok and good
        table_name = "`records` rows" if v.sqlite else "lines"
        lines.append(f"{'ok' if good else 'MISMATCH'} {v.name} ({v.path.name}): {table_name} "
                     f"{sum(got.values())}, per route {dict(sorted(got.items()))}; sent {sum(want.values())}, "
                     f"per route {want}{extra}; {lag_note}"
                     + ("  <-- sync durability: a reply arrived before its record was committed"
                        if sync and late else ""))
    return lines, ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    p.add_argument("--requests", type=int, nargs="+", default=[2000, 5000],
                   help="measured requests per target, one count per --concurrency value (split over rounds)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--warmup", type=int, default=40, help="unmeasured requests per target first")
    p.add_argument("--batch-seconds", type=float, default=10.0, help="cap on one target's batch in one round")
    p.add_argument("--settle-ms", type=float, default=150.0,
                   help="pause after each batch before the proxy's CPU is read (> batch_ms)")
    p.add_argument("--max-seconds", type=float, default=190.0, help="cap on the measuring phase")
    p.add_argument("--sustain-seconds", type=float, default=15.0,
                   help="then per variant: this long at the highest concurrency, polling the uncommitted backlog "
                        "(0: skip)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["jsonl", "sqlite-batch", "sqlite-sync"])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, few requests (< 40 s)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/audit-throughput-<time>.json)")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.warmup, a.batch_seconds, a.max_seconds, a.sustain_seconds = 2, 10, 2.0, 25.0, 3.0
        a.requests = [100 if c == 1 else 20 * c for c in a.concurrency]
    if len(a.requests) != len(a.concurrency):
        p.error("give one --requests count per --concurrency value")
    if BASELINE not in a.variants:
        a.variants.insert(0, BASELINE)

    info = harness.machine()
    print(f"audit throughput: {info['date']}, nproc {info['nproc']}, Python {info['python']}", flush=True)
    rss: dict[str, dict[str, float]] = {}
    metrics: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        probe = fsync_probe(Path(tmp))
        print(f"  disk: SQLite commit p50 {probe['sqlite_commit_ms']['p50']:.2f} ms, "
              f"fsync p50 {probe['fsync_ms']['p50']:.2f} ms", flush=True)
        procs = harness.Processes(Path(tmp))
        variants: list[Variant] = []
        try:
            _, upstream_url = procs.standin("upstream", "upstream", "--tokens", "32")
            _, classifier_url = procs.standin("classifier", "safeguard")
            for name in a.variants:
                directory = Path(tmp) / name
                path = directory / ("audit.db" if VARIANTS[name]["store"] == "sqlite" else "audit.jsonl")
                v = Variant(name, {**VARIANTS[name], "path": str(path)})
                config = harness.write_proxy_config(directory, ROUTES, classifier_url,
                                                    {"standin": harness.openai_upstream(upstream_url)}, audit=v.audit)
                v.pid, v.url = procs.proxy(f"proxy-{name}", config)
                rss[name] = {"ready_mb": harness.rss_mb(v.pid)}
                variants.append(v)
            targets = [(f"{v.name}/{route}", route, v) for route in ROUTES for v in variants]  # route-major
            started = time.monotonic()
            foreign = harness.ForeignLoad(procs.pids)
            results = asyncio.run(measure(targets, list(zip(a.concurrency, a.requests, strict=True)), a.rounds,
                                          a.batch_seconds, started + a.max_seconds, a.warmup, a.settle_ms / 1000,
                                          classifier_url, upstream_url))
            elapsed = time.monotonic() - started
            sustained = []
            if a.sustain_seconds > 0:
                for v in variants:
                    sustained.append(asyncio.run(sustain(v, "none", max(a.concurrency), a.sustain_seconds)))
                    r = sustained[-1]
                    print(f"  sustain {v.name:13s} rps={r['rps']:.0f} uncommitted max={r['backlog_max']} "
                          f"mean={r['backlog_mean']:.0f} catch-up {r['drain_s']:.2f} s", flush=True)
            foreign_note = foreign.stop()  # over both phases
            for v in variants:
                rss[v.name]["after_run_mb"] = harness.rss_mb(v.pid)
                metrics[v.name] = metrics_lines(v.url)
        finally:
            procs.stop_all()  # SIGTERM: each proxy's writer commits what waits, then closes its store
            for name in ("upstream", "classifier", *(f"proxy-{v}" for v in a.variants)):
                for line in procs.log_notes(name):
                    print(f"  [{name} log] {line}")
        count_lines, counts_ok = record_checks(variants)

    checks = {f"c={c} {name}": throughput.check_calls(name, r) for c, by in results.items()
              for name, r in by.items() if r["requests"]}
    bad_calls = {k: v for k, v in checks.items() if v != "ok"}
    rss_line = "; ".join(f"{n}: {v['ready_mb']:.0f} MB when ready, {v['after_run_mb']:.0f} MB after the run"
                         for n, v in rss.items())
    sc, fs = probe["sqlite_commit_ms"], probe["fsync_ms"]
    settings = (f"stand-ins at 0 ms, 32-word non-streaming reply, provider openai; one proxy per audit variant; "
                f"{a.rounds} round(s); settle ≥ {a.settle_ms:.0f} ms after each batch; interleaved phase "
                f"{elapsed:.0f} s; "
                f"{foreign_note}. Disk probe in the temp dir: one-row SQLite commit (WAL, FULL) p50 {sc['p50']:.2f} / "
                f"p99 {sc['p99']:.2f} ms, fsync p50 {fs['p50']:.2f} / p99 {fs['p99']:.2f} ms. Proxy RSS — {rss_line}")
    call_line = ("Call counts: every target's classifier and upstream calls matched its requests exactly."
                 if not bad_calls else "Call counts: " + "; ".join(f"{k}: {v}" for k, v in bad_calls.items()))
    metric_lines = [f"{n}: " + ", ".join(ms) for n, ms in metrics.items()]
    sustain_text = ([f"Sustained load, each variant in turn for {a.sustain_seconds:.0f} s (uncommitted = answered "
                     "but not yet committed, polled from /metrics every 0.5 s):", "", sustain_table(sustained), ""]
                    if sustained else [])
    text = "\n".join([f"{settings}.", "", table(results, a.variants), "", call_line, "", *sustain_text,
                      "Audit records after the clean stop (sent = warm-up + measured):",
                      *(f"- {ln}" for ln in count_lines), "", "Audit metrics at the end of the run:",
                      *(f"- {ln}" for ln in metric_lines)])
    print("\n" + text)
    if not counts_ok:
        print("\n*** AUDIT RECORD COUNT MISMATCH: see the MISMATCH lines above ***", file=sys.stderr)
    out = a.out or RESULTS / f"audit-throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "command": sys.argv, "args": {k: str(v) for k, v in vars(a).items()},
                               "settings": settings, "disk_probe": probe, "rss_mb": rss, "call_checks": checks,
                               "record_checks": count_lines, "audit_metrics": metrics, "results": results,
                               "sustained": sustained,
                               "table": text}, indent=1))
    print(f"\nwrote {out}")
    bad = (bad_calls or not counts_ok or any(r["errors"] or not r["ok"] for by in results.values() for r in by.values())
           or any(r["errors"] or not r["drained"] for r in sustained))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
