"""Runs -> rich tables on the console, and the progress bar.

The terminal shows the numbers and every flipped verdict; the full false-positive / false-negative list
with reasoning goes to report.md, where it can be read and diffed. Markup is off for user text, so a
dataset line with "[bold]" in it prints as written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .compare import Comparison, shown
from .formatting import delta, ms, one_line, ratio
from .results import ItemResult, outcome_of
from .runner import OnResult
from .runs import EvalRun, Timing
from .scoring import Summary

LISTED_MISTAKES = 10
LISTED_FLIPS = 30
PIPED_WIDTH = 120  # rich assumes 80 columns off a terminal, which wraps every table in a log file


def make_console() -> Console:
    console = Console()
    if not console.is_terminal:
        console.width = PIPED_WIDTH
    return console


class SpeedColumn(ProgressColumn):
    """Items per second, as rich measures it over the last seconds."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} items/s" if task.speed else "- items/s")


@contextmanager
def progress_bar(console: Console, total: int, title: str, enabled: bool) -> Iterator[OnResult]:
    """A callback that advances a bar; a no-op when disabled (not a TTY, or --quiet)."""
    if not enabled:
        yield lambda _result: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("cached {task.fields[hits]} · errors {task.fields[errors]}"), SpeedColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(title, total=total, hits=0, errors=0)

        def advance(result: ItemResult) -> None:
            fields = progress.tasks[task].fields
            progress.update(task, advance=1, hits=fields["hits"] + int(result.cached),
                            errors=fields["errors"] + int(result.failure is not None))

        yield advance


def metrics_table(summary: Summary) -> Table:
    m, c = summary.metrics, summary.metrics.counts
    table = Table()
    for name in ("precision", "recall", "F1", "accuracy", "TP", "FP", "FN", "TN", "errors"):
        table.add_column(name, justify="right")
    table.add_row(ratio(m.precision), ratio(m.recall), ratio(m.f1), ratio(m.accuracy), str(c.tp), str(c.fp),
                  str(c.fn), str(c.tn), str(c.errors))
    return table


def confusion_table(summary: Summary) -> Table | None:
    confusion = summary.confusion
    if confusion is None:
        return None
    table = Table()
    table.add_column("expected")
    for label in confusion.labels:
        table.add_column(label, justify="right")
    for expected in confusion.labels:
        table.add_row(expected, *(str(confusion.counts[expected][p]) for p in confusion.labels))
    return table


def latency_line(summary: Summary) -> str:
    lat = summary.latency
    return f"latency p50 {ms(lat.p50)} · p90 {ms(lat.p90)} · p99 {ms(lat.p99)}"


def tokens_text(summary: Summary) -> str:
    usage = summary.usage
    if not usage.reported:
        return "tokens not reported by the endpoint"
    return f"tokens {usage.prompt_tokens} prompt + {usage.completion_tokens} completion"


def cache_text(summary: Summary) -> str:
    return f"cache {summary.cache_hits} hits, {summary.cache_misses} misses"


def errors_lines(summary: Summary) -> list[str]:
    if not summary.errors_by_kind:
        return []
    return ["classifier errors (not scored): " + ", ".join(f"{k} {n}" for k, n in summary.errors_by_kind.items())]


def speed_text(timing: Timing | None) -> str | None:
    if timing is None or timing.items_per_s is None:
        return None
    return f"{timing.items} items in {timing.seconds:.1f} s: {timing.items_per_s:.1f} items/s, {timing.calls} calls"


def say(console: Console, line: str) -> None:
    """Print user-derived text as is: no markup, no highlighting, no re-wrapping."""
    console.print(Text(line), soft_wrap=True, highlight=False)


def print_mistakes(console: Console, run: EvalRun) -> None:
    for outcome, title in (("fp", "false positives"), ("fn", "false negatives")):
        wrong = [r for r in run.results if outcome_of(r, run.summary.threshold) == outcome]
        if not wrong:
            continue
        say(console, f"{title} ({len(wrong)}):")
        for r in wrong[:LISTED_MISTAKES]:
            predicted = r.prediction.label if r.prediction else "?"
            say(console, f"  {r.example.id} (line {r.example.source_line}) expected {r.example.label}, "
                         f"predicted {predicted}: {one_line(r.example.text, 70)}")
        if len(wrong) > LISTED_MISTAKES:
            say(console, f"  … and {len(wrong) - LISTED_MISTAKES} more in report.md")


