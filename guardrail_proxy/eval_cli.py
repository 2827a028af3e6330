"""`guardrail-proxy eval`: a labelled set through a policy or a whole route, or two versions compared.

  eval --policy P                 one policy: metrics, confusion, breakdowns, mistakes with reasoning
  eval --route teen               every policy of a route, as the proxy applies them: "any violation", and
                                  each policy alone
  eval --compare OLD NEW          two policy versions (or --models A B, or --efforts low high): deltas with a
                                  95% interval, McNemar's test, every flip with both answers

Output: results.jsonl, summary.json, report.md (capped) and report.html (one self-contained file) in --out.
The flow: eval_plan.py decides what to run, evaluation/ runs and scores it, this module wires them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from rich.console import Console

from .classifier import Classification
from .classifier_factory import build_classifier
from .dataset_rows import Example
from .errors import ClassifierError
from .eval_plan import Plan, Version, make_plan
from .evaluation.artifacts import default_out_dir, write_outputs
from .evaluation.asker import Asker
from .evaluation.cache import Endpoint, ResultCache
from .evaluation.compare import compare
from .evaluation.export import comparison_summary, result_rows, run_summary
from .evaluation.html_report import comparison_html, run_html
from .evaluation.preflight import preflight_problem
from .evaluation.report import comparison_report, markdown_report
from .evaluation.results import ItemResult
from .evaluation.route_eval import RouteItem, route_judge, split_runs
from .evaluation.runner import classifier_input, policy_judge, run_items
from .evaluation.runs import EvalRun, RunInfo, Timing
from .evaluation.scoring import summarize
from .evaluation.selection import problem_lines
from .evaluation.terminal import make_console, print_comparison, print_outputs, print_run, progress_bar
from .policies import Policy
from .settings import Settings
from .tool_flags import add_endpoint_flags, guarded, positive_int


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = sub.add_parser("eval", help="score a policy or a route on a labelled dataset, or compare two versions",
                              description="Run a labelled dataset through the classifier and score it.")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--policy", help="policy file or policy id")
    which.add_argument("--route", help="a route of the config: every policy it applies, as the proxy does")
    which.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="two policy versions, files or ids")
    other = evaluate.add_mutually_exclusive_group()
    other.add_argument("--models", nargs=2, metavar=("OLD", "NEW"), help="compare two models on one policy/route")
    other.add_argument("--efforts", nargs=2, metavar=("OLD", "NEW"), choices=("low", "medium", "high"),
                       help="compare two reasoning efforts on one policy or route")
    other.add_argument("--combine", action="store_true",
                       help="with --route: compare one call per policy (old) with all policies in one call (new), "
                            "the route's combine_policies; shows its accuracy cost and its calls and tokens saved")
    data = evaluate.add_argument_group("dataset")
    data.add_argument("--dataset", required=True, help=".jsonl, .json (an array) or .csv, optionally .gz; or an "
                                                       "official-pack datasets/<slug>.csv")
    for part in ("text", "label", "id", "role", "context", "categories", "source"):
        data.add_argument(f"--{part}-col", help=f"field or column holding the {part} (default: {part})")
    labels = data.add_mutually_exclusive_group()
    labels.add_argument("--label-map", help="the set's own label words as ours, e.g. safe=0,unsafe=1 or "
                                            "hateful=1,non-hateful=0 (case-insensitive)")
    labels.add_argument("--label", dest="constant_label", help="one label for every item (an all-harmful set: 1)")
    data.add_argument("--skip-invalid", action="store_true", help="score the good rows; list the bad ones at the end")
    data.add_argument("--max-errors", type=int, help="stop when more rows than this are bad (implies skipping)")
    data.add_argument("--limit", type=positive_int, help="only the first N items (after --sample)")
    data.add_argument("--sample", type=positive_int, help="a random N items, in set order")
    data.add_argument("--seed", type=int, default=0, help="seed for --sample (default: 0)")
    run = evaluate.add_argument_group("run and report")
    run.add_argument("--threshold", type=positive_int, default=1,
                     help="count a violation only at severity level >= K (default: 1)")
    run.add_argument("--concurrency", type=positive_int, default=8, help="classifier calls in flight (8)")
    run.add_argument("--cache-dir", default=".guardrail-cache", help="answer cache (default: .guardrail-cache)")
    run.add_argument("--out", help="output directory (default: eval-results/<timestamp>)")
    run.add_argument("--report-max", type=positive_int, default=50,
                     help="mistakes or flips listed per kind in report.md, and in total in report.html (50)")
    run.add_argument("--no-reasoning-ok", action="store_true", help="accept an endpoint that returns no reasoning")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    add_endpoint_flags(evaluate)
    evaluate.set_defaults(func=cmd_eval)


def run_info(version: Version, args: argparse.Namespace, started: datetime, policy: Policy | None = None) -> RunInfo:
    cfg = version.classifier
    name, digest, source = (policy.id, policy.digest, policy.source) if policy else (version.name, version.digest,
                                                                                       version.source)
    return RunInfo(name, digest, source, args.dataset, cfg.model, cfg.reasoning_effort, cfg.base_url,
                   started.isoformat(timespec="seconds"), cfg.max_tokens)


async def preflight(asker: Asker, version: Version, first: Example, args: argparse.Namespace) -> None:
    cfg = version.classifier
    # An endpoint that cannot be reached would fail every item only after its retries: say so at once.
    if problem := await asker.classifier.ping():
        raise ClassifierError(f"{problem} ({cfg.base_url}); nothing was evaluated", kind="transport")
    result: Classification | ClassifierError
    try:
        result = await asker.ask(version.policies[0], classifier_input(first))
    except ClassifierError as exc:
        result = exc
    if problem := preflight_problem(result, cfg.model, cfg.base_url, not args.no_reasoning_ok):
        raise ClassifierError(f"{problem}; nothing was evaluated", kind="transport")


async def run_version(version: Version, plan: Plan, args: argparse.Namespace, settings: Settings,
                      cache: ResultCache, console: Console, started: datetime) -> EvalRun:
    # --concurrency is the user's explicit ask: the client's own cap must not quietly lower it.
    cfg = version.classifier.model_copy(
        update={"max_concurrency": max(version.classifier.max_concurrency, args.concurrency)})
    client = build_classifier(cfg, settings.secret(cfg.api_key_env))
    asker = Asker(client, cache, Endpoint(cfg.base_url, cfg.model, cfg.reasoning_effort, cfg.max_tokens),
                  args.concurrency)
    show = console.is_terminal and not args.quiet
    examples = plan.examples
    try:
        await preflight(asker, version, examples[0], args)
        clock = time.monotonic()
        with progress_bar(console, len(examples), f"{version.title} {version.name}", show) as advance:
            if version.route is None:
                assert version.policy is not None
                results = await run_items(examples, policy_judge(asker, version.policy), args.concurrency, advance)
                items: list[RouteItem] = []
            else:
                judge = route_judge(asker, version.route, version.route_policies, cfg.max_input_chars,
                                    args.threshold)
                items = await run_items(examples, judge, args.concurrency, lambda item: advance(item.route))
                results = [item.route for item in items]
        timing = Timing(time.monotonic() - clock, len(examples), asker.calls)
    finally:
        await client.aclose()
    return scored(version, results, items, args, started, timing)


def scored(version: Version, results: list[ItemResult], items: list[RouteItem], args: argparse.Namespace,
           started: datetime, timing: Timing) -> EvalRun:
    """Pure: a version's results -> its run, with each policy alone for a route."""
    info = run_info(version, args, started)
    if version.route is None:
        assert version.policy is not None
        return EvalRun(info, tuple(results), summarize(results, tuple(version.policy.labels), args.threshold), timing)
    _, per_policy = split_runs(items, version.route)
    parts = tuple(EvalRun(run_info(version, args, started, version.route_policies[pid]), tuple(found),
                          summarize(found, tuple(version.route_policies[pid].labels), args.threshold))
                  for pid, found in per_policy.items() if found)
    summary = replace(summarize(results, (), args.threshold), confusion=None)  # the route answers 0/1
    actions = dict(Counter(item.action for item in items).most_common())
    return EvalRun(info, tuple(results), summary, timing, parts, actions)


