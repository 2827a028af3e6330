"""Everything the app builds once at start-up: clients with their connection pools, the checker, the
audit sink and the metrics. Built in the app's lifespan, closed when it ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .audit_store import build_store
from .audit_writer import AuditWriter
from .auth import load_client_keys
from .classifier import Classifier
from .classifier_factory import build_classifier
from .loader import LoadedConfig
from .metrics import Metrics
from .pipeline import Checker
from .settings import Settings
from .upstream import Upstream, build_upstream
from .verdict_cache import CachingClassifier


@dataclass
class Runtime:
    config: LoadedConfig
    settings: Settings
    classifiers: dict[str, Classifier]
    upstreams: dict[str, Upstream]
    checker: Checker
    metrics: Metrics
    audit: AuditWriter
    client_keys: frozenset[str] | None

    @classmethod
    def build(cls, config: LoadedConfig, settings: Settings) -> Runtime:
        proxy = config.proxy
        used_upstreams = {r.upstream for r in config.routes}
        classifiers: dict[str, Classifier] = {}
        for name, cfg in proxy.classifiers.items():
            client = build_classifier(cfg, settings.secret(cfg.api_key_env))
            classifiers[name] = CachingClassifier(client, cfg.cache_entries) if cfg.cache_entries else client
        upstreams = {
            name: build_upstream(cfg, settings.secret(cfg.api_key_env))
            for name, cfg in proxy.upstreams.items() if name in used_upstreams
        }
        metrics = Metrics()
        checker = Checker(classifiers, config.policies, on_outcome=metrics.record_check,
                          max_chars={name: cfg.max_input_chars for name, cfg in proxy.classifiers.items()},
                          capacity={name: cfg.max_concurrency + cfg.max_queue
                                    for name, cfg in proxy.classifiers.items()})
        keys = load_client_keys(proxy.server, settings, str(config.path))
        texts = [(p.digest, p.id, p.text) for p in config.policies.values()]
        audit = AuditWriter(build_store(proxy.audit, settings, str(config.path)), proxy.audit, metrics, texts)
        return cls(config, settings, classifiers, upstreams, checker, metrics, audit, keys)

    async def start(self) -> None:
        await self.audit.start()

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.classifiers.values()),
                             *(u.aclose() for u in self.upstreams.values()), return_exceptions=True)
        await self.audit.close()

    def missing_secrets(self) -> dict[str, str]:
        proxy = self.config.proxy
        found: dict[str, str] = {}
        used = {r.classifier for r in self.config.routes}
        named = [(f"classifier:{n}", proxy.classifiers[n].api_key_env) for n in sorted(used)]
        named += [(f"upstream:{n}", proxy.upstreams[n].api_key_env) for n in self.upstreams]
        for name, env in named:
            if env and self.settings.secret(env) is None:
                found[name] = f"environment variable {env} is not set"
        return found

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, per-dependency status). Ready when every classifier a route uses answers, and every
        upstream that can be probed answers, with its API key present."""
        used = sorted({r.classifier for r in self.config.routes})
        names = [f"classifier:{n}" for n in used] + [f"upstream:{n}" for n in self.upstreams]
        probes = [self.classifiers[n].ping() for n in used] + [u.ping() for u in self.upstreams.values()]
        results = await asyncio.gather(*probes)
        checks = {name: (problem or "ok") for name, problem in zip(names, results, strict=True)}
        for name, problem in self.missing_secrets().items():
            checks[name] = problem if checks[name] == "ok" else f"{checks[name]}; {problem}"
        checks["audit"] = self.audit.problem() or "ok"
        ready = all(v == "ok" for v in checks.values())
        return ready, {"ready": ready, "config": str(self.config.path), "checks": checks}
