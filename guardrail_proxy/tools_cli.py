"""`guardrail-proxy check`: one text against one policy, to see what a policy edit changes in seconds.

It prints the verdict, label, rationale, reasoning and latency (--json for scripts). The classifier endpoint
comes from the config (--classifier NAME) or from flags, flags winning (tool_flags.py); `eval` is eval_cli.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass, replace

from .classifier import Classification
from .classifier_factory import build_classifier
from .config import ClassifierConfig
from .dataset_rows import ROLES
from .errors import ClassifierError, ConfigError
from .evaluation.endpoint import classifier_config, find_policy, load_wanted_config
from .evaluation.results import Failure
from .evaluation.runner import render_item
from .policies import Policy
from .settings import Settings
from .subjects import Turn
from .tool_flags import add_endpoint_flags, endpoint_flags, guarded


@dataclass(frozen=True)
class Target:
    """What a command resolved its flags to."""

    policies: tuple[Policy, ...]
    classifier: ClassifierConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `check` to the subcommands of cli.build_parser()."""
    check = sub.add_parser("check", help="classify one text against one policy",
                           description="Classify one text (an argument, or stdin) against one policy.")
    check.add_argument("--policy", required=True, help="policy file (ours or an official policy.md) or policy id")
    check.add_argument("--role", choices=ROLES, default="user", help="who wrote the text (default: user)")
    check.add_argument("--context", help="the message before it, shown to the classifier as context")
    check.add_argument("--json", action="store_true", help="one JSON object on stdout")
    check.add_argument("text", nargs="?", help="the text to classify (default: read stdin)")
    add_endpoint_flags(check)
    check.set_defaults(func=cmd_check)


def resolve(specs: list[str], args: argparse.Namespace, settings: Settings) -> Target:
    flags = endpoint_flags(args)
    config = load_wanted_config(specs, flags, settings)
    return Target(tuple(find_policy(spec, config) for spec in specs), classifier_config(flags, config))


@dataclass(frozen=True)
class CheckReport:
    """What `check` prints: as JSON with --json, as aligned lines otherwise."""

    policy: str
    policy_digest: str
    model: str
    reasoning_effort: str
    violation: bool | None = None
    label: str | None = None
    label_name: str | None = None
    severity: int | None = None
    rationale: str | None = None
    reasoning: str | None = None
    raw: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: Failure | None = None


def check_report(policy: Policy, cfg: ClassifierConfig, result: Classification | ClassifierError) -> CheckReport:
    """Pure."""
    base = CheckReport(policy.id, policy.digest, cfg.model, cfg.reasoning_effort)
    if isinstance(result, ClassifierError):
        return replace(base, error=Failure(result.kind, result.message))
    answer = result.answer
    return replace(base, violation=answer.violation, label=answer.label,
                   label_name=policy.labels.get(answer.label or ""), severity=answer.severity,
                   rationale=answer.rationale, reasoning=result.reasoning, raw=result.raw,
                   latency_ms=round(result.latency_ms, 1), prompt_tokens=result.prompt_tokens,
                   completion_tokens=result.completion_tokens)


def check_lines(report: CheckReport) -> list[str]:
    """Pure: the human output of `check`."""
    lines = [f"policy     {report.policy} (digest {report.policy_digest[:12]}), {report.model}"]
    if report.error:
        return [*lines, f"error      {report.error.kind}: {report.error.message}"]
    name = f": {report.label_name}" if report.label_name else ""
    lines.append(f"verdict    {'VIOLATION' if report.violation else 'allowed'} ({report.label}{name})")
    if report.rationale:
        lines.append(f"rationale  {report.rationale}")
    lines.append(f"reasoning  {report.reasoning or '(none returned)'}")
    tokens = (f", {report.prompt_tokens} prompt + {report.completion_tokens} completion tokens"
              if report.prompt_tokens is not None else "")
    lines.append(f"latency    {report.latency_ms or 0:.0f} ms{tokens}")
    return lines


async def run_check(args: argparse.Namespace, settings: Settings) -> int:
    text = args.text if args.text is not None else sys.stdin.read().rstrip("\n")
    if not text.strip():
        raise ConfigError("text", "", "nothing to classify: give the text as an argument or on stdin")
    target = resolve([args.policy], args, settings)
    policy, cfg = target.policies[0], target.classifier
    client = build_classifier(cfg, settings.secret(cfg.api_key_env))
    result: Classification | ClassifierError
    try:
        context = (Turn("user", args.context),) if args.context else ()
        result = await client.classify(policy, render_item(args.role, text, context))
    except ClassifierError as exc:
        result = exc
    finally:
        await client.aclose()
    report = check_report(policy, cfg, result)
    print(json.dumps(asdict(report), ensure_ascii=False) if args.json else "\n".join(check_lines(report)))
    return 1 if report.error else 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    return guarded(lambda: asyncio.run(run_check(args, settings)))
