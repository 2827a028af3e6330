"""LiteLLM's generic guardrail API (`/beta/litellm_basic_guardrail_api`): parsing and answering as pure functions,
then LiteLLM's own client code (the installed litellm) talking to a real proxy in front of the stand-ins.

The end-to-end tests build nothing by hand: LiteLLM's chat handler extracts the texts from a chat request or a
model response, its GenericGuardrailAPI posts them, reads our answer and writes it back (or raises). A change
in LiteLLM's contract breaks these tests, not a deployment.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from conftest import free_port, user

from guardrail_proxy.check_endpoint import check_subjects
from guardrail_proxy.config import Action, PolicyRule, RouteConfig
from guardrail_proxy.decisions import OUTSIDE, CheckFailure, Decision, Outcome, Triggered, Verdict
from guardrail_proxy.errors import RequestError
from guardrail_proxy.litellm_guardrail import (
    METADATA,
    PATH,
    answer,
    litellm_subjects,
    parse_litellm,
)
from guardrail_proxy.settings import prepare_litellm_import
from guardrail_proxy.standins.safeguard import Rule

prepare_litellm_import()  # before litellm is imported: no model-price fetch over the network

import litellm  # noqa: E402
from litellm.exceptions import GuardrailRaisedException  # noqa: E402
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler  # noqa: E402
from litellm.llms.openai.chat.guardrail_translation.handler import OpenAIChatCompletionsHandler  # noqa: E402
from litellm.proxy.guardrails.guardrail_hooks.generic_guardrail_api import GenericGuardrailAPI  # noqa: E402

# pydantic warns, once per process, that litellm's own TypedDicts use ReadOnly items when it first builds their
# schemas (inside LiteLLM's request model). It is litellm's and pydantic's business, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning")

ROUTE = RouteConfig(name="teen", models=("teen-chat",), upstream="u", input={"scope": "all"},
                    policies=(PolicyRule(id="violence"),))
CALL = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "fight"}'}}
TOOL = {"type": "function", "function": {"name": "lookup", "description": "finds fights"}}


# --- parsing --------------------------------------------------------------------------------------------

def body(input_type: str = "request", **fields: Any) -> dict[str, Any]:
    return {"input_type": input_type, "request_data": {"user_api_key_alias": "alice"}, "litellm_version": "1",
            "litellm_call_id": "call-1", "request_headers": {"user-agent": "x"}, **fields}


@pytest.mark.parametrize(("fields", "phase", "messages", "texts", "outside"), [
    # a request's messages are judged as messages; its texts and tool calls are read out of them
    ({"texts": ["hi"], "structured_messages": user("hi")}, "input", 1, None, ()),
    ({"texts": ["hi"], "structured_messages": [*user("hi"), {"role": "assistant", "tool_calls": [CALL]}],
      "tool_calls": [CALL]}, "input", 2, None, ()),
    # ... but what is not in them is judged apart, as text outside any message
    ({"texts": ["hi", "stray"], "structured_messages": user("hi")}, "input", 1, None, ("stray",)),
    ({"texts": ["hi"], "structured_messages": user("hi"), "tool_calls": [CALL]}, "input", 1, None,
     ('[tool call lookup] {"q": "fight"}',)),
    ({"texts": ["hi"], "structured_messages": user("hi"), "tools": [TOOL]}, "input", 1, None,
     ("function\nlookup\nfinds fights",)),
    ({"texts": ["hi"], "structured_messages": user("hi"), "novel": {"k": "later"}}, "input", 1, None,
     ("novel\nk\nlater",)),
    # without messages, each text is judged on its own
    ({"texts": ["a", "b"]}, "input", 0, ("a", "b"), ()),
    ({"texts": ["a"], "tool_calls": [CALL]}, "input", 0, ("a",), ('[tool call lookup] {"q": "fight"}',)),
    # a response: each text is a reply; tool calls outside
    ({"texts": ["reply"], "tool_calls": [CALL]}, "output", 0, ("reply",), ('[tool call lookup] {"q": "fight"}',)),
    ({"texts": []}, "output", 0, (), ()),
])
def test_parse(fields, phase, messages, texts, outside):
    request = parse_litellm(body("response" if phase == "output" else "request", **fields), None)
    assert (request.phase, len(request.messages), request.texts, request.outside) == (phase, messages, texts, outside)


def test_litellm_bookkeeping_is_never_judged():
    request = parse_litellm(body(texts=["hi"], model="m", additional_provider_specific_params={"route": "teen"}),
                            None)
    assert request.outside == ()
    assert {"input_type", "litellm_call_id", "litellm_trace_id", "request_data", "request_headers",
            "litellm_version", "additional_provider_specific_params", "model"} == METADATA  # reviewed: no model text


@pytest.mark.parametrize(("params", "header", "model", "route"), [
    ({"route": "teen"}, "other", "m", "teen"),
    ({}, "other", "m", "other"),
    ({"threshold": 1}, None, "m", None),
])
def test_route_comes_from_params_then_header(params, header, model, route):
    request = parse_litellm(body(texts=["hi"], additional_provider_specific_params=params, model=model), header)
    assert (request.route, request.model) == (route, model)


@pytest.mark.parametrize(("fields", "media"), [
    ({"texts": ["look"], "images": ["https://i.test/a.png"]}, ("image_url",)),
    ({"texts": ["look"], "structured_messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "input_audio", "input_audio": {"data": "QUJDRA==", "format": "wav"}}]}]}, ("input_audio",)),
    ({"texts": ["look"]}, ()),
])
def test_media_is_noticed(fields, media):
    assert parse_litellm(body(**fields), None).media == media


@pytest.mark.parametrize(("fields", "param"), [
    ({"input_type": "later"}, "input_type"),
    ({"input_type": ["request"]}, "input_type"),
    ({"texts": "hi"}, "texts"),
    ({"texts": [1]}, "texts"),
    ({"structured_messages": [{"role": "wizard", "content": "x"}]}, "structured_messages"),
    ({"structured_messages": ["hi"]}, "structured_messages"),
    ({"tool_calls": {"id": "c"}}, "tool_calls"),
    ({"additional_provider_specific_params": ["teen"]}, "additional_provider_specific_params"),
    ({"additional_provider_specific_params": {"route": 3}}, "additional_provider_specific_params.route"),
    ({"model": 3}, "model"),
])
def test_bad_bodies(fields, param):
    with pytest.raises(RequestError) as caught:
        parse_litellm({**body(texts=["hi"]), **fields}, None)
    assert caught.value.param == param


def test_outside_text_is_judged_apart_and_cannot_be_rewritten():
    request = parse_litellm(body(texts=["hi", "stray"], structured_messages=user("hi"), tools=[TOOL]), None)
    subjects = litellm_subjects(request, ROUTE)
    assert subjects[:1] == check_subjects(request, ROUTE)  # the check endpoint's subjects, then the rest
    assert [(s.target.text, s.index) for s in subjects[1:]] == [
        ("stray", OUTSIDE), ("function\nlookup\nfinds fights", OUTSIDE)]


# --- answering ------------------------------------------------------------------------------------------

def verdict(subject: int, label: str = "TV2", phase: str = "input") -> Verdict:
    return Verdict("violence", "d" * 64, phase, True, 2, label, reasoning="it describes a fight",
                   subject=subject)


def decision(outcome: Outcome, action: Action | None = None, subject: int = 0, phase: str = "input") -> Decision:
    found = verdict(subject, phase=phase)
    triggered = (Triggered(found, action, "Not here.", "Let's talk about something else."),) if action else ()
    return Decision(phase, outcome, (found,), triggered)


ROWS = [{"role": "system", "content": "be kind"}, *user("tell me about the fight"), *user("and then?")]


@pytest.mark.parametrize(("fields", "made", "route", "expected"), [
    ({"texts": ["hi"]}, decision(Outcome.ALLOW), ROUTE, {"action": "NONE"}),
    ({"texts": ["hi"]}, decision(Outcome.ANNOTATE, Action.ANNOTATE), ROUTE, {"action": "NONE"}),
    ({"texts": ["hi"]}, decision(Outcome.LOG, Action.LOG), ROUTE, {"action": "NONE"}),
    ({"texts": ["hi"]}, decision(Outcome.BLOCK, Action.BLOCK), ROUTE,
     {"action": "BLOCKED", "blocked_reason": "Not here. [blocked by policy 'violence' (TV2) on input; request r1]"}),
    ({"texts": ["hi"]}, decision(Outcome.BLOCK, Action.BLOCK), ROUTE.model_copy(update={"reveal_reasoning": True}),
     {"action": "BLOCKED", "blocked_reason": "Not here. [blocked by policy 'violence' (TV2) on input; request r1] "
                                             "Reasoning: it describes a fight"}),
    # a rewrite of text outside any message cannot be written back: it blocks
    ({"texts": ["hi"]}, decision(Outcome.REWRITE, Action.REWRITE, OUTSIDE), ROUTE,
     {"action": "BLOCKED", "blocked_reason": "Not here. [blocked by policy 'violence' (TV2) on input; request r1]"}),
    ({"texts": ["ok", "the fight"]}, decision(Outcome.REWRITE, Action.REWRITE, 1), ROUTE,
     {"action": "GUARDRAIL_INTERVENED", "texts": ["ok", "Let's talk about something else."]}),
    ({"input_type": "response", "texts": ["the fight"]}, decision(Outcome.REWRITE, Action.REWRITE, 0, "output"), ROUTE,
     {"action": "GUARDRAIL_INTERVENED", "texts": ["Let's talk about something else."]}),
    ({"texts": ["be kind", "tell me about the fight", "and then?"], "structured_messages": ROWS},
     decision(Outcome.REWRITE, Action.REWRITE, 1), ROUTE,
     {"action": "GUARDRAIL_INTERVENED", "structured_messages": [
         ROWS[0], {"role": "user", "content": "Let's talk about something else."}, ROWS[2]]}),
    ({"texts": ["be kind", "tell me about the fight", "and then?"], "structured_messages": ROWS},
     decision(Outcome.REWRITE, Action.REWRITE, 1), ROUTE.model_copy(update={"rewrite_input": "drop"}),
     {"action": "GUARDRAIL_INTERVENED", "structured_messages": [ROWS[0], ROWS[2]]}),
])
def test_answer(fields, made, route, expected):
    request = parse_litellm(body(**{"input_type": "request", **fields}), None)
    answered = answer(request, route, made, "r1")
    assert {k: v for k, v in answered.items() if k != "guardrail"} == expected
    assert answered["guardrail"]["decision"] == made.outcome.value
    assert ("reasoning" in answered["guardrail"]["checks"][0]) is route.reveal_reasoning


def test_a_check_that_could_not_run_under_fail_closed_is_blocked_with_a_fixed_text():
    failure = CheckFailure("violence", "d", "input", "transport", "connection refused: 10.0.0.3:8000")
    made = Decision("input", Outcome.UNAVAILABLE, (failure,), (), (failure,))
    answered = answer(parse_litellm(body(texts=["hi"]), None), ROUTE, made, "r1")
    assert answered["action"] == "BLOCKED" and "violence (transport)" in answered["blocked_reason"]
    assert "10.0.0.3" not in answered["blocked_reason"]  # what the classifier said stays in the log


# --- end to end: LiteLLM's own client against the proxy -------------------------------------------------

PROXY_ROUTE = {"input": {"scope": "all", "speculative": False},
               "policies": [{"id": "violence", "levels": {1: "annotate", 2: "block", 3: "rewrite"}}]}


@pytest.fixture
def proxy(make_proxy):
    proxy = make_proxy(PROXY_ROUTE, extra_routes={"other": {"models": ["other-model"], "upstream": "standin",
                                                            "policies": [{"id": "spam"}]}})
    proxy.classifier.rules.extend([Rule("knife fight", 2), Rule("scuffle", 1), Rule("gore", 3)])
    return proxy


def guardrail(proxy, **config: Any) -> GenericGuardrailAPI:
    """LiteLLM's guardrail as its proxy builds it from config.yaml (guardrail_hooks/generic_guardrail_api/__init__.py);
    a fresh HTTP handler per test, since each test runs its own event loop."""
    config = {"additional_provider_specific_params": {"route": "main"}, **config}
    return GenericGuardrailAPI(api_base=proxy.url, guardrail_name="guardrail-proxy", event_hook="pre_call",
                               default_on=True, async_handler=AsyncHTTPHandler(timeout=20), **config)


async def check_request(proxy, messages: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    """LiteLLM's pre_call path for a chat request: the handler extracts, the guardrail posts and writes back."""
    data = {"model": "test-model", "messages": copy.deepcopy(messages)}
    checker = guardrail(proxy, **config)
    try:
        await OpenAIChatCompletionsHandler().process_input_messages(data, checker)
    finally:
        await checker.async_handler.close()
    return data


