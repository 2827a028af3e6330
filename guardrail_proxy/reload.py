"""What a config reload may change, and what it did change. Pure; Runtime.reload does the swapping.

A reload (SIGHUP or `POST /admin/reload`) applies routes, policies, classifiers, upstreams, client keys and
the request limits. What the process set up once at start (the listening sockets, the audit store, the
tracer, the log level) needs a restart: an edit there is refused whole, so nothing is half applied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .config import ProxyConfig
from .loader import LoadedConfig

RESTART_ONLY = ("server.host", "server.port", "server.ops_host", "server.ops_port", "server.ops_key_env",
                "server.log_level", "server.drain_s", "server.shutdown_timeout_s", "server.event_loop", "audit",
                "tracing")


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    generation: int  # the generation serving after the attempt
    config: str
    error: str | None = None
    changed: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"reloaded": self.ok, "generation": self.generation, "config": self.config, "error": self.error,
                "changed": list(self.changed), "at": round(self.at, 3)}


def value_at(proxy: ProxyConfig, dotted: str) -> object:
    value: object = proxy
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def needs_restart(old: ProxyConfig, new: ProxyConfig) -> list[str]:
    """The restart-only fields an edit changed."""
    return [name for name in RESTART_ONLY if value_at(old, name) != value_at(new, name)]


def candidates(config: LoadedConfig) -> dict[str, str]:
    """Each shadow entry ("route/policy") -> its candidate's digest: a candidate file is outside the route
    files and the policy directories, so an edit to it shows only here."""
    return {f"{route}/{s.policy_id}": s.candidate.digest for route, shadows in config.shadows.items()
            for s in shadows}


def changes(old: LoadedConfig, new: LoadedConfig) -> tuple[str, ...]:
    """A short account of what a reload changed: routes, policies and shadow candidates added, removed or
    edited, and whether the rest of proxy.yaml changed."""
    out: list[str] = []
    old_routes, new_routes = {r.name: r for r in old.routes}, {r.name: r for r in new.routes}
    old_pols, new_pols = {p.id: p.digest for p in old.policies.values()}, {p.id: p.digest
                                                                        for p in new.policies.values()}
    for kind, before, after in (("route", old_routes, new_routes), ("policy", old_pols, new_pols),
                                ("shadow candidate", candidates(old), candidates(new))):
        for name in sorted(after.keys() - before.keys()):
            out.append(f"{kind} {name} added")
        for name in sorted(before.keys() - after.keys()):
            out.append(f"{kind} {name} removed")
        for name in sorted(before.keys() & after.keys()):
            if before[name] != after[name]:
                out.append(f"{kind} {name} edited")
    if old.proxy != new.proxy:
        out.append("proxy.yaml edited")
    return tuple(out)
