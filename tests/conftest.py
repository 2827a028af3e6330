"""Shared fixtures: real stand-in servers on 127.0.0.1 and a real proxy in front of them.

Nothing of our own code is mocked: the proxy runs under uvicorn, the tests talk to it with the official
openai SDK, and the stand-ins speak the vLLM/OpenAI wire format over HTTP.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import openai
import pg_server
import pytest
import yaml
from console_seed import Seeded

from guardrail_proxy.app import create_app
from guardrail_proxy.loader import load_config
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import SafeguardBehaviour, build_safeguard_app
from guardrail_proxy.standins.server import ServerThread
from guardrail_proxy.standins.upstream import UpstreamBehaviour, build_upstream_app

VIOLENCE_POLICY = """---
id: violence
title: Test violence policy
format: label
label_prefix: TV
labels: {TV0: Allowed, TV1: Mild, TV2: Graphic, TV3: Extreme}
refusal: "That request is not allowed here."
safe_text: "Let's talk about something else."
---
# Test violence policy
Answer with exactly one code: TV0, TV1, TV2 or TV3.
"""

SELFHARM_POLICY = """---
id: selfharm
title: Test binary policy
format: binary
default_action: block
---
# Test binary policy
Answer 1 if the content encourages self-harm, else 0.
"""

JSON_POLICY = """---
id: spam
title: Test JSON policy
format: json
default_action: annotate
---
# Test JSON policy
Answer {"violation": 0 or 1, "policy_category": string or null, "rationale": string}.
"""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL server for the session; each test takes its own database (`postgres_dsn`)."""
    server = pg_server.start()
    if server is None:
        reason = "PostgreSQL server binaries not found (Debian package postgresql)"
        if os.environ.get(pg_server.REQUIRE) == "1":
            pytest.fail(f"{reason}, and {pg_server.REQUIRE}=1 requires them")
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: Any) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return str(postgres_server.dsn(name))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.sse")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def safeguard() -> Iterator[tuple[SafeguardBehaviour, ServerThread]]:
    behaviour = SafeguardBehaviour()
    with ServerThread(build_safeguard_app(behaviour)) as server:
        yield behaviour, server


@pytest.fixture
def upstream() -> Iterator[tuple[UpstreamBehaviour, ServerThread]]:
    behaviour = UpstreamBehaviour()
    with ServerThread(build_upstream_app(behaviour)) as server:
        yield behaviour, server


@dataclass
class Proxy:
    url: str
    client: openai.OpenAI
    audit_path: Path
    classifier: SafeguardBehaviour
    upstream: UpstreamBehaviour
    server: ServerThread

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def wait_audit(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """A stream's record is written when its generator closes, just after the client saw [DONE]."""
        deadline = time.monotonic() + timeout
        while len(records := self.audit()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return records


def write_config(tmp: Path, route: dict[str, Any], classifier_url: str, upstream_url: str,
                 classifier: dict[str, Any] | None = None, upstream: dict[str, Any] | None = None,
                 extra_routes: dict[str, dict[str, Any]] | None = None,
                 server_cfg: dict[str, Any] | None = None, audit: dict[str, Any] | None = None,
                 proxy_extra: dict[str, Any] | None = None) -> Path:
    policies = tmp / "policies"
    policies.mkdir(exist_ok=True)
    for name, text in [("violence", VIOLENCE_POLICY), ("selfharm", SELFHARM_POLICY), ("spam", JSON_POLICY)]:
        (policies / f"{name}.md").write_text(textwrap.dedent(text))
    routes = tmp / "routes"
    routes.mkdir(exist_ok=True)
    base_route = {"models": ["test-model"], "upstream": "standin", "policies": [{"id": "violence"}]}
    (routes / "main.yaml").write_text(yaml.safe_dump({**base_route, **route}))
    for name, extra in (extra_routes or {}).items():
        (routes / f"{name}.yaml").write_text(yaml.safe_dump(extra))
    proxy = {
        "server": {"max_body_bytes": 65536, **(server_cfg or {})},
        "classifiers": {"default": {"base_url": f"{classifier_url}/v1", "timeout_s": 2, "retries": 1,
                                    **(classifier or {})}},
        "upstreams": {"standin": upstream or {"provider": "openai", "model": "stand-in-chat",
                                              "api_base": f"{upstream_url}/v1"}},
        "policies": {"dirs": ["policies"]},
        "audit": audit or {"store": "jsonl", "path": str(tmp / "audit.jsonl"), "durability": "sync"},
        **(proxy_extra or {}),
    }
    path = tmp / "proxy.yaml"
    path.write_text(yaml.safe_dump(proxy))
    return path


@pytest.fixture
def make_proxy(tmp_path: Path, safeguard: tuple[SafeguardBehaviour, ServerThread],
               upstream: tuple[UpstreamBehaviour, ServerThread]) -> Iterator[Any]:
    """make_proxy(route_overrides, classifier=..., upstream=...) -> Proxy, running until the test ends."""
    started: list[ServerThread] = []
    sg_behaviour, sg_server = safeguard
    up_behaviour, up_server = upstream

    def make(route: dict[str, Any] | None = None, *, classifier_url: str | None = None,
             classifier: dict[str, Any] | None = None, upstream_cfg: dict[str, Any] | None = None,
             extra_routes: dict[str, dict[str, Any]] | None = None, server_cfg: dict[str, Any] | None = None,
             env: dict[str, str] | None = None, audit: dict[str, Any] | None = None,
             proxy_extra: dict[str, Any] | None = None, span_exporter: Any = None) -> Proxy:
        path = write_config(tmp_path, route or {}, classifier_url or sg_server.url, up_server.url,
                            classifier, upstream_cfg, extra_routes, server_cfg, audit, proxy_extra)
        app = create_app(load_config(path), Settings(MappingProxyType(env or {})), span_exporter)
        server = ServerThread(app).start()
        started.append(server)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=20)
        return Proxy(server.url, client, tmp_path / "audit.jsonl", sg_behaviour, up_behaviour, server)

    yield make
    for server in started:
        server.stop()
        assert not server.thread.is_alive(), "the proxy did not shut down"
        assert not server.leftover_tasks, f"tasks left running at shutdown: {server.leftover_tasks}"


def metric(text: str, sample: str, **labels: str) -> float:
    """The sum of a metric's samples named `sample` whose labels include `labels`, from /metrics as prometheus_client
    itself parses it (0 when there is none)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and labels.items() <= s.labels.items())


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(params=["sqlite", "postgres"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Seeded]:
    """An empty audit store of each kind, with the console tests' helpers for writing records, marks and shadow
    verdicts into it (console_seed.py)."""
    where = str(tmp_path / "audit.db") if request.param == "sqlite" else request.getfixturevalue("postgres_dsn")
    data = Seeded(request.param, where)
    yield data
    data.close()