async def check_response(proxy, content: str, **config: Any) -> Any:
    """LiteLLM's post_call path for a model response."""
    response = litellm.ModelResponse(model="stand-in", choices=[
        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}])
    checker = guardrail(proxy, **config)
    try:
        return await OpenAIChatCompletionsHandler().process_output_response(response, checker,
                                                                            request_data={"metadata": {}})
    finally:
        await checker.async_handler.close()


async def test_a_safe_request_passes_unchanged(proxy):
    messages = [{"role": "system", "content": "be kind"}, *user("a scuffle at recess")]  # annotate: passes
    assert (await check_request(proxy, messages))["messages"] == messages
    [record] = proxy.audit()
    assert record["route"] == "main" and record["decision"] == "annotate" and proxy.upstream.requests == []


async def test_an_unsafe_request_is_blocked_with_the_policy_named(proxy):
    with pytest.raises(GuardrailRaisedException) as caught:
        await check_request(proxy, user("describe the knife fight"))
    assert "Test violence policy" not in str(caught.value)  # no policy text, no reasoning
    assert "blocked by policy 'violence' (TV2) on input" in str(caught.value)
    assert proxy.audit()[0]["decision"] == "block"


async def test_a_rewrite_reaches_the_model_as_the_safe_text(proxy):
    data = await check_request(proxy, [{"role": "system", "content": "be kind"}, *user("gore please"),
                                       {"role": "assistant", "content": "no"}, *user("why?")])
    assert [m["content"] for m in data["messages"]] == ["be kind", "Let's talk about something else.", "no", "why?"]


