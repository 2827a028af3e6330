"""Classifier economics: what one teen-route conversation turn costs in classifier calls and tokens, and its TTFT.

A scripted 5-turn conversation (user turns of 40 to 300 characters, streamed replies of --reply-words words, about
1,500 characters) runs through the shipped teen route (six policies, input scope `all`, output in windows) on
one proxy process per variant, each with its own verdict cache and relayed-reply memory:

  today      the route as it was before the economics levers: fixed 400-character windows, every assistant turn
             judged again as history (first_window_chars = window_chars, input.trust_relayed false)
  levers     the defaults now: growing windows (48 characters, then x4 up to 800) and relayed replies trusted
  combined   levers plus combine_policies: all six policies judged in one call per text (opt-in; its accuracy
             cost is measured with `guardrail-proxy eval --combine`, not here)

The stand-in classifier (`--usage chars`) reports tokens estimated as characters / 4, --reasoning-tokens of
reasoning per policy judged, and a system prompt it has seen before as cached prompt tokens (vLLM's prefix
cache). Per turn: classifier calls, prompt / cached / completion tokens, TTFT, and the decision the client saw
(finish_reason and the guardrail annotation), which must be the same in every variant. Exit 1 if not.
Writes bench/results/conversation-<time>.json; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import openai
import yaml

TURNS = (
    "hey! can you help me plan a birthday picnic for my friend this weekend?",
    "cool. she loves skateboarding, so what are some fun things we could do at the skate park? "
    "nothing too crazy, we're both beginners and her mom will be there.",
    "what snacks are easy to bring? one friend is vegetarian and another can't have nuts. we have about "
    "twenty dollars in total and no fridge, so it has to survive a few hours in a backpack on a warm day. "
    "also any ideas for a cheap present?",
    "ok and a game for six people?",
    "last thing: can you write a short, funny birthday message for the card? she likes cats, tacos and "
    "bad puns, and she just got into the school band on trumpet, which she is very proud of.",
)
VARIANTS = {
    "today": {"input": {"scope": "all", "context_turns": 2, "trust_relayed": False},
              "output": {"context_turns": 1, "window_chars": 400, "first_window_chars": 400}},
    "levers": {"input": {"scope": "all", "context_turns": 2}, "output": {"context_turns": 1}},
    "combined": {"input": {"scope": "all", "context_turns": 2}, "output": {"context_turns": 1},
                 "combine_policies": True},
}
FIRST_WINDOW = 48  # the default first_window_chars (levers and combined)
COUNTERS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens")


def teen_route(variant: dict[str, Any]) -> dict[str, Any]:
    shipped = yaml.safe_load((harness.REPO / "config" / "routes" / "teen.yaml").read_text())
    route = {key: shipped[key] for key in ("fail_mode", "block_style", "policies")}
    return {**route, "upstream": "openai", **variant}


def turn(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> tuple[str, float, str, bool]:
    """(reply text, TTFT in ms, finish_reason, annotated) of one streamed turn."""
    started = time.perf_counter()
    ttft, text, finish, annotated = float("nan"), [], "", False
    for event in client.chat.completions.create(model=model, messages=messages, stream=True):  # type: ignore[arg-type]
        annotated = annotated or bool((event.model_extra or {}).get("guardrail"))
        for choice in event.choices:
            if choice.delta.content:
                if ttft != ttft:
                    ttft = (time.perf_counter() - started) * 1000
                text.append(choice.delta.content)
            finish = choice.finish_reason or finish
    return "".join(text), ttft, finish, annotated


def conversation(client: openai.OpenAI, model: str, stats_url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, str]] = []
    turns = []
    for number, text in enumerate(TURNS, 1):
        harness.http_json(stats_url, method="POST")  # zero the classifier's counters
        messages.append({"role": "user", "content": text})
        reply, ttft, finish, annotated = turn(client, model, messages)
        counters = harness.http_json(stats_url)
        messages.append({"role": "assistant", "content": reply})
        turns.append({"turn": number, "user_chars": len(text), "reply_chars": len(reply), "ttft_ms": ttft,
                      "decision": f"{finish}{' +annotation' if annotated else ''}",
                      **{name: counters.get(name, 0) for name in COUNTERS}})
    return turns


def summary(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per turn: calls and decision (the same every round: checked), token counts and TTFT as medians."""
    first = rounds[0]
    for other in rounds[1:]:
        for a, b in zip(first, other, strict=True):
            if a["decision"] != b["decision"] or a["requests"] != b["requests"]:
                sys.exit(f"turn {a['turn']}: calls or decision differ between rounds: {a} vs {b}")
    return [{**t, **{k: statistics.median(r[i][k] for r in rounds) for k in ("ttft_ms", *COUNTERS[1:])}}
            for i, t in enumerate(first)]


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| variant | turn | calls | prompt tokens | of them cached | completion tokens | TTFT ms | decision |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, turns in results.items():
        for t in turns:
            lines.append(f"| {name} | {t['turn']} | {t['requests']} | {harness.fmt(t['prompt_tokens'])} | "
                         f"{harness.fmt(t['cached_tokens'])} | {harness.fmt(t['completion_tokens'])} | "
                         f"{t['ttft_ms']:.0f} | {t['decision']} |")
    lines += ["", "| variant | calls / turn | prompt tokens / turn | uncached prompt / turn | completion / turn | "
                  "TTFT median ms | calls vs today | all tokens vs today |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    base = totals(results["today"])
    for name, turns in results.items():
        mine = totals(turns)
        n = len(turns)
        lines.append(f"| {name} | {mine['requests'] / n:.1f} | {harness.fmt(mine['prompt_tokens'] / n)} | "
                     f"{harness.fmt((mine['prompt_tokens'] - mine['cached_tokens']) / n)} | "
                     f"{harness.fmt(mine['completion_tokens'] / n)} | "
                     f"{statistics.median(t['ttft_ms'] for t in turns):.0f} | "
                     f"{change(mine['requests'], base['requests'])} | {change(tokens(mine), tokens(base))} |")
    return "\n".join(lines)


def totals(turns: list[dict[str, Any]]) -> dict[str, int]:
    return {name: sum(t[name] for t in turns) for name in COUNTERS}


def tokens(counts: dict[str, int]) -> int:
    return counts["prompt_tokens"] + counts["completion_tokens"]


def change(value: float, base: float) -> str:
    return f"{(value - base) / base * 100:+.0f}%" if base else "-"


def direct_first_window_ms(upstream: str, chars: int, rounds: int) -> float:
    """The model alone (no proxy): median time from the request to `chars` characters of streamed content, the
    first part of the TTFT target (model writes the first window + one classifier latency + 10 ms)."""
    client = openai.OpenAI(base_url=f"{upstream}/v1", api_key="bench", max_retries=0, timeout=60)
    samples = []
    for _ in range(rounds):
        started, seen = time.perf_counter(), 0
        for event in client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                    stream=True):
            seen += sum(len(c.delta.content or "") for c in event.choices)
            if seen >= chars:
                samples.append((time.perf_counter() - started) * 1000)
                break
    return statistics.median(samples)


