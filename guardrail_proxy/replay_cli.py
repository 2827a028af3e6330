"""`guardrail-proxy replay`: what a candidate policy would have decided on the traffic the proxy stored.

    guardrail-proxy replay --policy policies/violence-v2.md --since 7d [--route teen] [--out flips.jsonl]

It reads the records of the audit store (the config's, or --db / --dsn-env) where a check of the candidate's
policy id ran and whose text was stored, asks each route's own classifier the candidate's question about
that text (answers are cached like `eval`'s, in --cache-dir), and reports like `eval --compare`: agreement
with the enforced verdicts (by label when both use the candidate's codes, else by decision; the report says
which), the flips with both reasonings, and agreement with the reviewers' labels where they exist (replay.py
compares, replay_report.py writes). Nothing in the store changes.

Exit codes: 0 done; 1 nothing to replay (no stored text in range) or the classifier failed on every item;
2 a usage or config problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from .audit_cli import database, when
from .audit_query import Filters, run_list
from .audit_reviews import run_latest
from .classifier_factory import build_classifier
from .dataset_rows import Example, context_turns
from .errors import ClassifierError, ConfigError
from .evaluation.asker import Asker
from .evaluation.cache import Endpoint, ResultCache
from .evaluation.endpoint import find_policy
from .evaluation.relabel import to_csv, to_jsonl
from .evaluation.results import ItemResult
from .evaluation.runner import Judge, policy_judge, run_items
from .evaluation.terminal import make_console, progress_bar
from .loader import LoadedConfig, load_config
from .policies import Policy
from .replay import Gathered, Item, Replayed, compare, gather
from .replay_report import Scope, flip_rows, report_json, report_lines
from .settings import Settings
from .tool_flags import guarded, positive_int


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser("replay", help="run a candidate policy over stored traffic and report what would change",
                            description="Judge stored traffic with a candidate policy and compare with the "
                                        "verdicts the proxy enforced.")
    replay.add_argument("--policy", required=True, help="the candidate: a policy file (or an id in the config); "
                                                        "its id picks the enforced checks to compare with")
    replay.add_argument("--since", required=True, help="records from this time: 24h, 7d, or 2026-11-29T10:00 (UTC)")
    replay.add_argument("--until", help="records before this time, same forms")
    replay.add_argument("--route", help="only this route's records")
    replay.add_argument("--limit", type=positive_int, default=1000, help="at most N records, newest first (1000)")
    replay.add_argument("--config", help="proxy.yaml: the routes' classifiers, and the store unless --db/--dsn-env")
    replay.add_argument("--db", help="the SQLite audit database itself, instead of the config's")
    replay.add_argument("--dsn-env", help="a variable holding a PostgreSQL connection string, instead of the config")
    replay.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    replay.add_argument("--out", help="write the flips as a dataset to relabel or compare on: .jsonl or .csv")
    replay.add_argument("--concurrency", type=positive_int, default=8, help="classifier calls in flight (8)")
    replay.add_argument("--cache-dir", default=".guardrail-cache", help="answer cache, shared with eval "
                                                                        "(default: .guardrail-cache)")
    replay.add_argument("--flips-max", type=positive_int, default=50, help="flips listed on the terminal (50)")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=cmd_replay)


def example_of(item: Item) -> Example:
    """An item as the eval runner takes it. Its label (never scored here: the runner only asks) is the enforced
    decision, "1" or "0", which reads whatever the enforced policy's labels were."""
    violation = item.enforced.violation
    return Example(item.key, item.text, str(int(violation)), violation, None, item.role,
                   context_turns(list(item.context), "context"), 0)


def candidate_codes(candidate: Policy) -> tuple[str, ...]:
    """The codes a candidate answers in; none for a binary or JSON policy (replay then compares decisions)."""
    return tuple(candidate.labels) if candidate.format == "label" else ()


