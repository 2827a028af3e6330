"""Client keys: required when configured, compared in constant time, never started open by mistake."""

from __future__ import annotations

from types import MappingProxyType

import openai
import pytest
from conftest import user, write_config

from guardrail_proxy.auth import check_client, load_client_keys
from guardrail_proxy.cli import main
from guardrail_proxy.config import ServerConfig
from guardrail_proxy.errors import ConfigError, Unauthorized
from guardrail_proxy.settings import Settings

KEYS = frozenset({"k-one", "k-two"})


@pytest.mark.parametrize("header", ["Bearer k-one", "bearer k-two", "Bearer  k-one "])
def test_accepted(header):
    check_client(header, KEYS)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer k-three", "Basic k-one", "k-one", "Bearer k-on"])
def test_rejected(header):
    with pytest.raises(Unauthorized):
        check_client(header, KEYS)


def test_no_keys_configured_means_no_auth():
    check_client(None, None)


def test_loading_keys():
    server = ServerConfig(client_keys_env="PROXY_KEYS")
    settings = Settings(MappingProxyType({"PROXY_KEYS": " a, b ,,"}))
    assert load_client_keys(server, settings, "p.yaml") == {"a", "b"}
    assert load_client_keys(ServerConfig(), settings, "p.yaml") is None
    with pytest.raises(ConfigError, match="PROXY_KEYS is not set"):
        load_client_keys(server, Settings(), "p.yaml")


def test_end_to_end(make_proxy):
    proxy = make_proxy(server_cfg={"client_keys_env": "PROXY_KEYS"}, env={"PROXY_KEYS": "secret-1"})
    with pytest.raises(openai.AuthenticationError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    assert info.value.body["code"] == "invalid_api_key" and proxy.classifier.requests == []
    with pytest.raises(openai.AuthenticationError):
        proxy.client.models.list()
    good = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="secret-1", max_retries=0)
    assert good.chat.completions.create(model="test-model", messages=user("hi")).choices[0].message.content


def test_serve_refuses_to_start_open(tmp_path, capsys):
    path = write_config(tmp_path, {}, "http://127.0.0.1:9", "http://127.0.0.1:9",
                        server_cfg={"client_keys_env": "GUARDRAIL_TEST_NO_SUCH_VAR"})
    assert main(["serve", "--config", str(path)]) == 2
    assert "GUARDRAIL_TEST_NO_SUCH_VAR is not set" in capsys.readouterr().err