async def test_a_forged_system_message_is_judged_when_litellm_sends_it(proxy):
    with pytest.raises(GuardrailRaisedException):
        await check_request(proxy, [{"role": "system", "content": "knife fight rules"}, *user("hi")])


async def test_a_response_is_judged_and_rewritten(proxy):
    assert (await check_response(proxy, "a calm day")).choices[0].message.content == "a calm day"
    rewritten = await check_response(proxy, "so much gore")
    assert rewritten.choices[0].message.content == "Let's talk about something else."
    with pytest.raises(GuardrailRaisedException):
        await check_response(proxy, "the knife fight, blow by blow")
    assert [r["phases"][0]["phase"] for r in proxy.audit()] == ["output"] * 3


async def test_forward_messages_as_sent_lets_every_key_be_read(proxy):
    messages = [{"role": "user", "name": "knife fight", "content": "hi"}]
    # LiteLLM drops keys its chat types do not declare (a user message's name) unless told to forward them.
    assert (await check_request(proxy, messages))["messages"] == messages
    with pytest.raises(GuardrailRaisedException):
        await check_request(proxy, messages, forward_messages_as_sent=True)


async def test_an_image_is_blocked_unread(proxy):
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                             {"type": "image_url", "image_url": {"url": "https://i.test/a.png"}}]}]
    with pytest.raises(GuardrailRaisedException) as caught:
        await check_request(proxy, messages)
    assert "cannot check content parts of type image_url" in str(caught.value)
    assert proxy.classifier.requests == [] and "unsupported_content" in proxy.audit()[0]["error"]


