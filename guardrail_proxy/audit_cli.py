"""`guardrail-proxy audit`: what did we block, under which policy version, and why.

  audit list    records, newest first, filtered (--since 7d, --route, --policy, --label, --decision, ...)
  audit show    one record: every verdict with its reasoning, the text of each policy version used, the
                reviewers' marks and the shadow (candidate) verdicts
  audit stats   requests per hour or day, by decision and by the policy and label that fired
  audit export  flagged traffic with stored content as a dataset (JSONL/CSV) for `eval`; with --reviewed,
                the reviewed items labelled by the reviewers (review_export.py)
  audit prune   delete records older than the retention period, with their checks, shadow verdicts and marks

It reads the SQLite store named by the config (audit.path) or by --db. A table on a terminal; --json for
scripts. Exit codes: 0 done, 1 nothing found (`show`), 2 a usage or config problem.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .audit_postgres import connect as postgres_connect
from .audit_query import (
    Filters,
    cutoff,
    dataset_rows,
    parse_when,
    run_list,
    run_prune,
    run_show,
    run_stats,
    summary_row,
)
from .audit_reviews import Review
from .audit_sqlite import connect as sqlite_connect
from .audit_store import postgres_dsn, sqlite_path
from .errors import ConfigError
from .evaluation.relabel import to_csv, to_jsonl
from .evaluation.terminal import make_console
from .loader import load_config
from .review_export import run_reviewed_export, run_reviewed_policies
from .settings import Settings
from .tool_flags import guarded, positive_int


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="query the audit store: list, show, stats, export, prune")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="proxy.yaml whose audit store to read (default: $GUARDRAIL_PROXY_CONFIG)")
    common.add_argument("--db", help="the SQLite audit database itself, instead of the config's")
    common.add_argument("--dsn-env", help="a variable holding a PostgreSQL connection string, instead of the config")
    common.add_argument("--json", action="store_true", help="JSON on stdout")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--since", help="from this time: 24h, 7d, or 2026-11-29T10:00 (UTC)")
    filters.add_argument("--until", help="before this time, same forms")
    filters.add_argument("--route")
    filters.add_argument("--policy", help="a check of this policy ran")
    filters.add_argument("--label", help="a check answered this label, e.g. GV2")
    filters.add_argument("--decision", help="allow, log, annotate, rewrite, block, unavailable, none")
    filters.add_argument("--unchecked", action="store_true", help="only fail-open passes")
    filters.add_argument("--flagged", action="store_true", help="only requests not plainly allowed")
    filters.add_argument("--request-id")
    listing = commands.add_parser("list", parents=[common, filters], help="records, newest first")
    listing.add_argument("--limit", type=positive_int, default=50)
    show = commands.add_parser("show", parents=[common], help="one record, with reasoning and policy texts")
    show.add_argument("request_id")
    stats = commands.add_parser("stats", parents=[common, filters], help="counts per period, policy, label")
    stats.add_argument("--per", choices=("hour", "day"), default="day")
    export = commands.add_parser("export", parents=[common, filters], help="stored content as a dataset")
    export.add_argument("--out", required=True, help=".jsonl or .csv")
    export.add_argument("--limit", type=positive_int, default=100_000)
    export.add_argument("--reviewed", action="store_true",
                        help="the reviewed items, labelled by their newest mark, for one policy (--policy)")
    prune = commands.add_parser("prune", parents=[common], help="delete records past the retention period")
    prune.add_argument("--older-than", help="e.g. 30d (default: the config's audit.retention_days)")
    audit.set_defaults(func=cmd_audit)


def database(args: argparse.Namespace, settings: Settings, readonly: bool) -> tuple[Any, float | None]:
    """(an open connection, retention days) from --db, --dsn-env or the config's store."""
    if args.db:
        return sqlite_connect(args.db, readonly=readonly), None
    if args.dsn_env:
        return postgres_connect(postgres_dsn(args.dsn_env, settings, "--dsn-env", ""), readonly=readonly), None
    config = load_config(args.config or settings.config_path)
    audit = config.proxy.audit
    if audit.store == "sqlite":
        return sqlite_connect(sqlite_path(audit), readonly=readonly), audit.retention_days
    if audit.store == "postgres":
        assert audit.dsn_env is not None  # AuditConfig's validator
        dsn = postgres_dsn(audit.dsn_env, settings, str(config.path), "audit.dsn_env")
        return postgres_connect(dsn, readonly=readonly), audit.retention_days
    raise ConfigError(str(config.path), "audit.store", f"is '{audit.store}'; the audit command reads the sqlite or "
                                                      "postgres store (records in a file or a log are read with jq)")


def when(text: str | None, now: float, flag: str) -> float | None:
    try:
        return parse_when(text, now) if text else None
    except ValueError as exc:
        raise ConfigError(flag, "", str(exc)) from None


def filters_of(args: argparse.Namespace, now: float) -> Filters:
    since, until = when(args.since, now, "--since"), when(args.until, now, "--until")
    return Filters(since, until, args.route, args.policy, args.label, args.decision,
                   True if args.unchecked else None, True if args.flagged else None, args.request_id)


