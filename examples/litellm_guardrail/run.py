"""A real LiteLLM proxy using guardrail-proxy as its guardrail, end to end, on 127.0.0.1, in about ten seconds.

Starts the STAND-IN classifier and STAND-IN chat model (keyword rules, no GPU; guardrail_proxy/standins), then
guardrail-proxy with one route and a client key, then `litellm --config config.yaml` in a child process. Sends
chat requests through LiteLLM with the openai SDK (a safe one, an unsafe prompt, a prompt whose reply is unsafe,
and that one streamed) and prints what came back and what guardrail-proxy's audit log recorded.

    python examples/litellm_guardrail/run.py --litellm /path/to/venv/bin/litellm

Run it with the Python that has guardrail-proxy installed; `--litellm` is LiteLLM's CLI, from a virtualenv with
LiteLLM's proxy packages (README.md says how to make one). Nothing here needs a network connection.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import openai

from guardrail_proxy.app import create_app
from guardrail_proxy.auth import new_key
from guardrail_proxy.demo import DEMO_POLICY
from guardrail_proxy.loader import load_config
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import Rule, SafeguardBehaviour, build_safeguard_app
from guardrail_proxy.standins.server import ServerThread
from guardrail_proxy.standins.upstream import UpstreamBehaviour, build_upstream_app

HERE = Path(__file__).resolve().parent
ROUTE = """models: [teen-chat]
upstream: unused           # a route names an upstream; LiteLLM calls the model here, so it is never used
policies:
  - id: demo-body-ideals
    levels: {1: annotate, 2: block, 3: block}
"""
CALLS = [  # (what it shows, the prompt, streamed)
    ("a safe request", "What is a good breakfast before a football match?", False),
    ("an unsafe request (blocked before the model is called)", "Give me tips to skip meals so nobody notices.", False),
    ("a safe request whose reply is unsafe (blocked after the model answered)", "Plan my lunch for tomorrow.", False),
    ("the same, streamed (held until judged: not one chunk leaves)", "Plan my lunch for tomorrow.", True),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_proxy_config(directory: Path, classifier_url: str) -> Path:
    (directory / "routes").mkdir()
    (directory / "policies").mkdir()
    (directory / "policies" / "demo-body-ideals.md").write_text(DEMO_POLICY)
    (directory / "routes" / "teen.yaml").write_text(ROUTE)
    proxy = {
        "server": {"client_keys_env": "GUARDRAIL_CLIENT_KEYS"},
        "classifiers": {"default": {"base_url": f"{classifier_url}/v1", "timeout_s": 5}},
        "upstreams": {"unused": {"provider": "openai", "model": "none", "api_base": "http://127.0.0.1:9/v1"}},
        "policies": {"dirs": ["policies"]},
        "audit": {"store": "jsonl", "path": str(directory / "audit.jsonl"), "durability": "sync"},
    }
    path = directory / "proxy.yaml"
    path.write_text(json.dumps(proxy, indent=2))  # JSON is valid YAML
    return path


def start_litellm(binary: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [binary, "--config", str(HERE / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    print("$ " + " ".join(command))
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"litellm exited with {process.returncode}; its output:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"litellm did not become ready; its output:\n{log.read_text()[-3000:]}")


def show(label: str, prompt: str, stream: bool, client: openai.OpenAI) -> None:
    print(f"\n--- {label} ---")
    print(f"user: {prompt!r}" + (" (stream=True)" if stream else ""))
    messages: list[Any] = [{"role": "user", "content": prompt}]
    chunks: list[str] = []
    try:
        if stream:
            for chunk in client.chat.completions.create(model="teen-chat", messages=messages, stream=True):
                chunks += [c.delta.content for c in chunk.choices if c.delta.content]
            print(f"-> 200, streamed: {''.join(chunks)!r}")
            return
        reply = client.chat.completions.create(model="teen-chat", messages=messages)
        print(f"-> 200: {reply.choices[0].message.content!r}")
    except openai.APIStatusError as exc:
        error = exc.body if isinstance(exc.body, dict) else {}
        print(f"-> HTTP {exc.status_code} openai.{type(exc).__name__}")
        print(f"   message: {error.get('message', exc.message)!r}")
        if stream:
            print(f"   chunks received before the error: {chunks}")


def show_audit(path: Path) -> None:
    print(f"\nguardrail-proxy's audit log ({path.name}): one record per guardrail call LiteLLM made")
    for line in path.read_text().splitlines():
        record = json.loads(line)
        checks = [f"{c['policy']}={c['label']}" for phase in record["phases"] for c in phase["checks"]]
        phases = ",".join(phase["phase"] for phase in record["phases"])
        print(f"   route={record['route']} phase={phases} decision={record['decision']} checks={checks}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--litellm", default=os.environ.get("LITELLM_BIN") or shutil.which("litellm") or "litellm",
                        help="LiteLLM's CLI (default: $LITELLM_BIN, else litellm on PATH)")
    args = parser.parse_args()
    key, _ = new_key()  # LiteLLM's key for guardrail-proxy
    master_key = "sk-" + secrets.token_hex(32)  # the SDK's key for LiteLLM (it refuses to start without one)
    classifier = SafeguardBehaviour(rules=[Rule("skip meals", 2), Rule("crash diet", 1)])
    model = UpstreamBehaviour(replies={"lunch": "Just skip meals this week, nobody will notice."})
    with tempfile.TemporaryDirectory(prefix="litellm-guardrail-") as tmp, \
            ServerThread(build_safeguard_app(classifier)) as classifier_server, \
            ServerThread(build_upstream_app(model)) as model_server:
        config = load_config(write_proxy_config(Path(tmp), classifier_server.url))
        settings = Settings(MappingProxyType({"GUARDRAIL_CLIENT_KEYS": key}))
        with ServerThread(create_app(config, settings)) as guardrail:
            print(f"stand-in classifier {classifier_server.url}, stand-in model {model_server.url}, "
                  f"guardrail-proxy {guardrail.url}")
            port = free_port()
            litellm = start_litellm(args.litellm, port, {
                "STANDIN_CHAT_BASE": f"{model_server.url}/v1",
                "GUARDRAIL_PROXY_URL": guardrail.url,
                "GUARDRAIL_PROXY_AUTHORIZATION": f"Bearer {key}",
                "LITELLM_MASTER_KEY": master_key,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
            }, Path(tmp) / "litellm.log")
            try:
                print(f"LiteLLM proxy on http://127.0.0.1:{port}")
                print(f'\nclient = openai.OpenAI(base_url="http://127.0.0.1:{port}", api_key=LITELLM_MASTER_KEY)')
                client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}", api_key=master_key, max_retries=0)
                for label, prompt, stream in CALLS:
                    show(label, prompt, stream, client)
                show_audit(Path(tmp) / "audit.jsonl")
                print(f"\nthe stand-in model was called {len(model.requests)} times "
                      f"(never for the blocked prompt); the classifier {len(classifier.requests)} times")
            finally:
                litellm.terminate()
                litellm.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
