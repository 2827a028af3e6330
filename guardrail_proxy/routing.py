"""Which route handles a request. Pure.

A client picks a route by the model name it sends (each route lists its model names) or, when one model
name is served by several products, explicitly with the `x-guardrail-route` header.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import RouteConfig
from .errors import UnknownModel, UnknownRoute

ROUTE_HEADER = "x-guardrail-route"


def match_route(routes: Sequence[RouteConfig], model: str, route_name: str | None) -> RouteConfig:
    if route_name:
        route = next((r for r in routes if r.name == route_name), None)
        if route is None:
            known = ", ".join(r.name for r in routes)
            raise UnknownRoute(f"unknown route '{route_name}' in the {ROUTE_HEADER} header; routes: {known}")
        if model not in route.models:
            raise UnknownModel(
                f"route '{route.name}' does not serve model '{model}'; it serves: {', '.join(route.models)}",
                param="model")
        return route
    for route in routes:
        if model in route.models:
            return route
    served = ", ".join(m for r in routes for m in r.models)
    raise UnknownModel(f"the model '{model}' does not exist on this proxy; available: {served}", param="model")


def exposed_models(routes: Sequence[RouteConfig]) -> list[tuple[str, str]]:
    """(model name, route name) for GET /v1/models, in config order."""
    return [(model, route.name) for route in routes for model in route.models]
