"""Client keys: named, stored hashed, each limited to its routes; never started open by mistake."""

from __future__ import annotations

import hashlib
from types import MappingProxyType

import openai
import pytest
from conftest import user, write_config

from guardrail_proxy.auth import Client, check_route, identify, key_name, load_clients
from guardrail_proxy.cli import main
from guardrail_proxy.config import ClientConfig, PolicyRule, ProxyConfig, RouteConfig
from guardrail_proxy.errors import ConfigError, RouteForbidden, Unauthorized
from guardrail_proxy.settings import Settings


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


ROUTES = [RouteConfig(name=n, models=(f"m-{n}",), upstream="u", policies=(PolicyRule(id="p"),)) for n in "ab"]
BASE = {"classifiers": {"default": {"base_url": "http://x/v1"}}, "upstreams": {"u": {"model": "m"}}}


def proxy_config(**extra: object) -> ProxyConfig:
    return ProxyConfig.model_validate({**BASE, **extra})


def table(**env: str):
    cfg = proxy_config(server={"client_keys_env": "FLAT"}, clients=[
        {"name": "teen-app", "key_sha256": sha("k-teen"), "routes": ["a"], "default_route": "a"},
        {"name": "ops", "key_sha256_env": "OPS_HASH", "routes": ["*"]}])
    return load_clients(cfg, ROUTES, Settings(MappingProxyType({"FLAT": "k-one, k-two", "OPS_HASH": sha("k-ops"),
                                                                 **env})), "proxy.yaml")


@pytest.mark.parametrize(("header", "name"), [
    ("Bearer k-teen", "teen-app"), ("bearer k-ops", "ops"), ("Bearer  k-one ", key_name("k-one")),
    ("Bearer k-two", key_name("k-two")),
])
def test_identified_by_hash(header, name):
    assert identify(header, table()).name == name


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer k-three", "Basic k-teen", "k-teen", "Bearer k-tee",
                                    f"Bearer {sha('k-teen')}"])
def test_rejected(header):
    with pytest.raises(Unauthorized):
        identify(header, table())


def test_no_keys_configured_means_no_auth():
    assert load_clients(proxy_config(), ROUTES, Settings(), "p.yaml") is None
    assert identify(None, None) is None
    check_route(None, "a")


def test_routes_a_key_may_use():
    teen = identify("Bearer k-teen", table())
    check_route(teen, "a")
    with pytest.raises(RouteForbidden, match=r"\('teen-app'\) may not use route 'b'") as info:
        check_route(teen, "b")
    assert info.value.status_code == 403 and info.value.error_type == "permission_error"
    check_route(identify("Bearer k-ops", table()), "b")


@pytest.mark.parametrize(("extra", "env", "field", "says"), [
    ({"server": {"client_keys_env": "FLAT"}}, {}, "server.client_keys_env", "FLAT is not set"),
    ({"clients": [{"name": "x", "key_sha256_env": "H", "routes": ["*"]}]}, {}, "clients.0.key_sha256_env",
     "H must hold"),
    ({"clients": [{"name": "x", "key_sha256_env": "H", "routes": ["*"]}]}, {"H": "abc"}, "clients.0.key_sha256_env",
     "malformed"),
    ({"clients": [{"name": "x", "key_sha256": sha("k"), "routes": ["ghost"]}]}, {}, "clients.0.routes",
     "unknown route 'ghost'"),
    ({"clients": [{"name": "x", "key_sha256": sha("k"), "routes": ["*"], "default_route": "ghost"}]}, {},
     "clients.0.routes", "unknown route 'ghost'"),
    ({"clients": [{"name": "x", "key_sha256": sha("k"), "routes": ["*"]},
                  {"name": "y", "key_sha256": sha("k"), "routes": ["*"]}]}, {}, "clients.1", "also configured as 'x'"),
])
def test_load_errors_name_the_field(extra, env, field, says):
    with pytest.raises(ConfigError) as info:
        load_clients(proxy_config(**extra), ROUTES, Settings(MappingProxyType(env)), "proxy.yaml")
    assert info.value.field == field and says in info.value.reason


@pytest.mark.parametrize(("entry", "says"), [
    ({"name": "x", "routes": ["*"]}, "exactly one of key_sha256"),
    ({"name": "x", "key_sha256": sha("k"), "key_sha256_env": "H", "routes": ["*"]}, "exactly one"),
    ({"name": "x", "key_sha256": "k-plain-key", "routes": ["*"]}, "pattern"),
    ({"name": "x y", "key_sha256": sha("k"), "routes": ["*"]}, "pattern"),
    ({"name": "x", "key_sha256": sha("k"), "routes": ["a"], "default_route": "b"}, "not among this key's routes"),
    ({"name": "x", "key_sha256": sha("k"), "routes": ["*", "a"]}, "'*' alone"),
    ({"name": "x", "key_sha256": sha("k"), "routes": []}, "at least 1"),
])
def test_client_entries_are_strict(entry, says):
    with pytest.raises(ValueError, match=says):
        ClientConfig.model_validate(entry)


def test_names_are_unique():
    entry = {"name": "x", "key_sha256": sha("k"), "routes": ["*"]}
    with pytest.raises(ValueError, match="client names listed twice: x"):
        proxy_config(clients=[entry, {**entry, "key_sha256": sha("j")}])


def test_end_to_end_flat_keys(make_proxy):
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


def test_keys_new_prints_an_entry_that_admits_the_key(capsys):
    assert main(["keys", "new", "--name", "teen-app", "--routes", "a"]) == 0
    out, err = capsys.readouterr()
    key = err.split(": ", 1)[1].strip()
    entry = __import__("yaml").safe_load(out)[0]
    assert entry == {"name": "teen-app", "key_sha256": sha(key), "routes": ["a"]} and key not in out
    assert identify(f"Bearer {key}", load_clients(proxy_config(clients=[entry]), ROUTES, Settings(), "p")) == \
        Client("teen-app", frozenset({"a"}))
