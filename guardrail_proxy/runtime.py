"""What lives as long as the app: the served config generation (served.py) and what outlives a reload of it
(the metrics, the audit writer, the rate limiter's buckets, the tracer, the drain flag). Built in the app's
lifespan, closed when it ends.
"""

from __future__ import annotations

import asyncio
import importlib
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
from .settings import Settings, prepare_litellm_import
from .shadow_run import SHUTDOWN_GRACE_S, ShadowOutput
from .tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("guardrail_proxy")


def warm_imports(config: LoadedConfig) -> None:
    """Import what building the config's upstreams will import, so that a reload does not stall the event loop."""
    if any(u.provider == "litellm" for u in config.proxy.upstreams.values()):
        prepare_litellm_import()
        importlib.import_module("litellm")


def policy_texts(config: LoadedConfig) -> list[tuple[str, str, str]]:
    """Every policy version the config can name in a record: the enforced ones and the shadow candidates."""
    candidates = [s.candidate for shadows in config.shadows.values() for s in shadows]
    return [(p.digest, p.id, p.text) for p in (*config.policies.values(), *candidates)]


@dataclass
class Runtime:
    settings: Settings
    served: Served
    metrics: Metrics
    audit: AuditWriter
    tracing: Tracing | None
    limiter: RateLimiter = field(default_factory=RateLimiter)
    draining: bool = False
    closing: bool = False
    flying: int = 0  # requests started and not yet ended, on any generation
    retired: list[Served] = field(default_factory=list)  # replaced generations not yet done closing
    last_reload: ReloadResult | None = None
    ops_key: str | None = None  # ops.py: what /metrics, /readyz and /admin/* require, when set
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(cls, config: LoadedConfig, settings: Settings, span_exporter: SpanExporter | None = None) -> Runtime:
        proxy = config.proxy
        metrics = Metrics()
        tracing = Tracing.build(proxy.tracing, str(config.path), span_exporter)
        audit = AuditWriter(build_store(proxy.audit, settings, str(config.path)), proxy.audit, metrics,
                            policy_texts(config))
        served = Served.build(config, settings, metrics.record_check, tracing,
                              shadow_output=ShadowOutput(audit, metrics))
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

    def relayed_skips(self) -> int:
        """Checks not made because a relayed reply came back as history (relayed.py; kept across reloads)."""
        return self.served.checker.relayed.skipped

    async def start(self) -> None:
        await self.audit.start()
        self.metrics.set_generation(self.served.generation, ok=True)

    def hurry(self) -> None:
        """Shadow calls still running on any generation get at most SHUTDOWN_GRACE_S more."""
        for generation in (*self.retired, self.served):
            if generation.checker.shadow is not None:
                generation.checker.shadow.hurry(SHUTDOWN_GRACE_S)

    async def close(self) -> None:
        self.closing = True
        self.hurry()  # before the lock: nothing under it waits for shadow calls, but be sure they end soon
        async with self.reloading:  # a reload under way finishes (or fails) first; later ones are refused
            self.hurry()  # the generation such a reload replaced, too
            # Generations close before the audit writer: the rows of shadow calls finishing now are committed.
            # A retired generation's close already runs as a task (Served.close_soon): this waits for it.
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
            if self.closing:
                return self.failed(old, path, "the proxy is shutting down")
            served: Served | None = None
            try:
                config = await asyncio.to_thread(load_config, path)
                refused = needs_restart(old.config.proxy, config.proxy)
                if refused:
                    raise ConfigError(path, refused[0], "changed, and takes effect only after a restart; "
                                                        "the edit was not applied")
                await asyncio.to_thread(warm_imports, config)  # litellm's ~2 s import, off the event loop
                served = Served.build(config, self.settings, self.metrics.record_check, self.tracing,
                                      old.generation + 1, previous=old,
                                      shadow_output=ShadowOutput(self.audit, self.metrics))
                try:
                    await self.audit.add_policies(policy_texts(config))
                except Exception as exc:  # the store is down: records would name digests it has no text for
                    raise ConfigError(path, "", f"the audit store refused the policies: {exc}") from None
            except BaseException as exc:
                if served is not None:
                    await served.close()
                if not isinstance(exc, Exception):
                    raise  # cancelled (shutdown): nothing was swapped
                return self.failed(old, path, exc.message if isinstance(exc, ConfigError)
                                   else f"{type(exc).__name__}: {exc}")
            self.served = served
            self.retired = [s for s in self.retired if not s.finished()] + [old]
            old.retire()  # closes in a task of its own: its shadow calls may run up to the classifier's deadline
            result = ReloadResult(True, served.generation, path, changed=changes(old.config, config))
            log.info("config reloaded: generation %d (%s)", served.generation, "; ".join(result.changed) or "no change")
            return self.reloaded(result)

    def failed(self, old: Served, path: str, error: str) -> ReloadResult:
        log.error("config reload failed; still serving generation %d: %s", old.generation, error)
        return self.reloaded(ReloadResult(False, old.generation, path, error=error))

    def reloaded(self, result: ReloadResult) -> ReloadResult:
        self.last_reload = result
        self.metrics.reloaded(result.ok)
        self.metrics.set_generation(self.served.generation, ok=result.ok)
        return result

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, per-dependency status). Not ready while draining for shutdown, whatever else holds."""
        served = self.served.acquire()  # a reload must not close the clients being probed
        try:
            checks = await served.readiness()
        finally:
            served.release()
        checks["audit"] = self.audit.problem() or "ok"
        if self.draining:
            checks["shutdown"] = "draining: finishing requests in flight before the process exits"
        ready = all(v == "ok" for v in checks.values())
        report: dict[str, Any] = {"ready": ready, "config": str(self.config.path),
                                  "generation": self.served.generation, "checks": checks}
        if self.last_reload and not self.last_reload.ok:
            report["last_reload"] = self.last_reload.to_json()
        return ready, report
