#!/usr/bin/env python3
"""Every benchmark scenario in one command, one after the other (they must not share the 2 cores):

  python bench/all.py            # about 9 minutes
  python bench/all.py --quick    # smoke run of each, about 2 minutes

Runs throughput.py (non-streaming req/s, latency, proxy CPU, RSS; both event loops and both classifier
transports; streams/s with no checks against direct; RSS growth over 20,000 guarded requests), stream_latency.py
(TTFT and total per stream mode), idle_rss.py (RSS when ready and import time on the raw transports),
conversation.py (classifier calls, tokens and TTFT per teen-conversation turn), audit_throughput.py (the
audit store's cost), shadow.py (what shadow policies add to the reply path) and workers.py (one worker against
two). Each prints its table and
writes its JSON to bench/results/; this exits non-zero when any of them failed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    ("throughput.py", ["--providers", "openai", "openai-asyncio", "litellm", "--streams", "--rss-requests", "20000"]),
    ("stream_latency.py", []),
    ("idle_rss.py", []),
    ("conversation.py", []),
    ("audit_throughput.py", []),
    ("shadow.py", []),
    ("workers.py", []),
)


def main() -> int:
    quick = ["--quick"] if "--quick" in sys.argv[1:] else []
    failed = []
    for script, args in SCRIPTS:
        print(f"\n=== {script} {' '.join([*args, *quick])}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args, *quick], check=False).returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
