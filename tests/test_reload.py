"""Config reload through the admin endpoint: a valid edit swaps in whole, an invalid or restart-only edit
keeps the old config serving and says why (the answer, the log, a metric, /readyz), and a request in flight
finishes on the config it started with."""

from __future__ import annotations

import textwrap
import threading
import time

import httpx
import pytest
import yaml
from conftest import VIOLENCE_POLICY, metric, user

OPS = {"authorization": "Bearer ops-secret"}


@pytest.fixture
def proxy(make_proxy):
    return make_proxy(server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": "ops-secret"})


def route_file(proxy):
    return proxy.audit_path.parent / "routes" / "main.yaml"


def edit_route(proxy, **changes):
    path = route_file(proxy)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}))


def reload(proxy) -> httpx.Response:
    return httpx.post(f"{proxy.url}/admin/reload", headers=OPS, timeout=10)


def policies_sent(proxy) -> list[str]:
    return ["violence" if "violence" in r["messages"][0]["content"] else "selfharm" for r in proxy.classifier.requests]


def test_a_valid_edit_is_swapped_in(proxy):
    proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    edit_route(proxy, policies=[{"id": "selfharm"}])
    answer = reload(proxy)
    assert answer.status_code == 200, answer.text
    assert answer.json()["reloaded"] is True and answer.json()["generation"] == 1
    assert "route main edited" in answer.json()["changed"]
    proxy.classifier.requests.clear()
    proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert set(policies_sent(proxy)) == {"selfharm"}
    metrics = httpx.get(f"{proxy.url}/metrics", headers=OPS).text
    assert metric(metrics, "guardrail_config_reloads_total", result="ok") == 1
    assert metric(metrics, "guardrail_config_generation") == 1
    config = httpx.get(f"{proxy.url}/admin/config", headers=OPS).json()
    assert config["routes"]["main"]["policies"] == ["selfharm"] and config["generation"] == 1


@pytest.mark.parametrize(("edit", "says"), [
    ("models: [unclosed", "invalid YAML"),
    ("models: [test-model]\nupstream: standin\npolicies: [{id: no-such-policy}]", "unknown policy 'no-such-policy'"),
    ("models: [test-model]\nupstream: standin\npolicies: [{id: violence}]\nspeling: 1", "unknown field"),
])
def test_an_invalid_edit_keeps_the_old_config_serving(proxy, caplog, edit, says):
    route_file(proxy).write_text(edit)
    answer = reload(proxy)
    assert answer.status_code == 409
    body = answer.json()
    assert body["reloaded"] is False and body["generation"] == 0 and says in body["error"]
    assert "main.yaml" in body["error"]
    assert any("config reload failed" in r.getMessage() and says in r.getMessage() for r in caplog.records)
    proxy.client.chat.completions.create(model="test-model", messages=user("hello"))  # still serving, as before
    assert set(policies_sent(proxy)) == {"violence"}
    metrics = httpx.get(f"{proxy.url}/metrics", headers=OPS).text
    assert metric(metrics, "guardrail_config_reloads_total", result="error") == 1
    assert metric(metrics, "guardrail_config_last_reload_ok") == 0
    ready = httpx.get(f"{proxy.url}/readyz", headers=OPS).json()
    assert ready["generation"] == 0 and says in ready["last_reload"]["error"]


def test_a_restart_only_edit_is_refused_whole(proxy):
    path = proxy.audit_path.parent / "proxy.yaml"
    config = yaml.safe_load(path.read_text())
    config["audit"]["path"] = str(proxy.audit_path.parent / "elsewhere.jsonl")
    config["server"]["max_body_bytes"] = 10  # would apply, but not without the rest
    path.write_text(yaml.safe_dump(config))
    answer = reload(proxy)
    assert answer.status_code == 409
    assert "audit: changed, and takes effect only after a restart" in answer.json()["error"]
    proxy.client.chat.completions.create(model="test-model", messages=user("hello"))  # the old body limit holds