@pytest.mark.parametrize(("config", "route"), [
    ({"additional_provider_specific_params": {"route": "other"}}, "other"),
    ({"additional_provider_specific_params": {}, "headers": {"x-guardrail-route": "other"}}, "other"),
    ({"additional_provider_specific_params": {}}, "main"),  # by the model the client asked for
])
async def test_route_selection(proxy, config, route):
    await check_request(proxy, user("hi"), **config)
    assert proxy.audit()[0]["route"] == route


async def test_an_outage_blocks_under_fail_closed(make_proxy):
    proxy = make_proxy(PROXY_ROUTE, classifier_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(GuardrailRaisedException) as caught:
        await check_request(proxy, user("hi"))
    assert "could not check" in str(caught.value) and "violence" in str(caught.value)


async def test_bad_requests_are_openai_errors_which_litellm_treats_as_a_fault(proxy):
    with pytest.raises(Exception, match="Generic Guardrail API failed") as caught:
        await check_request(proxy, user("hi"), additional_provider_specific_params={"route": "nope"})
    assert not isinstance(caught.value, GuardrailRaisedException)
    answer_ = httpx.post(f"{proxy.url}{PATH}", json={"input_type": "later"}, timeout=20)
    assert answer_.status_code == 400 and answer_.json()["error"]["param"] == "input_type"
    not_json = httpx.post(f"{proxy.url}{PATH}", content=b"{", timeout=20)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]


async def test_client_keys_apply(make_proxy):
    proxy = make_proxy(PROXY_ROUTE, server_cfg={"client_keys_env": "KEYS"}, env={"KEYS": "k1"})
    with pytest.raises(Exception, match="401"):
        await check_request(proxy, user("hi"))
    assert (await check_request(proxy, user("hi"), headers={"Authorization": "Bearer k1"}))["messages"] == user("hi")
