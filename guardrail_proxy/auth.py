"""Client keys: who is asking, which routes they may use, and how often.

Two ways to name keys, usable together:
- `clients:` in proxy.yaml: each key by name, known only by its SHA-256 (written there, or held in an
  environment variable), with the routes it may use, its default route and an optional rate limit;
- `server.client_keys_env`: an environment variable with comma-separated keys, each allowed every route,
  named `key-` and 12 hex digits of its SHA-256 (the older, flat form).

Clients send a key as `Authorization: Bearer <key>` (what the OpenAI SDK does with `api_key=`). The proxy
hashes what it is sent and looks the hash up, so the key itself is never kept, logged or compared byte by
byte. With neither set there is no client auth, for a sidecar reachable only on localhost.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .config import ProxyConfig, RateLimit, RouteConfig
from .errors import ConfigError, RouteForbidden, Unauthorized
from .settings import Settings

ALL_ROUTES = "*"


@dataclass(frozen=True)
class Client:
    name: str
    routes: frozenset[str] | None  # None: every route
    default_route: str | None = None
    rate_limit: RateLimit | None = None

    def may_use(self, route: str) -> bool:
        return self.routes is None or route in self.routes


ClientTable = dict[str, Client]  # hex SHA-256 of the key -> the client


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_name(key: str) -> str:
    """A stable name for an unnamed key that does not reveal it: 'key-' and 12 hex digits of its SHA-256."""
    return "key-" + hash_key(key)[:12]


def new_key() -> tuple[str, str]:
    """A fresh client key and its SHA-256, for `guardrail-proxy keys new`."""
    key = "gp-" + secrets.token_urlsafe(32)
    return key, hash_key(key)


def load_clients(proxy: ProxyConfig, routes: Sequence[RouteConfig], settings: Settings,
                 source: str) -> ClientTable | None:
    """Every configured key by its hash, or None when the proxy has no client auth. A variable that is named
    but unset, a malformed hash, a key listed twice or a route that does not exist stops start-up."""
    if not proxy.clients and not proxy.server.client_keys_env:
        return None
    table: ClientTable = {}
    known = {r.name for r in routes}
    for i, cfg in enumerate(proxy.clients):
        field = f"clients.{i}"
        digest = cfg.key_sha256 or (settings.secret(cfg.key_sha256_env) or "").strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(source, f"{field}.key_sha256_env",
                              f"environment variable {cfg.key_sha256_env} must hold the key's hex SHA-256 "
                              "(64 hex digits); it is unset or malformed")
        missing = [r for r in (*cfg.routes, cfg.default_route or ALL_ROUTES) if r != ALL_ROUTES and r not in known]
        if missing:
            raise ConfigError(source, f"{field}.routes", f"unknown route '{missing[0]}'; routes: {', '.join(known)}")
        add(table, digest, Client(cfg.name, None if ALL_ROUTES in cfg.routes else frozenset(cfg.routes),
                                  cfg.default_route, cfg.rate_limit), source, field)
    if proxy.server.client_keys_env:
        value = settings.secret(proxy.server.client_keys_env) or ""
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            raise ConfigError(source, "server.client_keys_env",
                              f"environment variable {proxy.server.client_keys_env} is not set or holds no keys; "
                              "the proxy will not start open when client auth is configured")
        for key in keys:
            add(table, hash_key(key), Client(key_name(key), None), source, "server.client_keys_env")
    return table


def add(table: ClientTable, digest: str, client: Client, source: str, field: str) -> None:
    if digest in table:
        raise ConfigError(source, field, f"this key is also configured as '{table[digest].name}'")
    table[digest] = client


def identify(authorization: str | None, table: ClientTable | None) -> Client | None:
    """The client whose key was sent, None when the proxy has no client auth; Unauthorized otherwise."""
    if table is None:
        return None
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    client = table.get(hash_key(token)) if scheme.lower() == "bearer" and token else None
    if client is None:
        raise Unauthorized("invalid or missing API key: send one of this proxy's client keys as "
                           "'Authorization: Bearer <key>'")
    return client


def check_route(client: Client | None, route: str) -> None:
    """A key can never use a route it was not given."""
    if client is not None and not client.may_use(route):
        raise RouteForbidden(f"this API key ('{client.name}') may not use route '{route}'")
