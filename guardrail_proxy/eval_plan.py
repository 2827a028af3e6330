"""What an `eval` command runs: its versions (one, or two to compare) and its examples.

A version is one policy or one route, on one classifier endpoint. Two versions differ by the policy
(`--compare OLD NEW`), the model (`--models A B`), the reasoning effort (`--efforts A B`) or, for a route,
one call per policy against all of its policies in one call (`--combine`), never by two things at once, so
a compare answers one question. The examples are read once for every policy involved, so a label code that
belongs to neither version is caught before any call is paid for.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field

from .config import ClassifierConfig, RouteConfig
from .dataset_read import DatasetRead
from .dataset_rows import Columns, Example, LabelRule, parse_label_map
from .datasets import ReadOptions, read_dataset
from .errors import ConfigError
from .evaluation.endpoint import classifier_config, find_policy, load_wanted_config
from .evaluation.selection import admit, subset
from .loader import load_config
from .policies import Policy
from .settings import Settings
from .tool_flags import endpoint_flags


@dataclass(frozen=True)
class Version:
    title: str  # "eval", or "old" / "new"
    classifier: ClassifierConfig
    policy: Policy | None = None
    route: RouteConfig | None = None
    route_policies: dict[str, Policy] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.route:
            return f"route {self.route.name}" + (" (policies combined)" if self.route.combine_policies else "")
        return self.policy.id if self.policy else "?"

    @property
    def policies(self) -> tuple[Policy, ...]:
        return tuple(self.route_policies.values()) if self.route else (self.policy,) if self.policy else ()

    @property
    def digest(self) -> str:
        if self.policy and not self.route:
            return self.policy.digest
        joined = "\n".join(p.digest for p in self.policies)
        if self.route and self.route.combine_policies:
            joined += "\ncombined"  # other prompts, other answers
        return hashlib.sha256(joined.encode()).hexdigest()

    @property
    def source(self) -> str:
        return self.policy.source if self.policy and not self.route else ", ".join(p.source for p in self.policies)


@dataclass(frozen=True)
class Plan:
    versions: tuple[Version, ...]
    examples: tuple[Example, ...]
    read: DatasetRead


def read_options(args: argparse.Namespace) -> ReadOptions:
    names = {"text": args.text_col, "label": args.label_col, "id": args.id_col, "role": args.role_col,
             "context": args.context_col, "categories": args.categories_col, "source": args.source_col}
    columns = Columns(**{k: v for k, v in names.items() if v})
    if args.label_map:
        try:
            return ReadOptions(columns, LabelRule(mapping=parse_label_map(args.label_map)))
        except ValueError as exc:
            raise ConfigError("--label-map", "", str(exc)) from None
    return ReadOptions(columns, LabelRule(constant=args.constant_label))


def route_version(args: argparse.Namespace, settings: Settings) -> Version:
    """A route always comes from a config: --config, else the default config path."""
    config = load_config(args.config or settings.config_path)
    route = config.route(args.route)
    if route is None:
        known = ", ".join(r.name for r in config.routes) or "none"
        raise ConfigError(str(config.path), "--route", f"no route named '{args.route}' (routes: {known})")
    classifier = classifier_config(endpoint_flags(args, route.classifier), config)
    return Version("eval", classifier, route=route,
                   route_policies={rule.id: config.policies[rule.id] for rule in route.policies})


def base_versions(args: argparse.Namespace, settings: Settings) -> list[Version]:
    if args.route:
        return [route_version(args, settings)]
    specs = list(args.compare) if args.compare else [args.policy]
    config = load_wanted_config(specs, endpoint_flags(args), settings)
    cfg = classifier_config(endpoint_flags(args), config)
    policies = [find_policy(spec, config) for spec in specs]
    if len(policies) == 2:
        return [Version("old", cfg, policy=policies[0]), Version("new", cfg, policy=policies[1])]
    return [Version("eval", cfg, policy=policies[0])]


def combined_versions(base: Version) -> list[Version]:
    """--combine: the route with one call per policy (old) against all of its policies in one call (new)."""
    assert base.route is not None
    return [Version(title, base.classifier, route=base.route.model_copy(update={"combine_policies": combine}),
                    route_policies=base.route_policies) for title, combine in (("old", False), ("new", True))]


def versions_of(args: argparse.Namespace, settings: Settings) -> list[Version]:
    versions = base_versions(args, settings)
    pair = ("model", args.models) if args.models else ("reasoning_effort", args.efforts) if args.efforts else None
    if args.combine:
        if not args.route:
            raise ConfigError("--combine", "", "--combine compares a route's policies asked one call each with all "
                                               "of them in one call: name the route with --route")
        return combined_versions(versions[0])
    if pair is None:
        return versions
    if len(versions) == 2:
        raise ConfigError("--compare", "", "compare one thing at a time: two policies, two models or two efforts")
    name, (old, new) = pair
    base = versions[0]
    return [Version(title, base.classifier.model_copy(update={name: value}), base.policy, base.route,
                    base.route_policies) for title, value in (("old", old), ("new", new))]


def read_for(versions: list[Version], args: argparse.Namespace) -> DatasetRead:
    """One read per distinct policy that owns label codes (one with policy None for a route); every read's
    bad rows count, and the examples are those every read kept (an official row may give two items, one of
    them bad: the other is kept)."""
    options = read_options(args)
    owners: list[Policy | None] = [*{p.digest: p for v in versions if not v.route for p in v.policies}.values()]
    owners = owners or [None]
    reads = [read_dataset(args.dataset, policy=p, options=options) for p in owners]
    problems = list({str(p): p for r in reads for p in r.problems}.values())
    kept = set.intersection(*({e.id for e in r.examples} for r in reads))
    last = reads[-1]
    return DatasetRead(last.source, tuple(e for e in last.examples if e.id in kept),
                       tuple(sorted(problems, key=lambda p: p.line or 0)),
                       tuple(dict.fromkeys(w for r in reads for w in r.warnings)))


def make_plan(args: argparse.Namespace, settings: Settings) -> Plan:
    versions = versions_of(args, settings)
    read = read_for(versions, args)
    examples = subset(admit(read, args.skip_invalid, args.max_errors), args.limit, args.sample, args.seed)
    return Plan(tuple(versions), tuple(examples), read)