def run_variant(procs: harness.Processes, directory: Path, name: str, variant: dict[str, Any], upstream: str,
                a: argparse.Namespace) -> list[dict[str, Any]]:
    _, classifier = procs.standin("classifier", "safeguard", "--delay-ms", str(a.classifier_delay_ms),
                                  "--trigger", "skate park", "--level", "1", "--trigger-policy", "DC0",
                                  "--usage", "chars", "--reasoning-tokens", str(a.reasoning_tokens))
    config = harness.write_proxy_config(directory, {name: teen_route(variant)}, classifier,
                                        {"openai": harness.openai_upstream(upstream)})
    _, url = procs.proxy(f"proxy-{name}", config)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=60)
    return conversation(client, f"bench-{name}", f"{classifier}/stats")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reply-words", type=int, default=260, help="words per streamed reply (default 260, ~1,500 chars)")
    p.add_argument("--chunk-delay-ms", type=float, default=5.0, help="model: ms per streamed word (5)")
    p.add_argument("--classifier-delay-ms", type=float, default=50.0, help="classifier: ms per call (50)")
    p.add_argument("--reasoning-tokens", type=int, default=150, help="stand-in reasoning per policy judged (150)")
    p.add_argument("--rounds", type=int, default=3, help="conversations per variant (TTFT is their median)")
    p.add_argument("--quick", action="store_true", help="one round, shorter replies")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.reply_words = 1, 120
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-conversation-") as tmp:
        shared = harness.Processes(Path(tmp))
        try:
            _, upstream = shared.standin("upstream", "upstream", "--tokens", str(a.reply_words),
                                         "--chunk-delay-ms", str(a.chunk_delay_ms))
            first_window = direct_first_window_ms(upstream, FIRST_WINDOW, 5)
            for round_number in range(a.rounds):
                for name, variant in VARIANTS.items():
                    # Fresh processes each time: a warm answer cache or prefix cache would make a round free.
                    directory = Path(tmp) / f"{name}-{round_number}"
                    directory.mkdir()
                    procs = harness.Processes(directory)
                    try:
                        runs[name].append(run_variant(procs, directory, name, variant, upstream, a))
                    finally:
                        procs.stop_all()
        finally:
            shared.stop_all()
    results = {name: summary(rounds) for name, rounds in runs.items()}
    decisions = {name: [t["decision"] for t in turns] for name, turns in results.items()}
    print(table(results))
    target = first_window + a.classifier_delay_ms + 10
    print(f"\nTTFT target (window mode): the model alone writes the first {FIRST_WINDOW} characters in "
          f"{first_window:.0f} ms (median of 5) + one classifier latency ({a.classifier_delay_ms:g} ms) + 10 ms = "
          f"{target:.0f} ms; measured (median over turns): " + ", ".join(
              f"{name} {statistics.median(t['ttft_ms'] for t in turns):.0f} ms" for name, turns in results.items()))
    out = harness.REPO / "bench" / "results" / f"conversation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": harness.machine(), "args": vars(a), "direct_first_window_ms": first_window,
                               "ttft_target_ms": target, "results": results}, indent=2))
    print(f"\nwrote {out.relative_to(harness.REPO)}")
    if len({tuple(d) for d in decisions.values()}) != 1:
        sys.exit(f"decisions differ between variants: {decisions}")


if __name__ == "__main__":
    main()
