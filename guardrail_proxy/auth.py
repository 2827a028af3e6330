"""Client API keys: a proxy holding the upstream's key must not lend it to anyone who can reach it.

`server.client_keys_env` names an environment variable with comma-separated keys; clients send one as
`Authorization: Bearer <key>` (what the OpenAI SDK does with `api_key=`). Unset: no client auth, for a
sidecar reachable only on localhost.
"""

from __future__ import annotations

import hmac

from .config import ServerConfig
from .errors import ConfigError, Unauthorized
from .settings import Settings


def load_client_keys(server: ServerConfig, settings: Settings, source: str) -> frozenset[str] | None:
    if not server.client_keys_env:
        return None
    value = settings.secret(server.client_keys_env) or ""
    keys = frozenset(k.strip() for k in value.split(",") if k.strip())
    if not keys:
        raise ConfigError(source, "server.client_keys_env",
                          f"environment variable {server.client_keys_env} is not set or holds no keys; "
                          "the proxy will not start open when client auth is configured")
    return keys


def check_client(authorization: str | None, keys: frozenset[str] | None) -> str | None:
    """The key the client sent, when the proxy has keys and it is one of them; raises Unauthorized otherwise."""
    if keys is None:
        return None
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    # Compare with every key in constant time, so timing does not reveal how much of a key matched.
    matched = [hmac.compare_digest(token.encode(), key.encode()) for key in keys]
    if scheme.lower() != "bearer" or not token or not any(matched):
        raise Unauthorized("invalid or missing API key: send one of this proxy's client keys as "
                           "'Authorization: Bearer <key>'")
    return token
