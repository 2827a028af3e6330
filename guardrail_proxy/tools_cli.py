"""`guardrail-proxy check` and `guardrail-proxy eval`: see what a policy edit changes, in minutes.

check    one text against one policy: verdict, label, rationale, reasoning, latency (--json for scripts)
eval     a labelled dataset against a policy (or --compare OLD NEW): metrics, confusion, flips, report.md

Both read the classifier endpoint from the config (--classifier NAME) or from flags, flags winning.
Exit codes: 0 done; 1 the classifier is unreachable or failed on every item; 2 a usage, config, policy or dataset error,
reported in one line naming the file and line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from rich.console import Console

from .classifier import Classification
from .classifier_factory import build_classifier
from .config import ClassifierConfig
from .dataset_rows import ROLES, LabelRule, parse_label_map
from .datasets import load_dataset
from .errors import ClassifierError, ConfigError
from .evaluation.artifacts import default_out_dir, write_outputs
from .evaluation.cache import ResultCache
from .evaluation.compare import compare
from .evaluation.endpoint import EndpointFlags, classifier_config, find_policy, load_wanted_config
from .evaluation.export import comparison_summary, result_rows, run_summary
from .evaluation.report import comparison_report, markdown_report
from .evaluation.results import Failure
from .evaluation.runner import RunOptions, render_item, run_examples
from .evaluation.runs import EvalRun, RunInfo
from .evaluation.scoring import summarize
from .evaluation.terminal import make_console, print_comparison, print_outputs, print_run, progress_bar
from .policies import Policy
from .settings import Settings


@dataclass(frozen=True)
class Target:
    """What a command resolved its flags to."""

    policies: tuple[Policy, ...]
    classifier: ClassifierConfig


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def add_endpoint_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("classifier endpoint (flags override the config's classifier)")
    group.add_argument("--config", help="proxy.yaml (default: $GUARDRAIL_PROXY_CONFIG or config/proxy.yaml)")
    group.add_argument("--classifier", default="default", help="classifier name in the config (default: default)")
    group.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    group.add_argument("--model", help="model name at the endpoint")
    group.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    group.add_argument("--reasoning-effort", choices=("low", "medium", "high"))
    group.add_argument("--timeout-s", type=float, help="deadline per classification, retries included")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `check` and `eval` to the subcommands of cli.build_parser()."""
    check = sub.add_parser("check", help="classify one text against one policy",
                           description="Classify one text (an argument, or stdin) against one policy.")
    check.add_argument("--policy", required=True, help="policy file (ours or an official policy.md) or policy id")
    check.add_argument("--role", choices=ROLES, default="user", help="who wrote the text (default: user)")
    check.add_argument("--context", help="the message before it, shown to the classifier as context")
    check.add_argument("--json", action="store_true", help="one JSON object on stdout")
    check.add_argument("text", nargs="?", help="the text to classify (default: read stdin)")
    add_endpoint_flags(check)
    check.set_defaults(func=cmd_check)

    evaluate = sub.add_parser("eval", help="score a policy on a labelled dataset, or compare two versions",
                              description="Run a labelled dataset through the classifier and score it.")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--policy", help="policy file or policy id")
    which.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="two policy versions, files or ids")
    evaluate.add_argument("--dataset", required=True, help=".jsonl, .csv, or an official-pack datasets/<slug>.csv")
    evaluate.add_argument("--text-col", help="CSV column holding the text (default: text)")
    evaluate.add_argument("--label-col", help="CSV column holding the label (default: label)")
    evaluate.add_argument("--id-col", help="CSV column holding the item id (default: id)")
    labels = evaluate.add_mutually_exclusive_group()
    labels.add_argument("--label-map", help="the set's own label words as ours, e.g. safe=0,unsafe=1 or "
                                            "hateful=1,non-hateful=0 (case-insensitive)")
    labels.add_argument("--label", dest="constant_label", help="one label for every item (an all-harmful set: 1)")
    evaluate.add_argument("--concurrency", type=positive_int, default=8, help="classifier calls in flight (8)")
    evaluate.add_argument("--cache-dir", default=".guardrail-cache", help="answer cache (default: .guardrail-cache)")
    evaluate.add_argument("--out", help="output directory (default: eval-results/<timestamp>)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_endpoint_flags(evaluate)
    evaluate.set_defaults(func=cmd_eval)


def endpoint_flags(args: argparse.Namespace) -> EndpointFlags:
    return EndpointFlags(args.config, args.classifier, args.base_url, args.model, args.api_key_env,
                         args.reasoning_effort, args.timeout_s)


def resolve(specs: list[str], args: argparse.Namespace, settings: Settings) -> Target:
    flags = endpoint_flags(args)
    config = load_wanted_config(specs, flags, settings)
    return Target(tuple(find_policy(spec, config) for spec in specs), classifier_config(flags, config))


def guarded(action: Callable[[], int]) -> int:
    """Expected failures become one line on stderr and exit 2; an interrupt keeps what is cached."""
    try:
        return action()
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClassifierError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: answers so far are cached; run the same command again to resume", file=sys.stderr)
        return 130


# check ---------------------------------------------------------------------------------------------------

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
        result = await client.classify(policy, render_item(args.role, text, args.context))
    except ClassifierError as exc:
        result = exc
    finally:
        await client.aclose()
    report = check_report(policy, cfg, result)
    print(json.dumps(asdict(report), ensure_ascii=False) if args.json else "\n".join(check_lines(report)))
    return 1 if report.error else 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    return guarded(lambda: asyncio.run(run_check(args, settings)))


# eval ----------------------------------------------------------------------------------------------------

def label_rule(args: argparse.Namespace) -> LabelRule:
    if args.label_map:
        try:
            return LabelRule(mapping=parse_label_map(args.label_map))
        except ValueError as exc:
            raise ConfigError("--label-map", "", str(exc)) from None
    return LabelRule(constant=args.constant_label)


async def run_versions(target: Target, args: argparse.Namespace, settings: Settings, console: Console,
                       started: datetime) -> list[EvalRun]:
    # --concurrency is the user's explicit ask: the client's own cap must not quietly lower it.
    cfg = target.classifier.model_copy(
        update={"max_concurrency": max(target.classifier.max_concurrency, args.concurrency)})
    # Validating labels against every version catches a compare of two different policies' codes early.
    warnings: list[str] = []
    rule = label_rule(args)
    examples = [load_dataset(args.dataset, text_col=args.text_col, label_col=args.label_col, id_col=args.id_col,
                             policy=policy, warnings=warnings, labels=rule) for policy in target.policies][-1]
    for warning in dict.fromkeys(warnings):  # once, though each policy version read the set
        print(f"warning: {warning}", file=sys.stderr)
    options = RunOptions(cfg.model, cfg.reasoning_effort, args.concurrency)
    show_progress = console.is_terminal and not args.quiet
    titles = ("old", "new") if len(target.policies) == 2 else ("eval",)
    runs: list[EvalRun] = []
    with ResultCache(Path(args.cache_dir)) as cache:
        client = build_classifier(cfg, settings.secret(cfg.api_key_env))
        try:
            # An endpoint that cannot be reached would fail every item only after its retries: say so at once.
            if problem := await client.ping():
                raise ClassifierError(f"{problem} ({cfg.base_url}); nothing was evaluated", kind="transport")
            for title, policy in zip(titles, target.policies, strict=True):
                with progress_bar(console, len(examples), f"{title} {policy.id}", show_progress) as on_result:
                    results = await run_examples(client, policy, examples, cache, options, on_result)
                info = RunInfo(policy.id, policy.digest, policy.source, args.dataset, cfg.model,
                               cfg.reasoning_effort, cfg.base_url, started.isoformat(timespec="seconds"))
                runs.append(EvalRun(info, tuple(results), summarize(results, tuple(policy.labels))))
        finally:
            await client.aclose()
    return runs


async def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    specs = list(args.compare) if args.compare else [args.policy]
    target = resolve(specs, args, settings)
    started = datetime.now().astimezone()
    out_dir = Path(args.out) if args.out else default_out_dir(started)
    console = make_console()
    runs = await run_versions(target, args, settings, console, started)
    if len(runs) == 2:
        old, new = runs
        comparison = compare(old.results, new.results, old.summary, new.summary)
        print_comparison(console, old, new, comparison)
        write_outputs(out_dir, [*result_rows(old, "old"), *result_rows(new, "new")],
                      comparison_summary(old, new, comparison), comparison_report(old, new, comparison))
    else:
        print_run(console, runs[0])
        write_outputs(out_dir, result_rows(runs[0]), run_summary(runs[0]), markdown_report(runs[0]))
    print_outputs(console, out_dir)
    if any(run.summary.metrics.counts.errors == run.summary.items for run in runs):
        print("error: the classifier failed on every item (see report.md)", file=sys.stderr)
        return 1
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    return guarded(lambda: asyncio.run(run_eval(args, settings)))
