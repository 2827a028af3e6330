"""The `guardrail-proxy` command: serve, demo, and the policy tools."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .app import create_app
from .audit_cli import register as register_audit
from .auth import load_clients, new_key
from .demo import run_demo
from .errors import ConfigError
from .eval_cli import register as register_eval
from .export_cli import register as register_export
from .lint import Limits, lint_path
from .loader import load_config
from .official_pack import load_official_datasets
from .ops import ops_key
from .replay_cli import register as register_replay
from .serving import Serving
from .settings import Settings
from .tool_flags import positive_int
from .tools_cli import register as register_check
from .tracing import require_sdk
from .workers import supervise

Command = Callable[[argparse.Namespace, Settings], int]
HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    config = load_config(args.config or settings.config_path)
    server = config.proxy.server
    # A named but unset key variable stops start-up here, with exit 2, before anything listens.
    load_clients(config.proxy, config.routes, settings, str(config.path))
    ops_key(server, settings, str(config.path))
    require_sdk(config.proxy.tracing, str(config.path))  # the otel extra missing: exit 2, not a traceback
    who = "%(name)s" if args.workers == 1 else "%(name)s[%(process)d]"  # which worker said it
    logging.basicConfig(level=server.log_level.upper(), format=f"%(asctime)s %(levelname)s {who} %(message)s")
    if server.log_level != "debug":
        # The HTTP clients under the openai SDK (httpx2 in openai 3.x) log every request at INFO: one line
        # per classifier call, which buries the proxy's own log. Their warnings still show.
        for name in HTTP_CLIENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    host, port = args.host or server.host, args.port or server.port
    if args.workers > 1:
        return supervise(config, settings, host, port, args.workers)
    return Serving(create_app(config, settings), server, host, port).run()


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo(port=args.port, keep=args.keep)


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """The config first (what serving needs), then the official pack's datasets, reported apart: a dataset
    problem never stops the proxy, but it should not go unnoticed either. Exit 1 on a dataset error."""
    config = load_config(args.config or settings.config_path)
    print(f"{config.path}: ok — {len(config.routes)} route(s), {len(config.policies)} policies")
    for route in config.routes:
        print(f"  route {route.name}: models {', '.join(route.models)}; "
              f"policies {', '.join(r.id for r in route.policies)}")
    if not config.proxy.policies.official_pack:
        return 0
    root = config.path.parent / config.proxy.policies.official_pack
    warnings: list[str] = []
    try:
        sets = load_official_datasets(root, [p for p in config.policies.values() if p.source.startswith(str(root))],
                                      warnings)
    except ConfigError as exc:
        print(f"datasets: error: {exc.message}", file=sys.stderr)
        return 1
    print(f"datasets: {sum(len(v) for v in sets.values())} items in {len(sets)} official set(s)")
    for warning in warnings:
        print(f"datasets: warning: {warning}", file=sys.stderr)
    return 0


def cmd_policy_lint(args: argparse.Namespace, settings: Settings) -> int:
    limits = Limits(min_tokens=args.min_tokens, max_tokens=args.max_tokens)
    findings = [f for path in args.paths for f in lint_path(Path(path), limits)]
    for finding in findings:  # notes (each policy's body length) on stdout, warnings and problems on stderr
        print(finding, file=sys.stdout if finding.kind == "note" else sys.stderr)
    problems = [f for f in findings if f.problem]
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    warnings = sum(f.kind == "warning" for f in findings)
    warned = f" ({warnings} warning(s))" if warnings else ""
    print(f"ok: {', '.join(args.paths)}{warned}")
    return 0


def cmd_keys_new(args: argparse.Namespace, settings: Settings) -> int:
    """A fresh key for a client, and the `clients:` entry that admits it (the key itself is never stored)."""
    key, digest = new_key()
    print(f"key (give it to the client; it is not shown again): {key}", file=sys.stderr)
    routes = ", ".join(args.routes) if args.routes else "'*'"
    print(f"  - name: {args.name}\n    key_sha256: {digest}\n    routes: [{routes}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardrail-proxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="proxy.yaml (default: $GUARDRAIL_PROXY_CONFIG or config/proxy.yaml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=positive_int, default=1,
                       help="processes serving the port, with /metrics for all of them (default: 1)")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="the proxy with stand-in model and classifier: no GPU needed")
    demo.add_argument("--port", type=int, default=0)
    demo.add_argument("--keep", action="store_true", help="stay up after the three sample calls")
    demo.set_defaults(func=cmd_demo)

    validate = sub.add_parser("validate", help="load and check a config without serving")
    validate.add_argument("--config")
    validate.set_defaults(func=cmd_validate)

    policy = sub.add_parser("policy", help="policy tools").add_subparsers(dest="policy_command", required=True)
    lint = policy.add_parser("lint", help="check policy files and their example sets")
    lint.add_argument("paths", nargs="+", help="policy files or directories of policies")
    lint.add_argument("--min-tokens", type=int, default=Limits().min_tokens,
                      help="least body length, estimated as characters / 4 (default: %(default)s)")
    lint.add_argument("--max-tokens", type=int, default=Limits().max_tokens,
                      help="most body length, estimated as characters / 4 (default: %(default)s)")
    lint.set_defaults(func=cmd_policy_lint)

    keys = sub.add_parser("keys", help="client keys").add_subparsers(dest="keys_command", required=True)
    keys_new = keys.add_parser("new", help="make a client key and print its clients: entry for proxy.yaml")
    keys_new.add_argument("--name", required=True, help="the name audit records and metrics show")
    keys_new.add_argument("--routes", nargs="*", default=[], help="route names (default: all)")
    keys_new.set_defaults(func=cmd_keys_new)

    register_check(sub)
    register_eval(sub)
    register_export(sub)
    register_audit(sub)
    register_replay(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_environ()
    func: Command = args.func
    try:
        return func(args, settings)
    except ConfigError as exc:
        print(f"config error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