def print_run(console: Console, run: EvalRun) -> None:
    info = run.info
    say(console, f"policy {info.policy_id} ({info.policy_digest[:12]}) · dataset {info.dataset} "
                 f"({run.summary.items} items) · {info.model}, effort {info.reasoning_effort}")
    say(console, "metrics (positive class: violation; classifier errors are not scored)")
    console.print(metrics_table(run.summary))
    confusion = confusion_table(run.summary)
    if confusion is not None:
        say(console, "confusion (rows: expected label, columns: predicted label)")
        console.print(confusion)
    print_parts(console, run)
    speed = speed_text(run.timing)
    for line in (latency_line(run.summary), f"{tokens_text(run.summary)} · {cache_text(run.summary)}",
                 *([speed] if speed else []), *errors_lines(run.summary)):
        say(console, line)
    print_mistakes(console, run)


def print_parts(console: Console, run: EvalRun) -> None:
    """A route eval: each policy alone, and what the proxy would have done."""
    if not run.parts:
        return
    table = Table()
    for name in ("policy", "items", "precision", "recall", "F1", "FP", "FN", "errors"):
        table.add_column(name, justify="left" if name == "policy" else "right")
    for part in run.parts:
        m, c = part.summary.metrics, part.summary.metrics.counts
        table.add_row(Text(part.info.policy_id), str(part.summary.items), ratio(m.precision), ratio(m.recall),
                      ratio(m.f1), str(c.fp), str(c.fn), str(c.errors))
    say(console, "each policy alone, on the items it checks")
    console.print(table)
    say(console, "the proxy would: " + ", ".join(f"{name} {n}" for name, n in run.actions.items()))


def print_comparison(console: Console, old: EvalRun, new: EvalRun, comparison: Comparison) -> None:
    say(console, f"old {old.info.policy_id} ({old.info.policy_digest[:12]}) -> new {new.info.policy_id} "
                 f"({new.info.policy_digest[:12]}) · dataset {new.info.dataset} ({new.summary.items} items)")
    if (old.info.model, old.info.reasoning_effort) != (new.info.model, new.info.reasoning_effort):
        say(console, f"classifier: {old.info.model} effort {old.info.reasoning_effort} -> {new.info.model} "
                     f"effort {new.info.reasoning_effort}")
    deltas = Table()
    for name in ("metric", "old", "new", "delta", "95% interval"):
        deltas.add_column(name, justify="left" if name == "metric" else "right")
    for d in comparison.deltas:
        interval = f"[{delta(d.interval.low)}, {delta(d.interval.high)}]" if d.interval else "n/a"
        deltas.add_row(d.name, ratio(d.old), ratio(d.new), delta(d.delta), interval)
    c_old, c_new = old.summary.metrics.counts, new.summary.metrics.counts
    deltas.add_row("errors", str(c_old.errors), str(c_new.errors), f"{c_new.errors - c_old.errors:+d}", "")
    say(console, "metric deltas (old -> new)")
    console.print(deltas)
    test = comparison.mcnemar
    say(console, f"McNemar: {test.fixed} fixed, {test.broke} broke, p = {test.p_value:.3g} "
                 f"({'unlikely to be chance' if test.p_value < 0.05 else 'could be chance'})")
    if not comparison.flips:
        say(console, "no verdict flipped")
    else:
        flips = Table()
        for name in ("id", "expected", "old", "new", "effect", "text"):
            flips.add_column(name)
        for f in comparison.flips[:LISTED_FLIPS]:
            flips.add_row(Text(f.example.id), f.example.label, shown(f.old), shown(f.new), f.effect,
                          Text(one_line(f.example.text, 50)))
        say(console, f"flipped verdicts ({len(comparison.flips)})")
        console.print(flips)
        if len(comparison.flips) > LISTED_FLIPS:
            say(console, f"  … and {len(comparison.flips) - LISTED_FLIPS} more in report.html and summary.json")
    say(console, f"old version: {cache_text(old.summary)}; new version: {cache_text(new.summary)}")
    for line in (latency_line(new.summary), tokens_text(new.summary), *errors_lines(new.summary)):
        say(console, f"new version: {line}")


def print_outputs(console: Console, out_dir: Path) -> None:
    say(console, f"wrote {out_dir / 'report.html'}, report.md, results.jsonl, summary.json")
