"""Route selection, in its documented order: path prefix, header, the key's default route, the model."""

from __future__ import annotations

import pytest

from guardrail_proxy.auth import Client
from guardrail_proxy.config import PolicyRule, RouteConfig
from guardrail_proxy.errors import UnknownModel, UnknownRoute
from guardrail_proxy.routing import exposed_models, select_route

RULE = (PolicyRule(id="p"),)
ROUTES = [RouteConfig(name="a", models=("m1", "m2"), upstream="u", policies=RULE),
          RouteConfig(name="b", models=("m3",), upstream="u", policies=RULE),
          RouteConfig(name="c", models=("m4",), upstream="u", policies=RULE)]
DEFAULT_C = Client("team", None, default_route="c")


@pytest.mark.parametrize(("model", "path", "header", "client", "expected"), [
    ("m1", None, None, None, "a"),
    ("m3", None, None, None, "b"),
    ("m1", "b", None, None, "b"),          # the path beats the model
    ("m1", "b", "a", DEFAULT_C, "b"),      # the path beats the header and the key's default
    ("m1", None, "b", DEFAULT_C, "b"),     # the header beats the key's default
    ("m1", None, None, DEFAULT_C, "c"),    # the key's default beats the model
    ("any-name", None, "b", None, "b"),    # a named route answers whatever model name is sent
    ("m3", None, None, Client("plain", None), "b"),  # a key without a default: the model decides
])
def test_precedence(model, path, header, client, expected):
    assert select_route(ROUTES, model, path_route=path, named=header, client=client).name == expected


@pytest.mark.parametrize(("model", "path", "header", "error", "says"), [
    ("nope", None, None, UnknownModel, "model 'nope' does not exist"),
    ("m1", "ghost", None, UnknownRoute, "in the path"),
    ("m1", None, "ghost", UnknownRoute, "x-guardrail-route"),
])
def test_no_match(model, path, header, error, says):
    with pytest.raises(error, match=says):
        select_route(ROUTES, model, path_route=path, named=header)


def test_no_model_and_nothing_named():
    assert select_route(ROUTES, None) is None


def test_exposed_models():
    assert exposed_models(ROUTES) == [("m1", "a"), ("m2", "a"), ("m3", "b"), ("m4", "c")]
    assert exposed_models(ROUTES, Client("k", frozenset({"b", "c"}))) == [("m3", "b"), ("m4", "c")]
    assert exposed_models(ROUTES, None, only="a") == [("m1", "a"), ("m2", "a")]
