"""Read proxy.yaml, the route files and the policies; check every cross-reference; fail loudly.

Everything is loaded once at start-up. Any problem raises `ConfigError(file, field, reason)`, so a bad
config never surfaces later as a strange response.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .config import Action, ProxyConfig, RouteConfig
from .decisions import action_for
from .errors import ConfigError
from .official_pack import load_official_pack
from .policies import Policy, index_policies, load_policy_file, policy_files_in
from .shadow import Shadow

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    proxy: ProxyConfig
    routes: tuple[RouteConfig, ...]
    policies: dict[str, Policy]
    route_files: dict[str, str]
    shadows: dict[str, tuple[Shadow, ...]] = field(default_factory=dict)  # by route name (shadow.py)

    def route(self, name: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.name == name), None)

    @cached_property
    def digest(self) -> str:
        """A short digest of what this config makes a proxy do: proxy.yaml, the routes, and each policy's and
        shadow candidate's digest (policy texts), whatever the file paths. Equal digests: the same config.
        Computed once per loaded config (each /metrics scrape of a fleet reports it)."""
        shape = {
            "proxy": self.proxy.model_dump(mode="json"),
            "routes": [route.model_dump(mode="json") for route in self.routes],
            "policies": sorted((p.id, p.digest) for p in self.policies.values()),
            "shadows": sorted((s.route, s.policy_id, s.candidate.digest, s.sample, s.max_in_flight)
                              for shadows in self.shadows.values() for s in shadows),
        }
        text = json.dumps(shape, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), where, f"invalid YAML: {problem}") from None


def validate(model: type[M], data: Any, file: Path) -> M:
    if not isinstance(data, dict):
        raise ConfigError(str(file), "", "the file must hold a YAML mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"])
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "unknown field (check the spelling)"
        if len(errors) > 1:
            others = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[1:4])
            reason += f" (also: {others})"
        raise ConfigError(str(file), field, reason) from None


def load_config(path: str | Path) -> LoadedConfig:
    path = Path(path)
    proxy = validate(ProxyConfig, read_yaml(path), path)
    base = path.parent
    found = load_policies(proxy, base)
    routes_dir = (base / proxy.routes_dir).resolve()
    if not routes_dir.is_dir():
        raise ConfigError(str(path), "routes_dir", f"{routes_dir} is not a directory")
    route_paths = sorted(routes_dir.glob("*.yaml")) + sorted(routes_dir.glob("*.yml"))
    if not route_paths:
        raise ConfigError(str(routes_dir), "", "no route files (*.yaml) found")
    parsed: list[tuple[Path, RouteConfig]] = []
    for route_path in route_paths:
        data = read_yaml(route_path)
        if isinstance(data, dict):
            data.setdefault("name", route_path.stem)
        parsed.append((route_path, validate(RouteConfig, data, route_path)))
    # Before the policies are indexed: a candidate loaded as an enforced policy too would otherwise be reported
    # as a second policy with its id, which says nothing about the shadow entry that caused it.
    refuse_enforced_candidates(parsed, found, base)
    policies = index_policies(found)
    routes: list[RouteConfig] = []
    route_files: dict[str, str] = {}
    shadows: dict[str, tuple[Shadow, ...]] = {}
    for route_path, route in parsed:
        check_route(route, proxy, policies, route_path)
        if route.name in route_files:
            raise ConfigError(str(route_path), "name", f"route '{route.name}' is also in {route_files[route.name]}")
        routes.append(route)
        route_files[route.name] = str(route_path)
        shadows[route.name] = load_shadows(route, policies, base, route_path)
    check_models_unique(routes, route_files)
    return LoadedConfig(path, proxy, tuple(routes), policies, route_files, shadows)


def load_policies(proxy: ProxyConfig, base: Path) -> list[Policy]:
    found: list[Policy] = []
    for directory in proxy.policies.dirs:
        found += [load_policy_file(p) for p in policy_files_in(base / directory)]
    found += [load_policy_file(base / f) for f in proxy.policies.files]
    if proxy.policies.official_pack:
        root = base / proxy.policies.official_pack
        found += load_official_pack(root)  # its datasets are `validate`'s and `eval`'s, never serving's
    return found


def candidate_path(base: Path, candidate: str) -> Path:
    """A candidate file is named relative to proxy.yaml's directory, like policies.files."""
    return (base / candidate).resolve()


