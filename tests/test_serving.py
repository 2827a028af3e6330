"""`guardrail-proxy serve` as a real process: SIGTERM drains (readiness 503 first, a stream in flight
completes, its audit record is kept, then the process exits 0), SIGHUP reloads, and the ops port keeps the
operator endpoints off the main port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port, write_config

OPS = {"authorization": "Bearer ops-secret"}
LONG_REPLY = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def served(tmp_path, safeguard, upstream):
    """serve(**server_cfg) -> (main URL, ops URL, process); the process is killed at the end if still running."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**server_cfg: object) -> tuple[str, str, subprocess.Popen[bytes]]:
        port, ops_port = free_port(), free_port()
        server = {"port": port, "ops_port": ops_port, "ops_key_env": "OPS_KEY", **server_cfg}
        path = write_config(tmp_path, {"output": {"window_chars": 20}}, safeguard[1].url, upstream[1].url,
                            server_cfg=server, audit={"store": "jsonl", "path": str(tmp_path / "audit.jsonl"),
                                                      "durability": "batch", "batch_ms": 2000})
        env = {**os.environ, "OPS_KEY": "ops-secret", "PYTHONPATH": str(Path(__file__).parents[1])}
        proc = subprocess.Popen([sys.executable, "-m", "guardrail_proxy", "serve", "--config", str(path)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)
        main, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{ops}/healthz").status_code == 200:
                    return main, ops, proc
            except httpx.TransportError:
                time.sleep(0.05)
        proc.kill()
        raise AssertionError(f"the proxy did not start: {proc.communicate()[0].decode()[-2000:]}")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def chat(url: str, text: str = "hello", stream: bool = False) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=20,
                      json={"model": "test-model", "messages": [{"role": "user", "content": text}], "stream": stream})


def test_sigterm_drains_a_stream_then_exits(served, upstream, tmp_path):
    upstream[0].replies = {"": LONG_REPLY}
    upstream[0].chunk_delay_s = 0.05  # about 2 s of streaming
    main, ops, proc = served(drain_s=1.0, shutdown_timeout_s=20)
    events: list[str] = []
    first = threading.Event()

    def stream() -> None:
        with httpx.stream("POST", f"{main}/v1/chat/completions", timeout=30,
                          json={"model": "test-model", "messages": [{"role": "user", "content": "hello"}],
                                "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    first.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert first.wait(10), "the stream did not start"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    ready = httpx.get(f"{ops}/readyz", headers=OPS)
    assert ready.status_code == 503 and "draining" in ready.json()["checks"]["shutdown"]
    assert chat(main).status_code == 200  # still served while load balancers catch up
    reader.join(30)
    assert events[-1] == "[DONE]", events[-3:]
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                   if json.loads(e).get("choices"))
    assert text == LONG_REPLY
    assert proc.wait(30) == 0
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    streamed = [r for r in records if r["stream"]]
    assert len(streamed) == 1 and streamed[0]["status"] == 200  # committed at exit, inside its batch window
    assert len(records) == 2
    with pytest.raises(httpx.TransportError):
        chat(main)


def test_sighup_reloads_and_a_bad_edit_keeps_serving(served, tmp_path):
    main, ops, proc = served()
    route = tmp_path / "routes" / "main.yaml"
    route.write_text(yaml.safe_dump({**yaml.safe_load(route.read_text()), "policies": [{"id": "selfharm"}]}))
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while httpx.get(f"{ops}/readyz", headers=OPS).json()["generation"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(f"{ops}/admin/config", headers=OPS).json()["routes"]["main"]["policies"] == ["selfharm"]
    route.write_text("models: [")
    proc.send_signal(signal.SIGHUP)
    while (httpx.get(f"{ops}/admin/config", headers=OPS).json()["last_reload"] or {}).get("reloaded") is not False \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    last = httpx.get(f"{ops}/admin/config", headers=OPS).json()["last_reload"]
    assert last["reloaded"] is False and "invalid YAML" in last["error"] and last["generation"] == 1
    assert chat(main).status_code == 200
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0].decode()
    assert "config reload failed; still serving generation 1" in output


def test_the_ops_port_serves_the_operator_endpoints_only(served):
    main, ops, proc = served(drain_s=0)
    assert chat(main).status_code == 200
    assert httpx.get(f"{main}/metrics").status_code == 404
    assert httpx.get(f"{main}/readyz").status_code == 404
    assert httpx.get(f"{main}/healthz").status_code == 200
    assert httpx.get(f"{ops}/metrics").status_code == 401  # the ops key, too
    metrics = httpx.get(f"{ops}/metrics", headers=OPS)
    assert metrics.status_code == 200 and "guardrail_requests_total" in metrics.text
    assert httpx.post(f"{ops}/v1/chat/completions", json={}).status_code == 404
    assert httpx.get(f"{ops}/readyz", headers=OPS).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_the_ops_port_must_differ_from_the_main_port():
    from guardrail_proxy.config import ServerConfig

    with pytest.raises(ValueError, match="ops_port must differ from port"):
        ServerConfig(port=8080, ops_port=8080)
    assert ServerConfig(port=0, ops_port=0).ops_port == 0  # both picked free by the OS


@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", None)])
def test_the_event_loop_is_uvloop_unless_asked_otherwise(choice, expected):
    from guardrail_proxy.serving import loop_factory
    factory = loop_factory(choice)
    if expected is None:
        assert factory is None
    else:
        loop = factory()
        try:
            assert type(loop).__module__.startswith(expected)
        finally:
            loop.close()