async def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    plan = make_plan(args, settings)
    for warning in plan.read.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    started = datetime.now().astimezone()
    out_dir = Path(args.out) if args.out else default_out_dir(started)
    console = make_console()
    with ResultCache(Path(args.cache_dir)) as cache:
        runs = [await run_version(v, plan, args, settings, cache, console, started) for v in plan.versions]
    skipped = [str(p) for p in plan.read.problems]
    warned = list(plan.read.warnings)  # the official layout's unlabelled rows, fields no row has
    if len(runs) == 2:
        old, new = runs
        comparison = compare(old.results, new.results, old.summary, new.summary)
        print_comparison(console, old, new, comparison)
        write_outputs(out_dir, [*result_rows(old, "old"), *result_rows(new, "new")],
                      {**comparison_summary(old, new, comparison), "skipped_rows": skipped, "warnings": warned},
                      comparison_report(old, new, comparison, args.report_max),
                      comparison_html(old, new, comparison, args.report_max))
    else:
        run = runs[0]
        print_run(console, run)
        write_outputs(out_dir, result_rows(run), {**run_summary(run), "skipped_rows": skipped, "warnings": warned},
                      markdown_report(run, args.report_max), run_html(run, args.report_max))
    print_outputs(console, out_dir)
    if skipped:
        print(f"warning: {len(skipped)} bad rows were left out:\n  " + "\n  ".join(problem_lines(plan.read.problems)),
              file=sys.stderr)
    if any(run.summary.metrics.counts.errors == run.summary.items for run in runs):
        print("error: the classifier failed on every item (see report.md)", file=sys.stderr)
        return 1
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    return guarded(lambda: asyncio.run(run_eval(args, settings)))
