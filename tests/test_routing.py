from __future__ import annotations

import pytest

from guardrail_proxy.config import PolicyRule, RouteConfig
from guardrail_proxy.errors import UnknownModel, UnknownRoute
from guardrail_proxy.routing import exposed_models, match_route

RULE = (PolicyRule(id="p"),)
ROUTES = [RouteConfig(name="a", models=("m1", "m2"), upstream="u", policies=RULE),
          RouteConfig(name="b", models=("m3",), upstream="u", policies=RULE)]


@pytest.mark.parametrize(("model", "header", "expected"), [
    ("m1", None, "a"), ("m2", None, "a"), ("m3", None, "b"), ("m3", "b", "b"), ("m1", "a", "a"),
])
def test_match(model, header, expected):
    assert match_route(ROUTES, model, header).name == expected


@pytest.mark.parametrize(("model", "header", "error"), [
    ("nope", None, UnknownModel), ("m1", "b", UnknownModel), ("m1", "ghost", UnknownRoute),
])
def test_no_match(model, header, error):
    with pytest.raises(error):
        match_route(ROUTES, model, header)


def test_exposed_models():
    assert exposed_models(ROUTES) == [("m1", "a"), ("m2", "a"), ("m3", "b")]