def print_table(console: Console, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = [row.get(c) for c in columns]
        table.add_row(*(Text(", ".join(v) if isinstance(v, list) else "" if v is None else str(v)) for v in cells))
    console.print(table)


def show_lines(record: dict[str, Any]) -> list[str]:
    lines = [f"request   {record['request_id']}  route {record.get('route')}  model {record.get('model')}",
             f"outcome   {record.get('decision')} (HTTP {record.get('status')})"
             + (f": {record['error']}" if record.get("error") else "")]
    for phase in record.get("phases", ()):
        for check in phase.get("checks", ()):
            digest = check.get("policy_digest") or ""
            head = f"{phase.get('phase'):<6}    {check.get('policy')} ({digest[:12]}): {check.get('result')}"
            if check.get("result") == "error":
                lines.append(f"{head} {check.get('error_kind')}: {check.get('error')}")
                continue
            lines.append(f"{head} {check.get('label')}" + (f" -> {check['action']}" if check.get("action") else ""))
            if check.get("reasoning"):
                lines.append(f"          reasoning: {check['reasoning']}")
    if record.get("content"):
        lines.append(f"content   {json.dumps(record['content'], ensure_ascii=False)}")
    for digest, policy in (record.get("policies") or {}).items():
        lines.append(f"policy    {digest[:12]}: " + (f"{policy['policy']}, {len(policy['text'])} characters stored"
                                                      if policy else "text not stored"))
    lines += [review_line(Review(**review)) for review in record.get("reviews") or ()]
    for shadow in record.get("shadow_checks") or ():
        lines += shadow_lines(shadow)
    return lines


def review_line(review: Review) -> str:
    when_made = datetime.fromtimestamp(review.ts, UTC).isoformat(timespec="seconds")
    mark = "correct" if review.correct else f"should be {review.label}"
    note = f": {review.note}" if review.note else ""
    return (f"review    {when_made} {review.reviewer}: {review.phase} {review.policy} {review.verdict_label} "
            f"{mark}{note}")


def shadow_lines(shadow: dict[str, Any]) -> list[str]:
    """A candidate policy's verdict beside the enforced one, with the candidate's reasoning."""
    agree = {True: "agrees", False: "DISAGREES", None: "not compared"}[shadow.get("agree")]
    found = f"{shadow.get('result')} {shadow.get('label') or shadow.get('error_kind') or ''}".rstrip()
    enforced = f"{shadow.get('enforced_result')} {shadow.get('enforced_label') or ''}".rstrip()
    lines = [f"shadow    {shadow.get('phase'):<6} {shadow.get('policy')} candidate "
             f"({(shadow.get('candidate_digest') or '')[:12]}): {found}; enforced {enforced}: {agree}"]
    detail = shadow.get("detail")
    if isinstance(detail, dict) and detail.get("reasoning"):
        lines.append(f"          reasoning: {detail['reasoning']}")
    return lines


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.audit_command == "prune":  # it writes: first make sure this is an existing audit database
        database(args, settings, readonly=True)[0].close()
    db, retention = database(args, settings, readonly=args.audit_command != "prune")
    try:
        return answer(args, db, retention, make_console(), time.time())
    except (sqlite3.Error, psycopg.Error) as exc:
        raise ConfigError("audit", "database", " ".join(str(exc).split())) from None
    finally:
        db.close()


def prune(args: argparse.Namespace, db: Any, retention: float | None, now: float) -> int:
    if args.older_than:
        before = when(args.older_than, now, "--older-than") or now
    elif retention is not None:
        before = cutoff(retention, now)
    else:
        raise ConfigError("audit prune", "--older-than", "no retention period: pass --older-than, or set "
                                                         "audit.retention_days")
    deleted = run_prune(db, before)
    print(json.dumps({"deleted": deleted}) if args.json else f"deleted {deleted} records")
    return 0


def answer(args: argparse.Namespace, db: Any, retention: float | None, console: Console, now: float) -> int:
    if args.audit_command == "prune":
        return prune(args, db, retention, now)
    if args.audit_command == "show":
        record = run_show(db, args.request_id)
        if record is None:
            print(f"error: no record with request id {args.request_id}", file=sys.stderr)
            return 1
        print(json.dumps(record, ensure_ascii=False, indent=2) if args.json else "\n".join(show_lines(record)))
        return 0
    filters = filters_of(args, now)
    if args.audit_command == "list":
        rows = [summary_row(r) for r in run_list(db, filters, args.limit)]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        else:
            print_table(console, rows, ("time", "request_id", "route", "status", "decision", "violations", "client"))
        return 0
    if args.audit_command == "stats":
        counts = run_stats(db, filters, args.per)
        if args.json:
            print(json.dumps(counts))
        else:
            print_table(console, counts, ("period", "decision", "policy", "label", "requests"))
        return 0
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(str(out), "--out", "the file must end in .csv or .jsonl")
    if args.reviewed:
        rows = reviewed(db, filters, args.limit)
    else:
        rows = [row for record in run_list(db, filters, args.limit) for row in dataset_rows(record)]
    out.write_text(to_csv(rows) if out.suffix.lower() == ".csv" else to_jsonl(rows), encoding="utf-8")
    print(f"wrote {len(rows)} {'reviewed ' if args.reviewed else ''}dataset rows to {out}", file=sys.stderr)
    return 0


def reviewed(db: Any, filters: Filters, limit: int) -> list[dict[str, Any]]:
    """The reviewed items of one policy: a dataset holds one policy's label codes, so without --policy the
    marks (on records matching the filters) must all be of one policy, else a usage error names them. The
    marks whose text was not stored are counted on stderr."""
    policy = filters.policy
    if policy is None:
        policies = run_reviewed_policies(db, filters)
        if len(policies) > 1:
            raise ConfigError("audit export --reviewed", "--policy", f"the reviews cover several policies "
                                                                     f"({', '.join(policies)}); a dataset holds "
                                                                     "one policy's labels: pass --policy")
        if not policies:
            return []
        policy = policies[0]
    found = run_reviewed_export(db, filters, policy, limit)
    if found.no_text:
        print(f"skipped {found.no_text} marks whose text was not stored (the route's audit_content keeps it)",
              file=sys.stderr)
    return found.rows


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    return guarded(lambda: run_audit(args, settings))
