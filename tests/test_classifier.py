"""Both classifier transports against the stand-in safeguard server: request contract, parsing, faults."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from conftest import VIOLENCE_POLICY, free_port

from guardrail_proxy.classifier import SafeguardClient, http_kind
from guardrail_proxy.classifier_aiohttp import AiohttpSafeguardClient
from guardrail_proxy.config import ClassifierConfig
from guardrail_proxy.errors import ClassifierError
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.standins.safeguard import Rule

POLICY = parse_policy(VIOLENCE_POLICY, "v.md")
TRANSPORTS = {"openai": SafeguardClient, "aiohttp": AiohttpSafeguardClient}


@pytest.fixture(params=sorted(TRANSPORTS))
def make_client(request, safeguard):
    """Clients are built inside each async test (the aiohttp session needs its loop) and closed there."""
    _, server = safeguard

    def make(base_url: str | None = None, api_key: str | None = None, **cfg):
        config = ClassifierConfig(base_url=base_url or f"{server.url}/v1", transport=request.param, **cfg)
        return TRANSPORTS[request.param](config, api_key)

    return make


async def test_request_contract_and_verdict(make_client, safeguard):
    behaviour, _ = safeguard
    behaviour.rules.append(Rule("knife", 3))
    client = make_client(api_key="sk-test", reasoning_effort="high")
    result = await client.classify(POLICY, "a knife")
    await client.aclose()
    assert (result.answer.violation, result.answer.label, result.raw) == (True, "TV3", "TV3")
    assert result.reasoning.startswith("Stand-in") and result.prompt_tokens == 100
    sent = behaviour.requests[0]
    assert sent["messages"] == [{"role": "system", "content": POLICY.text}, {"role": "user", "content": "a knife"}]
    assert sent["reasoning_effort"] == "high" and sent["model"] == "openai/gpt-oss-safeguard-20b"
    assert "max_tokens" not in sent


async def test_the_prompt_prefix_is_byte_identical_whatever_the_content(make_client, safeguard):
    """vLLM's prefix cache serves a policy's prompt only if every byte before the content is the same on every
    call: same model, same effort, the policy as the whole first message, the content last."""
    behaviour, _ = safeguard
    client = make_client()
    for content in ("hi", "a much longer text\nwith lines", "Conversation excerpt.\n[classify this: user]\nx"):
        await client.classify(POLICY, content)
    await client.aclose()
    heads = {json.dumps({**body, "messages": body["messages"][:-1]}, sort_keys=True) for body in behaviour.requests}
    assert len(heads) == 1
    assert [body["messages"][-1]["role"] for body in behaviour.requests] == ["user"] * 3


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_reasoning_from_either_field(make_client, safeguard, field):
    behaviour, _ = safeguard
    behaviour.reasoning_field = field
    client = make_client()
    assert (await client.classify(POLICY, "hi")).reasoning
    await client.aclose()


async def test_retries_transient_errors_then_succeeds(make_client, safeguard):
    behaviour, _ = safeguard
    behaviour.fail_first = 2
    client = make_client(retries=2)
    assert not (await client.classify(POLICY, "hi")).answer.violation
    await client.aclose()
    assert len(behaviour.requests) == 3


async def test_gives_up_after_the_retries(make_client, safeguard):
    behaviour, _ = safeguard
    behaviour.fail_first = 5
    client = make_client(retries=1)
    with pytest.raises(ClassifierError) as info:
        await client.classify(POLICY, "hi")
    await client.aclose()
    assert info.value.kind == "http" and "503" in info.value.message and len(behaviour.requests) == 2


@pytest.mark.parametrize(("setup", "kind"), [
    ({"mode": "garbage"}, "unparseable"),
    ({"mode": "empty"}, "unparseable"),
    ({"raw_body": "not json"}, "malformed"),
    ({"raw_body": json.dumps({"choices": []})}, "malformed"),
    ({"raw_body": json.dumps({"choices": [{"message": {"content": ["x"]}}]})}, "malformed"),
    ({"delay_s": 1.0}, "timeout"),
])
async def test_faults_are_classifier_errors(make_client, safeguard, setup, kind):
    behaviour, _ = safeguard
    for key, value in setup.items():
        setattr(behaviour, key, value)
    client = make_client(timeout_s=0.3, retries=0)
    with pytest.raises(ClassifierError) as info:
        await client.classify(POLICY, "hi")
    await client.aclose()
    assert info.value.kind == kind


async def test_connection_refused_is_transport(make_client):
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}/v1", retries=0)
    with pytest.raises(ClassifierError) as info:
        await client.classify(POLICY, "hi")
    assert info.value.kind == "transport" and info.value.message.startswith("cannot connect to the classifier")
    assert (await client.ping() or "").startswith("cannot connect")
    await client.aclose()


async def test_a_slow_classifier_is_a_timeout_not_a_refusal(make_client, safeguard):
    behaviour, _ = safeguard
    behaviour.delay_s = 1.0
    client = make_client(timeout_s=5, attempt_timeout_s=0.3, retries=0)
    with pytest.raises(ClassifierError) as info:
        await client.classify(POLICY, "hi")
    await client.aclose()
    assert info.value.kind == "timeout" and "in time" in info.value.message


async def test_retries_against_a_dead_endpoint_are_quick(make_client):
    """A refused connection is retried with short back-off, not a second of jitter per attempt."""
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}/v1", retries=2)
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(ClassifierError):
            await client.classify(POLICY, "hi")
    await client.aclose()
    assert time.monotonic() - started < 2.0


def test_fault_mapping_reads_public_exception_types_only():
    """Telling a refusal from a timeout must not depend on what an SDK release chains under its errors."""
    for path in (Path(__file__).parents[1] / "guardrail_proxy").rglob("*.py"):
        text = path.read_text()
        assert "__cause__" not in text and "__context__" not in text, f"{path} reads an exception chain"


async def test_ping(make_client):
    client = make_client()
    assert await client.ping() is None
    await client.aclose()


async def test_retries_never_outlive_the_total_deadline(make_client, safeguard):
    behaviour, _ = safeguard
    behaviour.delay_s = 1.0
    client = make_client(timeout_s=0.5, retries=3)
    started = time.monotonic()
    with pytest.raises(ClassifierError) as info:
        await client.classify(POLICY, "hi")
    elapsed = time.monotonic() - started
    await client.aclose()
    assert info.value.kind == "timeout" and len(behaviour.requests) == 1
    assert elapsed < 0.9, f"a 0.5 s deadline took {elapsed:.2f} s"


async def test_ping_does_not_queue_behind_busy_calls(make_client, safeguard):
    behaviour, _ = safeguard
    behaviour.delay_s = 2.0
    client = make_client(max_concurrency=1, retries=0)
    busy = asyncio.create_task(client.classify(POLICY, "slow"))
    await asyncio.sleep(0.2)
    assert await asyncio.wait_for(client.ping(), 1.5) is None
    await busy
    await client.aclose()


@pytest.mark.parametrize(("status", "kind"), [(400, "rejected"), (413, "rejected"), (422, "rejected"),
                                              (429, "overload"), (401, "http"), (404, "http"), (500, "http"),
                                              (503, "http")])
def test_http_kind(status, kind):
    assert http_kind(status) == kind


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"error": {"message": "bad key", "type": "auth"}}', "bad key"),           # OpenAI
    (b'{"object": "error", "message": "maximum context length", "code": 400}', "maximum context length"),  # vLLM
    (b'{"error": "overloaded"}', "overloaded"),
    (b'{"detail": "x"}', '{"detail": "x"}'),
    (b"<html>502</html>", "<html>502</html>"),
])
def test_error_messages_of_every_shape_are_read(body, expected):
    from guardrail_proxy.classifier_aiohttp import error_message
    assert error_message(body) == expected
