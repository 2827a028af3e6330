"""Which route handles a request. Pure.

The first of these that is present decides, in this order:

1. the path prefix: `/r/<route>/v1/...` (a `base_url` per route, for clients that cannot send headers);
2. the `x-guardrail-route` header (or a check request's `route` field);
3. the client key's `default_route`;
4. the model name: each route lists the model names it serves.

A route picked by 1-3 answers whatever model name the client sends (its upstream decides which model
answers; the name is kept in the audit record). Whichever way it was picked, a key may only use the routes
it was given (auth.check_route).
"""

from __future__ import annotations

from collections.abc import Sequence

from .auth import Client
from .config import RouteConfig
from .errors import UnknownModel, UnknownRoute

ROUTE_HEADER = "x-guardrail-route"


def named_route(routes: Sequence[RouteConfig], name: str, where: str) -> RouteConfig:
    route = next((r for r in routes if r.name == name), None)
    if route is None:
        raise UnknownRoute(f"unknown route '{name}' in {where}; routes: {', '.join(r.name for r in routes)}")
    return route


def select_route(routes: Sequence[RouteConfig], model: str | None, *, path_route: str | None = None,
                 named: str | None = None, client: Client | None = None,
                 named_where: str = f"the {ROUTE_HEADER} header") -> RouteConfig | None:
    """The route by the precedence above; None when nothing names one and there is no model to go by."""
    if path_route:
        return named_route(routes, path_route, "the path (/r/<route>/v1/...)")
    if named:
        return named_route(routes, named, named_where)
    if client is not None and client.default_route:
        return named_route(routes, client.default_route, f"API key '{client.name}''s default_route")
    if model is None:
        return None
    for route in routes:
        if model in route.models:
            return route
    served = ", ".join(m for r in routes for m in r.models)
    raise UnknownModel(f"the model '{model}' does not exist on this proxy; available: {served}", param="model")


def exposed_models(routes: Sequence[RouteConfig], client: Client | None = None,
                   only: str | None = None) -> list[tuple[str, str]]:
    """(model name, route name) for GET /v1/models, in config order: the routes this client may use (and,
    under a /r/<route> prefix, that route only)."""
    return [(model, route.name) for route in routes
            if (client is None or client.may_use(route.name)) and only in (None, route.name)
            for model in route.models]