def test_a_request_in_flight_finishes_on_the_config_it_started_with(proxy):
    proxy.upstream.delay_s = 1.0  # the model answers after the swap
    done: dict[str, object] = {}

    def ask() -> None:
        stream = proxy.client.chat.completions.create(model="test-model", messages=user("hello"), stream=True)
        done["text"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 5
    while not proxy.upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    edit_route(proxy, policies=[{"id": "selfharm"}])
    assert reload(proxy).status_code == 200
    proxy.client.chat.completions.create(model="test-model", messages=user("a new request"))
    thread.join(10)
    assert done["text"] == "Stand-in reply to: hello"
    first, second = sorted(proxy.wait_audit(2), key=lambda r: r["ts"])
    assert [c["policy"] for p in first["phases"] for c in p["checks"]] == ["violence", "violence"]  # input, output
    assert {c["policy"] for p in second["phases"] for c in p["checks"]} == {"selfharm"}
    runtime = proxy.server.server.config.app.state.runtime
    old = runtime.retired[-1]
    deadline = time.monotonic() + 5
    while not old.closed.is_set() and time.monotonic() < deadline:  # its last request ended: its clients close
        time.sleep(0.01)
    assert old.generation == 0 and old.users == 0 and old.closed.is_set()
    assert runtime.served.generation == 1 and not runtime.served.closed.is_set()


def test_admin_endpoints_need_the_ops_key(proxy, make_proxy):
    assert httpx.post(f"{proxy.url}/admin/reload").status_code == 401
    assert httpx.post(f"{proxy.url}/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{proxy.url}/metrics").status_code == 401
    assert httpx.get(f"{proxy.url}/readyz").status_code in (401,)
    assert httpx.get(f"{proxy.url}/healthz").status_code == 200  # liveness says nothing about the config
    open_proxy = make_proxy()
    refused = httpx.post(f"{open_proxy.url}/admin/reload")
    assert refused.status_code == 403 and "ops_key_env" in refused.json()["error"]["message"]


def test_a_reload_keeps_the_answers_of_an_unchanged_classifier(proxy):
    proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    asked = len(proxy.classifier.requests)
    assert reload(proxy).json()["changed"] == []  # nothing edited: a new generation all the same
    proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert len(proxy.classifier.requests) == asked  # answered from the kept cache
    path = proxy.audit_path.parent / "proxy.yaml"
    config = yaml.safe_load(path.read_text())
    config["classifiers"]["default"]["reasoning_effort"] = "high"  # another way of reading: ask again
    path.write_text(yaml.safe_dump(config))
    assert reload(proxy).status_code == 200
    proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert len(proxy.classifier.requests) > asked
    assert proxy.classifier.requests[-1]["reasoning_effort"] == "high"


CANDIDATE_MARK = "Candidate wording: duels count as TV2."


def with_candidate(tmp_path) -> dict:
    """A shadow entry for the route, its candidate file written next to the policies."""
    (tmp_path / "candidates").mkdir(exist_ok=True)
    (tmp_path / "candidates" / "violence.md").write_text(textwrap.dedent(VIOLENCE_POLICY) + CANDIDATE_MARK + "\n")
    return {"shadow": [{"policy": "violence", "candidate": "candidates/violence.md", "sample": 1.0}]}


def test_a_reload_that_only_edits_a_candidate_says_so(make_proxy, tmp_path):
    proxy = make_proxy(with_candidate(tmp_path), server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": "ops-secret"})
    candidate = tmp_path / "candidates" / "violence.md"
    candidate.write_text(candidate.read_text() + "One more candidate line.\n")
    answer = reload(proxy).json()
    assert answer["reloaded"] is True and answer["changed"] == ["shadow candidate main/violence edited"]


def test_a_reload_answers_at_once_while_a_slow_candidate_call_runs(make_proxy, tmp_path):
    # The classifier's deadline is 30 s, and so is the replaced generation's grace for its candidate calls.
    proxy = make_proxy({**with_candidate(tmp_path), "output": {"enabled": False}}, classifier={"timeout_s": 30},
                       extra_routes={"plain": {"models": ["plain-model"], "upstream": "standin",
                                               "policies": [{"id": "violence"}], "output": {"enabled": False}}},
                       server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": "ops-secret"})
    # The enforced answer comes from the verdict cache (warmed by a route without a shadow), so only the
    # candidate's call meets the slow classifier.
    proxy.client.chat.completions.create(model="plain-model", messages=user("a slow question"))
    proxy.classifier.delay_s = 30
    asked = len(proxy.classifier.requests)
    reply = proxy.client.chat.completions.create(model="test-model", messages=user("a slow question"))
    assert reply.choices[0].message.content == "Stand-in reply to: a slow question"
    deadline = time.monotonic() + 5
    while len(proxy.classifier.requests) == asked and time.monotonic() < deadline:
        time.sleep(0.01)
    [call] = proxy.classifier.requests[asked:]
    assert CANDIDATE_MARK in call["messages"][0]["content"]  # the candidate's call is at the classifier
    answer = httpx.post(f"{proxy.url}/admin/reload", headers=OPS, timeout=10)  # not 30 s
    assert answer.status_code == 200 and answer.json()["reloaded"] is True
    assert proxy.client.chat.completions.create(model="plain-model", messages=user("a slow question")).choices
    runtime = proxy.server.server.config.app.state.runtime
    [old] = runtime.retired
    assert old.closing is not None and not old.closing.done()  # still giving its candidate call time, apart
    # At shutdown (the fixture stops the proxy), the call gets a short grace and the close task is awaited: the
    # fixture checks that no task is left behind.
