"""Who may read the operator endpoints (/metrics, /readyz, /admin/*): they name config paths, routes, policy
ids and client names, so they can be moved to a port of their own and put behind a key of their own.

- `server.ops_port`: a second listener serves the operator endpoints (and /healthz), and the main port no
  longer does (404 there);
- `server.ops_key_env`: the operator endpoints need `Authorization: Bearer <ops key>`; the admin endpoints
  (which change what the proxy does) are refused without one configured.

The review console (/console, console/access.py) follows the same two settings; a browser presents the ops
key once, through the console's login form, and then carries a session cookie instead of a Bearer header.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import MutableMapping
from typing import Any

from .config import ServerConfig
from .errors import ConfigError, RouteForbidden, Unauthorized, UnknownRoute, error_body
from .settings import Settings

LISTENER = "guardrail.listener"  # the ASGI scope key the ops listener sets
OPS_PATHS = ("/metrics", "/readyz", "/healthz", "/admin/", "/console", "/console/")


def ops_key(server: ServerConfig, settings: Settings, source: str) -> str | None:
    """The ops key, or None when none is configured; a named but unset variable stops start-up."""
    if not server.ops_key_env:
        return None
    key = settings.secret(server.ops_key_env)
    if key is None:
        raise ConfigError(source, "server.ops_key_env", f"environment variable {server.ops_key_env} is not set")
    return key


def on_ops_listener(scope: MutableMapping[str, Any]) -> bool:
    return scope.get(LISTENER) == "ops"


def is_ops_path(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in OPS_PATHS)


def check_ops(scope: MutableMapping[str, Any], server: ServerConfig, key: str | None, authorization: str | None,
              *, admin: bool = False) -> None:
    """Raise unless this request may reach an operator endpoint."""
    if server.ops_port is not None and not on_ops_listener(scope):
        raise UnknownRoute(f"{scope.get('path')} is served on the ops port ({server.ops_port}) only")
    if admin and key is None:
        raise RouteForbidden("the admin endpoints need an ops key: set server.ops_key_env (or send SIGHUP)")
    if key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise Unauthorized("this endpoint needs the proxy's ops key as 'Authorization: Bearer <key>'")


class OpsListener:
    """The ASGI app the ops port serves: the same app, with its requests marked, and only operator paths."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, LISTENER: "ops"}
            if not is_ops_path(scope["path"]):
                body = json.dumps(error_body("the ops port serves /metrics, /readyz, /healthz, /admin/* and "
                                             "/console/ only", "invalid_request_error", "not_found")).encode()
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
