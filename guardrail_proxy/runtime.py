"""What lives as long as the app: the served config generation (served.py) and what outlives a reload of it
(the metrics, the audit writer, the rate limiter's buckets, the tracer, the drain flag). Built in the app's
lifespan, closed when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .audit_store import build_store
from .audit_writer import AuditWriter
from .errors import ConfigError
from .loader import LoadedConfig, load_config
from .metrics import Metrics
from .ops import ops_key
from .rate_limit import RateLimiter
from .reload import ReloadResult, changes, needs_restart
from .served import Served
from .settings import Settings
from .tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("guardrail_proxy")


def policy_texts(config: LoadedConfig) -> list[tuple[str, str, str]]:
    return [(p.digest, p.id, p.text) for p in config.policies.values()]


@dataclass
class Runtime:
    settings: Settings
    served: Served
    metrics: Metrics
    audit: AuditWriter
    tracing: Tracing | None
    limiter: RateLimiter = field(default_factory=RateLimiter)
    draining: bool = False
    flying: int = 0  # requests started and not yet ended, on any generation
    retired: list[Served] = field(default_factory=list)  # replaced generations with requests still in flight
    last_reload: ReloadResult | None = None
    ops_key: str | None = None  # ops.py: what /metrics, /readyz and /admin/* require, when set
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(cls, config: LoadedConfig, settings: Settings, span_exporter: SpanExporter | None = None) -> Runtime:
        proxy = config.proxy
        metrics = Metrics()
        tracing = Tracing.build(proxy.tracing, str(config.path), span_exporter)
        served = Served.build(config, settings, metrics.record_check, tracing)
        audit = AuditWriter(build_store(proxy.audit, settings, str(config.path)), proxy.audit, metrics,
                            policy_texts(config))
        runtime = cls(settings, served, metrics, audit, tracing,
                      ops_key=ops_key(proxy.server, settings, str(config.path)))
        metrics.watch(runtime)
        return runtime

    @property
    def config(self) -> LoadedConfig:
        """The config new requests get (a request in flight keeps the one it started with: Flow.served)."""
        return self.served.config

    def enter(self) -> Served:
        """A request starts: it gets the current generation and keeps it to its end."""
        self.flying += 1
        return self.served.acquire()

    def leave(self, served: Served) -> None:
        self.flying -= 1
        served.release()

    def in_flight(self) -> int:
        return self.flying

    def load(self) -> dict[str, tuple[int, int]]:
        return self.served.load()

    async def start(self) -> None:
        await self.audit.start()
        self.metrics.set_generation(self.served.generation, ok=True)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in (*self.retired, self.served)))
        await self.audit.close()
        if self.tracing:
            await self.tracing.aclose()

    async def reload(self) -> ReloadResult:
        """Re-read the config and policies, check them, and swap them in whole; on any problem keep serving
        the current generation and say why (the log, guardrail_config_reloads_total, the result)."""
        async with self.reloading:
            old = self.served
            path = str(old.config.path)
            try:
                config = await asyncio.to_thread(load_config, path)
                refused = needs_restart(old.config.proxy, config.proxy)
                if refused:
                    raise ConfigError(path, refused[0], "changed, and takes effect only after a restart; "
                                                        "the edit was not applied")
                served = Served.build(config, self.settings, self.metrics.record_check, self.tracing,
                                      old.generation + 1)
            except ConfigError as exc:
                result = ReloadResult(False, old.generation, path, error=exc.message)
                log.error("config reload failed; still serving generation %d: %s", old.generation, exc.message)
                return self.reloaded(result)
            try:
                await self.audit.add_policies(policy_texts(config))
            except Exception as exc:  # the store is down: records would name digests it has no text for
                await served.close()
                result = ReloadResult(False, old.generation, path, error=f"the audit store refused the policies: "
                                                                           f"{exc}")
                log.error("config reload failed; still serving generation %d: %s", old.generation, result.error)
                return self.reloaded(result)
            self.served = served
            self.retired = [s for s in self.retired if not s.closed.is_set()] + [old]
            await old.retire()
            result = ReloadResult(True, served.generation, path, changed=changes(old.config, config))
            log.info("config reloaded: generation %d (%s)", served.generation, "; ".join(result.changed) or "no change")
            return self.reloaded(result)

    def reloaded(self, result: ReloadResult) -> ReloadResult:
        self.last_reload = result
        self.metrics.reloaded(result.ok)
        self.metrics.set_generation(self.served.generation, ok=result.ok)
        return result

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, per-dependency status). Not ready while draining for shutdown, whatever else holds."""
        checks = await self.served.readiness()
        checks["audit"] = self.audit.problem() or "ok"
        if self.draining:
            checks["shutdown"] = "draining: finishing requests in flight before the process exits"
        ready = all(v == "ok" for v in checks.values())
        report: dict[str, Any] = {"ready": ready, "config": str(self.config.path),
                                  "generation": self.served.generation, "checks": checks}
        if self.last_reload and not self.last_reload.ok:
            report["last_reload"] = self.last_reload.to_json()
        return ready, report
