"""The shipped teen route, end to end: all six policies on input and output, severity-aware actions."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import openai
import pytest
import yaml
from conftest import user

from guardrail_proxy.app import create_app
from guardrail_proxy.loader import load_config
from guardrail_proxy.policies import load_policy_file, policy_files_in
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.standins.server import ServerThread

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def teen(tmp_path, safeguard, upstream):
    """The shipped config/ with only the endpoints pointed at the stand-ins."""
    behaviour, sg_server = safeguard
    up_behaviour, up_server = upstream
    shutil.copytree(REPO / "config", tmp_path / "config")
    path = tmp_path / "config" / "proxy.yaml"
    proxy = yaml.safe_load(path.read_text())
    proxy["classifiers"]["default"]["base_url"] = f"{sg_server.url}/v1"
    proxy["upstreams"]["openai"] = {"provider": "openai", "model": "stand-in-chat", "api_base": f"{up_server.url}/v1"}
    proxy["policies"]["dirs"] = [str(REPO / "teen_safety_policies")]
    proxy["audit"]["path"] = str(tmp_path / "audit.db")  # the shipped default store, kept out of the repo
    path.write_text(yaml.safe_dump(proxy))
    with ServerThread(create_app(load_config(path), Settings())) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        yield client, behaviour, up_behaviour


def test_all_six_policies_check_input_and_output(teen):
    client, classifier, _ = teen
    completion = client.chat.completions.create(model="teen-chat", messages=user("help with my homework"))
    assert completion.choices[0].finish_reason == "stop"
    pack = [load_policy_file(p) for p in policy_files_in(REPO / "teen_safety_policies")]
    sent = Counter(r["messages"][0]["content"] for r in classifier.requests)
    assert sent == {policy.text: 2 for policy in pack}  # each policy once on input, once on output


def test_harmful_body_ideals_block_gets_the_supportive_refusal(teen):
    client, classifier, _ = teen
    classifier.rules.append(Rule("skip meals", 2, policy="HBI0"))
    completion = client.chat.completions.create(model="teen-chat",
                                                messages=user("how do I skip meals without anyone noticing"))
    assert completion.choices[0].finish_reason == "content_filter"
    assert "trusted adult" in (completion.choices[0].message.content or "")


def test_level_one_is_annotated_not_blocked(teen):
    client, classifier, _ = teen
    classifier.rules.append(Rule("zombie movie", 1, policy="GV0"))
    raw = client.chat.completions.with_raw_response.create(model="teen-chat",
                                                           messages=user("is that zombie movie scary?"))
    assert raw.headers["x-guardrail-decision"] == "annotate"
    assert raw.headers["x-guardrail-labels"] == "GV1"