def refuse_enforced_candidates(parsed: list[tuple[Path, RouteConfig]], found: list[Policy], base: Path) -> None:
    """A candidate must not be one of the enforced policy files (inside policies.dirs or in policies.files):
    it would be enforced, and its id would clash with the policy it shadows."""
    enforced = {Path(p.source).resolve(): p for p in found}
    for route_path, route in parsed:
        for i, entry in enumerate(route.shadow):
            path = candidate_path(base, entry.candidate)
            if path in enforced:
                raise ConfigError(str(route_path), f"shadow.{i}.candidate",
                                  f"{path} is also loaded as an enforced policy (it is in policies.dirs or "
                                  f"policies.files); keep candidates apart, e.g. in a candidates/ directory")


def load_shadows(route: RouteConfig, policies: dict[str, Policy], base: Path, file: Path) -> tuple[Shadow, ...]:
    """The route's shadow entries with their candidates loaded and checked against the policies they shadow."""
    rules = {rule.id: rule for rule in route.policies}
    shadows = []
    for i, entry in enumerate(route.shadow):
        where = f"shadow.{i}"
        rule = rules.get(entry.policy)
        if rule is None:
            raise ConfigError(str(file), f"{where}.policy", f"route '{route.name}' does not enforce policy "
                                                            f"'{entry.policy}'; it enforces: {', '.join(rules)}")
        path = candidate_path(base, entry.candidate)
        if not path.is_file():
            raise ConfigError(str(file), f"{where}.candidate", f"no candidate policy file at {path}")
        candidate = load_policy_file(path)  # a malformed candidate: ConfigError naming its file and field
        enforced = policies[entry.policy]
        if candidate.id != enforced.id:
            raise ConfigError(str(file), f"{where}.candidate",
                              f"the candidate's id is '{candidate.id}', not '{enforced.id}': a candidate is a new "
                              f"version of the policy it shadows and keeps its id (its digest tells them apart)")
        if candidate.digest == enforced.digest:
            raise ConfigError(str(file), f"{where}.candidate",
                              f"the candidate's text is the enforced policy's ({enforced.source}); after a "
                              f"promotion, drop the shadow entry")
        too_high = [level for level in rule.levels if level > candidate.max_level]
        if too_high:
            raise ConfigError(str(file), f"{where}.candidate",
                              f"the candidate has levels 1..{candidate.max_level}, but the route's levels for "
                              f"'{enforced.id}' name {too_high}: it could not be promoted as the route stands")
        shadows.append(Shadow(route.name, enforced.id, candidate, entry.sample, entry.max_in_flight))
    return tuple(shadows)


def check_route(route: RouteConfig, proxy: ProxyConfig, policies: dict[str, Policy], file: Path) -> None:
    if route.upstream not in proxy.upstreams:
        raise ConfigError(str(file), "upstream",
                          f"unknown upstream '{route.upstream}'; defined: {', '.join(proxy.upstreams)}")
    if route.classifier not in proxy.classifiers:
        raise ConfigError(str(file), "classifier",
                          f"unknown classifier '{route.classifier}'; defined: {', '.join(proxy.classifiers)}")
    for i, rule in enumerate(route.policies):
        policy = policies.get(rule.id)
        if policy is None:
            known = ", ".join(sorted(policies)) or "none loaded"
            raise ConfigError(str(file), f"policies.{i}.id", f"unknown policy '{rule.id}'; loaded: {known}")
        if route.output.stream_mode == "post" and "output" in rule.phases:
            actions = {action_for(level, rule, policy) for level in range(1, policy.max_level + 1)}
            strict = sorted(a.value for a in actions if a in (Action.BLOCK, Action.REWRITE))
            if strict:
                raise ConfigError(str(file), f"policies.{i}",
                                  f"output.stream_mode 'post' checks after the text was sent, so it cannot "
                                  f"{' or '.join(strict)}; use annotate/log for '{policy.id}' on output, "
                                  f"or stream_mode window/buffer")
        too_high = [level for level in rule.levels if level > policy.max_level]
        if too_high:
            raise ConfigError(str(file), f"policies.{i}.levels",
                              f"policy '{policy.id}' has levels 1..{policy.max_level}; got {too_high}")


def check_models_unique(routes: list[RouteConfig], files: dict[str, str]) -> None:
    owner: dict[str, str] = {}
    for route in routes:
        for model in route.models:
            if model in owner:
                raise ConfigError(files[route.name], "models",
                                  f"model '{model}' is already served by route '{owner[model]}'")
            owner[model] = route.name
