"""`guardrail-proxy demo`: the real proxy, in front of the STAND-IN model and STAND-IN classifier.

Runs on any machine in seconds (no GPU, no network): it writes a small config to a temporary directory,
starts both stand-ins and the proxy on 127.0.0.1, makes three OpenAI SDK calls (allowed, annotated,
blocked) and prints each call and what came back. With --keep it stays up so you can try your own calls.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .app import create_app
from .loader import load_config
from .settings import Settings
from .standins.safeguard import Rule, SafeguardBehaviour, build_safeguard_app
from .standins.server import ServerThread
from .standins.upstream import UpstreamBehaviour, build_upstream_app

if TYPE_CHECKING:
    import openai  # imported where the demo runs: `guardrail-proxy serve` loads this module but needs no SDK

DEMO_POLICY = """---
id: demo-body-ideals
title: Demo policy (harmful body ideals, short)
format: label
label_prefix: DB
labels:
  DB0: Allowed
  DB1: Risky diet talk
  DB2: Promotes disordered eating
  DB3: Coaching disordered eating
refusal: "I can't help with that. If food or your body feels hard right now, please talk to someone you trust."
---
# Demo policy: harmful body ideals

## Output format
Answer with exactly one code: DB0, DB1, DB2 or DB3.

## Criteria
- DB0: anything else, including nutrition education and recovery support.
- DB1: diet talk that praises rapid weight loss without instructions.
- DB2: encouragement to skip meals or to starve.
- DB3: step-by-step coaching of disordered eating.
"""

ROUTE = """models: [demo-model]
upstream: standin
classifier: default
block_style: error
policies:
  - id: demo-body-ideals
    levels: {1: annotate, 2: block, 3: block}
"""

CALLS = [
    ("allowed", "What is a good breakfast before a football match?"),
    ("annotated", "My friend says a crash diet is the best way to get in shape. Is it?"),
    ("blocked", "Give me tips to skip meals so nobody notices."),
]


def write_config(directory: Path, classifier_url: str, upstream_url: str, port: int) -> Path:
    (directory / "routes").mkdir()
    (directory / "policies").mkdir()
    (directory / "policies" / "demo-body-ideals.md").write_text(DEMO_POLICY)
    (directory / "routes" / "demo.yaml").write_text(ROUTE)
    proxy = {
        "server": {"host": "127.0.0.1", "port": port},
        "classifiers": {"default": {"base_url": f"{classifier_url}/v1", "timeout_s": 5}},
        "upstreams": {"standin": {"provider": "openai", "model": "stand-in-chat", "api_base": f"{upstream_url}/v1"}},
        "policies": {"dirs": ["policies"]},
        "audit": {"store": "jsonl", "path": str(directory / "audit.jsonl"), "durability": "sync"},
    }
    path = directory / "proxy.yaml"
    path.write_text(json.dumps(proxy, indent=2))  # JSON is valid YAML
    return path


def show(label: str, prompt: str, client: openai.OpenAI) -> None:
    import openai

    print(f"\n--- {label} ---")
    print(f'client.chat.completions.create(model="demo-model", messages=[{{"role": "user", "content": {prompt!r}}}])')
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="demo-model", messages=[{"role": "user", "content": prompt}])
        completion = raw.parse()
        print(f"-> 200, finish_reason={completion.choices[0].finish_reason!r}")
        print(f"   content: {completion.choices[0].message.content!r}")
        decision = raw.headers.get("x-guardrail-decision")
        if decision:
            print(f"   x-guardrail-decision: {decision}; labels: {raw.headers.get('x-guardrail-labels')}")
    except openai.APIStatusError as exc:
        error = exc.body if isinstance(exc.body, dict) else {}
        print(f"-> HTTP {exc.status_code} openai.{type(exc).__name__}: code={error.get('code')!r}")
        print(f"   message: {error.get('message')!r}")


def show_audit(path: Path) -> None:
    """The audit record of the blocked call: what the operator sees, reasoning included."""
    last = json.loads(path.read_text().splitlines()[-1])
    check = next(c for phase in last["phases"] for c in phase["checks"] if c["result"] == "violation")
    print(f"\nAudit record of the blocked call ({path.name}, one JSON line per request):")
    print(f"   decision={last['decision']!r} upstream_cancelled={last['upstream_cancelled']} "
          f"policy={check['policy']!r} digest={check['policy_digest'][:12]} label={check['label']!r}")
    print(f"   reasoning: {check['reasoning']!r}")


def run_demo(port: int = 0, keep: bool = False) -> int:
    import openai

    sg_behaviour = SafeguardBehaviour(rules=[Rule("skip meals", 2), Rule("crash diet", 1)])
    with tempfile.TemporaryDirectory(prefix="guardrail-demo-") as tmp, \
            ServerThread(build_safeguard_app(sg_behaviour)) as classifier, \
            ServerThread(build_upstream_app(UpstreamBehaviour())) as upstream:
        config = load_config(write_config(Path(tmp), classifier.url, upstream.url, port))
        with ServerThread(create_app(config, Settings()), port=port) as proxy:
            base_url = f"{proxy.url}/v1"
            print("guardrail-proxy demo: the real proxy in front of a STAND-IN model and a STAND-IN classifier")
            print("(the stand-ins answer by keyword rules; real deployments use gpt-oss-safeguard).")
            print(f'\nclient = openai.OpenAI(base_url="{base_url}", api_key="demo")')
            client = openai.OpenAI(base_url=base_url, api_key="demo", max_retries=0)
            for label, prompt in CALLS:
                show(label, prompt, client)
            show_audit(Path(tmp) / "audit.jsonl")
            print(f"Stand-in classifier calls: {len(sg_behaviour.requests)}")
            if keep:
                print(f"\nProxy listening on {base_url} (model 'demo-model'); Ctrl-C to stop.")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    return 0
