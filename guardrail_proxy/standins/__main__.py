"""Run one STAND-IN server in the foreground (benchmarks, manual tries). Not a model, not a classifier.

    python -m guardrail_proxy.standins safeguard --port 18001 --delay-ms 50 --trigger "skip meals" --level 2
    python -m guardrail_proxy.standins upstream --port 18000 --tokens 200 --chunk-delay-ms 5

Binds to 127.0.0.1 only. Once listening it prints one line, starting with "STAND-IN", that names the
URL (with the real port when --port is 0). Besides the app's own routes it serves `GET /stats`
(request counters) and `POST /stats` (read and zero them). Only the last few request bodies are kept,
so a long benchmark does not grow the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .safeguard import Rule, SafeguardBehaviour, build_safeguard_app
from .upstream import UpstreamBehaviour, build_upstream_app

WORDS = ("the", "river", "was", "calm", "and", "bright", "under", "a", "wide", "morning", "sky", "while",
         "birds", "sang", "softly", "near", "old", "stone", "bridge", "today")


class CountingList(list[dict[str, Any]]):
    """A request log that counts every append but keeps only the newest `keep` entries."""

    def __init__(self, keep: int = 16) -> None:
        super().__init__()
        self.keep = keep
        self.total = 0

    def append(self, item: dict[str, Any]) -> None:
        self.total += 1
        super().append(item)
        if len(self) > self.keep:
            del self[: len(self) - self.keep]


def words_reply(count: int) -> str:
    """A harmless reply of `count` words (one SSE chunk per word when streamed)."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(count))


def add_stats(app: Starlette, counters: Any) -> None:
    """GET /stats: counters; POST /stats: counters, then zero them."""

    async def stats(request: Request) -> Response:
        log: CountingList = counters.requests
        body: dict[str, Any] = {"requests": log.total}
        for name in ("completed", "cancelled"):
            if hasattr(counters, name):
                body[name] = getattr(counters, name)
        body.update(getattr(counters, "tokens", {}))
        if request.method == "POST":
            log.total = 0
            log.clear()
            for name in ("completed", "cancelled"):
                if hasattr(counters, name):
                    setattr(counters, name, 0)
            for name in getattr(counters, "tokens", {}):
                counters.tokens[name] = 0
        return JSONResponse(body)

    app.router.routes.append(Route("/stats", stats, methods=["GET", "POST"]))


def build(args: argparse.Namespace) -> Starlette:
    app: Starlette
    if args.kind == "safeguard":
        rules = [Rule(args.trigger, args.level, policy=args.trigger_policy)] if args.trigger else []
        sg = SafeguardBehaviour(rules=rules, delay_s=args.delay_ms / 1000, requests=CountingList(),
                                usage=args.usage, reasoning_tokens=args.reasoning_tokens)
        app = build_safeguard_app(sg)
        add_stats(app, sg)
        return app
    reply = args.reply if args.reply is not None else words_reply(args.tokens) if args.tokens else None
    up = UpstreamBehaviour(replies={"": reply} if reply is not None else {}, delay_s=args.delay_ms / 1000,
                           chunk_delay_s=args.chunk_delay_ms / 1000, requests=CountingList())
    app = build_upstream_app(up)
    add_stats(app, up)
    return app


def describe(args: argparse.Namespace, url: str) -> str:
    if args.kind == "safeguard":
        rule = f"'{args.trigger}' -> level {args.level}" if args.trigger else "none (everything allowed)"
        return (f"STAND-IN safeguard classifier (keyword rules, not a model) at {url}/v1; "
                f"delay {args.delay_ms:g} ms; rule: {rule}")
    reply = ("--reply text" if args.reply is not None else f"{args.tokens} words" if args.tokens
             else "echo of the prompt")
    return (f"STAND-IN chat upstream (fixed text, not a model) at {url}/v1; reply: {reply}; "
            f"delay {args.delay_ms:g} ms; chunk delay {args.chunk_delay_ms:g} ms")


async def serve(args: argparse.Namespace) -> None:
    config = uvicorn.Config(build(args), host="127.0.0.1", port=args.port, log_level="warning",
                            access_log=False, lifespan="on", timeout_keep_alive=75)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(describe(args, f"http://127.0.0.1:{port}"), flush=True)
    await task


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m guardrail_proxy.standins", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--port", type=int, required=True, help="0 picks a free port (printed)")
    common.add_argument("--delay-ms", type=non_negative, default=0.0, help="wait before answering")

    sg = sub.add_parser("safeguard", parents=[common], help="stand-in for a vLLM-served gpt-oss-safeguard")
    sg.add_argument("--trigger", help="text that makes the stand-in report a violation")
    sg.add_argument("--level", type=int, default=2, help="severity reported for --trigger (default 2)")
    sg.add_argument("--trigger-policy", help="only for policies whose text contains this (e.g. a label code)")
    sg.add_argument("--usage", choices=("fixed", "chars"), default="fixed",
                    help="fixed: 100 + 20 tokens per call; chars: estimated from the text, prefix cache modelled")
    sg.add_argument("--reasoning-tokens", type=int, default=0,
                    help="with --usage chars: reasoning words per policy judged (a real model: hundreds)")

    up = sub.add_parser("upstream", parents=[common], help="stand-in for an OpenAI-compatible chat model")
    up.add_argument("--chunk-delay-ms", type=non_negative, default=0.0, help="wait before each streamed word")
    text = up.add_mutually_exclusive_group()
    text.add_argument("--reply", help="answer every request with this text")
    text.add_argument("--tokens", type=int, default=0, help="answer every request with this many words")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