def classifier_names(items: Sequence[Item], config: LoadedConfig) -> dict[str, str]:
    """route -> the classifier it uses; ConfigError naming routes the config no longer has."""
    routes = sorted({item.route for item in items})
    missing = [name for name in routes if config.route(name) is None]
    if missing:
        raise ConfigError(str(config.path), "routes", f"the stored records name routes this config does not have "
                                                      f"({', '.join(missing)}), so their classifier is unknown: "
                                                      "pass --route to replay another route's records")
    return {name: config.route(name).classifier for name in routes}  # type: ignore[union-attr]


async def judge_all(items: Sequence[Item], candidate: Policy, config: LoadedConfig, settings: Settings,
                    args: argparse.Namespace) -> list[Replayed]:
    """The candidate's answer on every item, each asked of its route's classifier."""
    routes = classifier_names(items, config)
    judges: dict[str, Judge[ItemResult]] = {}
    clients = []
    with ResultCache(Path(args.cache_dir)) as cache:
        try:
            for name in sorted(set(routes.values())):
                cfg = config.proxy.classifiers[name]
                cfg = cfg.model_copy(update={"max_concurrency": max(cfg.max_concurrency, args.concurrency)})
                client = build_classifier(cfg, settings.secret(cfg.api_key_env))
                clients.append(client)
                if problem := await client.ping():
                    raise ClassifierError(f"classifier '{name}': {problem} ({cfg.base_url}); nothing was replayed",
                                          kind="transport")
                asker = Asker(client, cache, Endpoint(cfg.base_url, cfg.model, cfg.reasoning_effort, cfg.max_tokens),
                              args.concurrency)
                judges[name] = policy_judge(asker, candidate)
            by_key = {item.key: item for item in items}

            async def judge(example: Example) -> ItemResult:
                return await judges[routes[by_key[example.id].route]](example)

            console = make_console()
            show = console.is_terminal and not args.quiet and not args.json
            with progress_bar(console, len(items), f"replay {candidate.id}", show) as advance:
                results = await run_items([example_of(i) for i in items], judge, args.concurrency, advance)
        finally:
            for client in clients:
                await client.aclose()
    return [Replayed(by_key[r.example.id], r.prediction, r.failure) for r in results]


def gathered_items(args: argparse.Namespace, settings: Settings, policy_id: str, now: float) -> Gathered:
    filters = Filters(when(args.since, now, "--since"), when(args.until, now, "--until"), args.route, policy_id)
    db, _retention = database(args, settings, readonly=True)
    try:
        return gather(run_list(db, filters, args.limit), policy_id, run_latest(db, policy=policy_id))
    except (sqlite3.Error, psycopg.Error) as exc:
        raise ConfigError("replay", "database", " ".join(str(exc).split())) from None
    finally:
        db.close()


def write_flips(out: Path, rows: list[dict[str, object]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_csv(rows) if out.suffix.lower() == ".csv" else to_jsonl(rows), encoding="utf-8")
    print(f"wrote {len(rows)} flips to {out}", file=sys.stderr)


async def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(str(out), "--out", "the file must end in .csv or .jsonl")
    now = time.time()
    config = load_config(args.config or settings.config_path)
    candidate = find_policy(args.policy, config)
    gathered = gathered_items(args, settings, candidate.id, now)
    scope = Scope(candidate.id, candidate.source, candidate.digest, when(args.since, now, "--since"),
                  when(args.until, now, "--until"))
    if not gathered.items:
        print(f"error: nothing to replay: {gathered.records} records with a check of '{candidate.id}' in range, "
              f"{gathered.no_text} of their items without stored text (the route's audit_content keeps it), "
              f"{gathered.enforced_errors} whose checks all failed", file=sys.stderr)
        return 1
    comparison = compare(await judge_all(gathered.items, candidate, config, settings, args), candidate_codes(candidate))
    if args.json:
        print(json.dumps(report_json(scope, gathered, comparison), ensure_ascii=False, indent=2))
    else:
        print("\n".join(report_lines(scope, gathered, comparison, args.flips_max)))
    if out is not None:
        write_flips(out, flip_rows(comparison, candidate.id))
    if comparison.compared == 0:
        print("error: the classifier failed on every item", file=sys.stderr)
        return 1
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    return guarded(lambda: asyncio.run(run_replay(args, settings)))
