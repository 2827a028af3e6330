#!/usr/bin/env python3
"""Idle memory and start-up: RSS of a ready `guardrail-proxy serve`, and the time to import what it imports.

Starts, on 127.0.0.1 only, the stand-in upstream and classifier, then `guardrail-proxy serve` with the raw
transports only (a `provider: openai` upstream, the classifier's default aiohttp transport; routes with and
without checks), several times in turn, and reads each one's RSS (VmRSS) once /readyz says ready. The
throughput bench's proxies also carry a `transport: openai` classifier for its guarded-sdk route, which loads
the openai SDK; this one does not. Then a fresh interpreter imports `guardrail_proxy.cli` (what `serve`
imports) under `-X importtime`: its total import time, whether the openai package was among the imports, and
the top-level packages by cumulative import time.

With --baseline DIR, the same for the guardrail_proxy package under DIR (`base`), interleaved.

  python bench/idle_rss.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import harness

ROUTES = {
    "none": {"upstream": "standin", "input": {"enabled": False}, "output": {"enabled": False}},
    "guarded": {"upstream": "standin"},
}


def import_trace(code: Path | None) -> tuple[float, list[tuple[int, str]], bool]:
    """(total import time of guardrail_proxy.cli in ms, the top-level packages by cumulative µs, whether openai
    was imported), in a fresh interpreter."""
    env = {**os.environ, **({"PYTHONPATH": str(code)} if code else {})}
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import guardrail_proxy.cli"], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir(), check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        rows.append((int(cumulative), name))
    top = sorted(((us, name) for us, name in rows if "." not in name), reverse=True)
    total = next(us for us, name in rows if name == "guardrail_proxy.cli") / 1000
    return total, top[:8], any(name == "openai" for _, name in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--starts", type=int, default=3, help="proxy starts per code copy (the median RSS is reported)")
    p.add_argument("--baseline", type=Path, metavar="DIR", help="also the guardrail_proxy package under DIR")
    p.add_argument("--quick", action="store_true", help="one start per code copy")
    a = p.parse_args()
    a.starts = 1 if a.quick else a.starts
    codes: dict[str, Path | None] = {"current": None, **({"base": a.baseline} if a.baseline else {})}
    rss: dict[str, list[float]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        procs = harness.Processes(Path(tmp))
        try:
            _, upstream_url = procs.standin("upstream", "upstream")
            _, classifier_url = procs.standin("classifier", "safeguard")
            config = harness.write_proxy_config(Path(tmp), ROUTES, classifier_url,
                                                {"standin": harness.openai_upstream(upstream_url)},
                                                sdk_classifier=False)
            for start in range(a.starts):
                for name, code in codes.items():
                    pid, url = procs.proxy(f"proxy-{name}-{start}", config, code=code)
                    harness.http_json(f"{url}/readyz")
                    rss[name].append(harness.rss_mb(pid))
                    procs.procs[-1].terminate()
                    procs.procs[-1].wait(timeout=10)
        finally:
            procs.stop_all()
    print("\n| code | RSS when ready, MB (median) | each start | import guardrail_proxy.cli, ms | openai imported |")
    print("|---|---:|---|---:|---|")
    traces = {}
    for name, code in codes.items():
        traces[name] = import_trace(code)
        total, _, openai = traces[name]
        print(f"| {name} | {statistics.median(rss[name]):.1f} | {', '.join(f'{v:.1f}' for v in rss[name])} "
              f"| {total:.0f} | {'yes' if openai else 'no'} |")
    for name, (_, top, _) in traces.items():
        print(f"\n{name}: top-level imports by cumulative time (-X importtime, ms): "
              + ", ".join(f"{n} {us / 1000:.0f}" for us, n in top))


if __name__ == "__main__":
    main()
