"""One generation of served config: the loaded config and everything built from it (classifier and upstream
clients with their pools, the checker, the client keys).

A request takes the current generation when it starts and keeps it to its end (a stream's last event), so a
config reload (reload.py) never changes the rules under a request in flight. A generation that was replaced
closes its clients once its last request has finished, in a task of its own (`closing`): its shadow calls may
take up to the classifier's deadline to finish, and neither the reload nor a request waits for that.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from .auth import ClientTable, load_clients
from .classifier import Classification, Classifier, RetryingClassifier
from .classifier_factory import build_classifier
from .config import ClassifierConfig
from .http_pool import env_proxy
from .loader import LoadedConfig
from .pipeline import Checker, OnOutcome
from .policies import digest_of
from .settings import Settings
from .shadow_run import Asked, ShadowOutput, ShadowRunner
from .tracing import Tracing
from .upstream import Upstream, build_upstream
from .verdict_cache import CachingClassifier


@dataclass
class Served:
    config: LoadedConfig
    settings: Settings
    classifiers: dict[str, Classifier]
    upstreams: dict[str, Upstream]
    checker: Checker
    clients: ClientTable | None
    generation: int = 0
    users: int = field(default=0, repr=False)  # requests in flight on this generation
    retired: bool = field(default=False, repr=False)
    closed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    closing: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, config: LoadedConfig, settings: Settings, on_outcome: OnOutcome,
              tracing: Tracing | None = None, generation: int = 0, previous: Served | None = None,
              shadow_output: ShadowOutput | None = None) -> Served:
        """Everything a generation needs. Raises ConfigError (a missing key variable, say) before any client is
        built, so a failed build leaves nothing to close."""
        proxy = config.proxy
        clients = load_clients(proxy, config.routes, settings, str(config.path))
        used_upstreams = {r.upstream for r in config.routes}
        # Each aiohttp client resolves its proxy variable as it is built; resolved here first, a bad one stops
        # the build before the clients built ahead of the one that would raise are left open (http_pool.py).
        for url in [c.base_url for c in proxy.classifiers.values() if c.transport == "aiohttp"] + [
                str(u.api_base) for n, u in proxy.upstreams.items() if n in used_upstreams and u.provider == "openai"]:
            env_proxy(url)
        classifiers: dict[str, Classifier] = {}
        bare: dict[str, RetryingClassifier] = {}  # beneath the cache: what shadow calls use (shadow_run.py)
        for name, cfg in proxy.classifiers.items():
            client = build_classifier(cfg, settings.secret(cfg.api_key_env))
            # Every transport build_classifier makes is a RetryingClassifier (whose slots a shadow call must
            # not take); its declared type is the narrower Classifier protocol.
            bare[name] = cast(RetryingClassifier, client)
            if cfg.cache_entries:
                # A reload keeps the answers of a classifier whose settings did not change (the key holds the
                # policy's digest, so an edited policy is asked again), rather than send a burst of repeat calls.
                kept = previous.cache_of(name, cfg) if previous is not None else None
                client = CachingClassifier(client, cfg.cache_entries, kept)
            # Traced outside the cache, so a cached answer shows in the trace as one.
            classifiers[name] = tracing.classifier(client, name, cfg) if tracing else client
        upstreams: dict[str, Upstream] = {}
        for name, up_cfg in proxy.upstreams.items():
            if name in used_upstreams:
                upstream = build_upstream(up_cfg, settings.secret(up_cfg.api_key_env))
                upstreams[name] = tracing.upstream(upstream, name, up_cfg) if tracing else upstream
        checker = Checker(classifiers, config.policies, on_outcome=on_outcome,
                          max_chars={name: cfg.max_input_chars for name, cfg in proxy.classifiers.items()},
                          capacity={name: cfg.max_concurrency + cfg.max_queue
                                    for name, cfg in proxy.classifiers.items()},
                          relayed=previous.checker.relayed if previous is not None else None,
                          settings_keys={name: digest_of(cfg.model_dump_json())
                                         for name, cfg in proxy.classifiers.items()},
                          shadow=ShadowRunner(config.shadows, bare, config.policies, shadow_output,
                                              grace_s=max(c.timeout_s for c in proxy.classifiers.values()),
                                              asked=previous.asked() if previous is not None else None)
                          if shadow_output is not None and any(config.shadows.values()) else None)
        return cls(config, settings, classifiers, upstreams, checker, clients, generation)

    def asked(self) -> Asked | None:
        """What the candidates were already asked (shadow_run.Asked), kept across a reload."""
        return self.checker.shadow.asked if self.checker.shadow is not None else None

    def cache_of(self, name: str, cfg: ClassifierConfig) -> OrderedDict[tuple[str, str], Classification] | None:
        if self.config.proxy.classifiers.get(name) != cfg:
            return None
        cache = next((c for c in wrapped(self.classifiers.get(name)) if isinstance(c, CachingClassifier)), None)
        return cache.entries if cache is not None else None

    def acquire(self) -> Served:
        self.users += 1
        return self

    def release(self) -> None:
        self.users -= 1
        if self.retired and self.users == 0:
            self.close_soon()

    def retire(self) -> None:
        """Replaced by a newer generation: close now if idle, else when the last request ends; either way in a
        task of its own, which the runtime awaits at shutdown (Runtime.close)."""
        self.retired = True
        if self.users == 0:
            self.close_soon()

    def close_soon(self) -> None:
        if self.closing is None:
            self.closing = asyncio.get_running_loop().create_task(self.close(), name=f"close generation "
                                                                                    f"{self.generation}")

    def finished(self) -> bool:
        """Retired and done closing: nothing left to wait for at shutdown."""
        return self.closing is not None and self.closing.done()

    async def close(self) -> None:
        """Close the clients (once). A retired generation closes in a task (close_soon); the app's own close
        waits for it."""
        if self.closed.is_set():
            if self.closing is not None and self.closing is not asyncio.current_task():
                await self.closing
            return
        self.closed.set()
        if self.checker.shadow is not None:  # before the clients its calls use
            await self.checker.shadow.close()
        await asyncio.gather(*(c.aclose() for c in self.classifiers.values()),
                             *(u.aclose() for u in self.upstreams.values()), return_exceptions=True)

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

    async def readiness(self) -> dict[str, str]:
        """Per dependency, "ok" or the problem: every classifier a route uses and every upstream that can be
        probed must answer, with its API key present."""
        used = sorted({r.classifier for r in self.config.routes})
        names = [f"classifier:{n}" for n in used] + [f"upstream:{n}" for n in self.upstreams]
        probes = [self.classifiers[n].ping() for n in used] + [u.ping() for u in self.upstreams.values()]
        results = await asyncio.gather(*probes)
        checks = {name: (problem or "ok") for name, problem in zip(names, results, strict=True)}
        for name, problem in self.missing_secrets().items():
            checks[name] = problem if checks[name] == "ok" else f"{checks[name]}; {problem}"
        return checks

    def load(self) -> dict[str, tuple[int, int]]:
        """Per classifier: (calls in flight, calls queued behind its concurrency limit), for /metrics."""
        return {name: classifier_load(c) for name, c in self.classifiers.items()}


def wrapped(classifier: object) -> Iterator[object]:
    """A classifier and each one it wraps, outermost first (the cache and tracing wrappers hold theirs as `inner`)."""
    while classifier is not None:
        yield classifier
        classifier = getattr(classifier, "inner", None)


def classifier_load(classifier: object) -> tuple[int, int]:
    """What RetryingClassifier.load says, through the wrappers."""
    for layer in wrapped(classifier):
        load = getattr(layer, "load", None)
        if callable(load):
            counts: tuple[int, int] = load()
            return counts
    return 0, 0

