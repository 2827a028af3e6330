"""Guarded throughput at concurrency 32: `serve --workers 1` against `--workers 2`, one run, the same stand-ins.

  python bench/workers.py            # about 1 minute
  python bench/workers.py --quick    # smoke run, under 30 s

Starts, on 127.0.0.1 only, the stand-in upstream (32-word reply) and classifier, both answering at once, and
two `guardrail-proxy serve` processes on the guarded route: one with one worker, one with two. Rounds alternate
the order. Proxy CPU is the supervisor plus its workers (from /proc); the requests each worker served come from
the fleet's /metrics. On a 2-core machine the stand-ins and the load generator share the cores with the
workers, so a second worker gains less here than on a machine with cores to spare: read the ratio, and the
foreign-load note, not the absolute numbers."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import harness
import loadgen

ROUTES = {"guarded": {"upstream": "standin"}}


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_tree(pid: int) -> float:
    return harness.cpu_seconds(pid) + sum(harness.cpu_seconds(c) for c in children(pid))


def start(procs: harness.Processes, name: str, config: Path, workers: int) -> tuple[int, str]:
    port = harness.free_port()
    cmd = [*harness.proxy_command(), "serve", "--config", str(config), "--port", str(port), "--workers",
           str(workers)]
    log = (procs.workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=procs.workdir)
    procs.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            procs.fail(name, f"exited {proc.returncode}")
        try:
            text = harness.NO_PROXY.open(f"{url}/metrics", timeout=5).read().decode()
            up = sum(1 for ln in text.splitlines() if ln.startswith("guardrail_worker_up") and ln.endswith(" 1.0"))
            if workers == 1 or up == workers:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            procs.fail(name, "not ready")
        time.sleep(0.2)
    return proc.pid, url


def per_worker(url: str) -> dict[str, float]:
    text = harness.NO_PROXY.open(f"{url}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for ln in text.splitlines():
        if ln.startswith("guardrail_requests_total{") and 'worker="' in ln:
            worker = ln.split('worker="')[1].split('"')[0]
            out[worker] = out.get(worker, 0.0) + float(ln.rsplit(" ", 1)[1])
    return out


async def main(quick: bool) -> None:
    rounds, per_round, c = (1, 300, 32) if quick else (4, 1500, 32)
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
        procs = harness.Processes(Path(tmp))
        try:
            _, upstream_url = procs.standin("upstream", "upstream", "--tokens", "32")
            _, classifier_url = procs.standin("classifier", "safeguard")
            targets = []
            for workers in (1, 2):
                config = harness.write_proxy_config(Path(tmp) / f"w{workers}", ROUTES, classifier_url,
                                                    {"standin": harness.openai_upstream(upstream_url)})
                pid, url = start(procs, f"proxy-w{workers}", config, workers)
                targets.append((f"workers={workers}", pid, url))
                print(f"  workers={workers}: pid {pid} at {url}", flush=True)
            for name, _, url in targets:
                await loadgen.run(f"{url}/v1", "bench-guarded", 200, 8, False, max_seconds=30, label=name)
            results: dict[str, list[dict]] = {t[0]: [] for t in targets}
            info = harness.machine()
            foreign = harness.ForeignLoad(procs.pids + [c2 for t in targets for c2 in children(t[1])])
            for rnd in range(rounds):
                order = targets if rnd % 2 == 0 else targets[::-1]
                for name, pid, url in order:
                    cpu0 = cpu_tree(pid)
                    res = await loadgen.run(f"{url}/v1", "bench-guarded", per_round, c, False, max_seconds=30,
                                            label=name)
                    res["cpu_s"] = cpu_tree(pid) - cpu0
                    results[name].append(res)
                    print(f"  round {rnd} {name}: ok={res['ok']} err={res['errors']} rps={res['rps']:.0f} "
                          f"p50={res['latency_ms']['p50']:.2f} p99={res['latency_ms']['p99']:.2f}", flush=True)
            note = foreign.stop()
            spread = {name: per_worker(url) for name, _, url in targets if name != "workers=1"}
        finally:
            procs.stop_all()
    print(f"\n{info['date']}, nproc {info['nproc']}, {info['cpu']}, Python {info['python']}, "
          f"load at start {info['loadavg_at_start']}; {note}")
    print("| target | req/s | p50 ms | p90 ms | p99 ms | proxy CPU ms/req (all processes) | ok / errors |")
    print("|---|---|---|---|---|---|---|")
    for name, batches in results.items():
        samples = [s["lat"] * 1000 for b in batches for s in b["samples"]]
        wall = sum(b["wall_s"] for b in batches)
        ok, errors = len(samples), sum(b["errors"] for b in batches)
        lat = loadgen.summarize(samples)
        cpu = sum(b["cpu_s"] for b in batches) * 1000 / (ok + errors)
        print(f"| {name} | {ok / wall:,.0f} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {cpu:.2f} "
              f"| {ok} / {errors} |")
    print("per-round req/s:", {n: [round(b["rps"]) for b in bs] for n, bs in results.items()})
    print("requests per worker (fleet /metrics, warm-up included):", json.dumps(spread))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round")
    asyncio.run(main(parser.parse_args().quick))
