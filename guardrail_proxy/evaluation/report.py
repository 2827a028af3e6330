"""Runs -> the Markdown report (report.md). Pure.

The report is for the person editing the policy: numbers first, then every false positive and false
negative with the classifier's own explanation, because the explanation is what points at the sentence
of the policy to change. Reasoning is clipped: it is audit material and can run to pages.
"""

from __future__ import annotations

from collections.abc import Iterable

from .compare import Comparison, Flip
from .formatting import clip, delta, ms, one_line, ratio
from .results import ItemResult, Prediction
from .runs import EvalRun, RunInfo
from .scoring import Confusion, Summary

REASONING_LIMIT = 1500


def cell(text: str, limit: int = 80) -> str:
    return one_line(text, limit).replace("|", "\\|")


def quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def info_table(info: RunInfo, label: str = "policy") -> list[str]:
    return [
        f"| {label} | `{info.policy_id}` from `{info.policy_source}`, digest `{info.policy_digest[:12]}` |",
    ]


def header(info: RunInfo, items: int) -> list[str]:
    return [
        "| | |", "|---|---|",
        *info_table(info),
        f"| dataset | `{info.dataset}` ({items} items) |",
        f"| classifier | `{info.model}` at `{info.base_url}`, reasoning effort `{info.reasoning_effort}` |",
        f"| started | {info.started} |",
    ]


def metrics_section(summary: Summary) -> list[str]:
    m, c = summary.metrics, summary.metrics.counts
    return [
        "## Metrics", "",
        "Positive class: violation. Classifier errors are counted apart and excluded from every metric.", "",
        "| precision | recall | F1 | accuracy | TP | FP | FN | TN | errors |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {ratio(m.precision)} | {ratio(m.recall)} | {ratio(m.f1)} | {ratio(m.accuracy)} "
        f"| {c.tp} | {c.fp} | {c.fn} | {c.tn} | {c.errors} |",
    ]


def confusion_section(confusion: Confusion | None) -> list[str]:
    if confusion is None:
        return []
    labels = confusion.labels
    lines = ["## Confusion (rows: expected, columns: predicted)", "",
             "| expected \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for expected in labels:
        lines.append(f"| **{expected}** | " + " | ".join(str(confusion.counts[expected][p]) for p in labels) + " |")
    return lines


def runtime_section(summary: Summary) -> list[str]:
    lat, usage = summary.latency, summary.usage
    tokens = (f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens "
              f"({usage.reported} answers reported usage)" if usage.reported else "not reported by the endpoint")
    return [
        "## Latency, usage, cache", "",
        f"- latency (answers, cached ones as first measured): p50 {ms(lat.p50)}, p90 {ms(lat.p90)}, "
        f"p99 {ms(lat.p99)}",
        f"- tokens: {tokens}",
        f"- cache: {summary.cache_hits} hits, {summary.cache_misses} misses",
    ]


def errors_section(results: Iterable[ItemResult]) -> list[str]:
    failed = [(r.example, r.failure) for r in results if r.failure]
    if not failed:
        return []
    lines = [f"## Classifier errors ({len(failed)})", ""]
    for example, failure in failed:
        lines.append(f"- `{example.id}` (line {example.source_line}): {failure.kind}: "
                     f"{one_line(failure.message, 200)}")
    return lines


def item_block(r: ItemResult, p: Prediction) -> list[str]:
    lines = [f"### `{r.example.id}` (line {r.example.source_line}, {r.example.role}): expected {r.example.label}, "
             f"predicted {p.label}", "", quote(r.example.text), ""]
    if r.example.context:
        lines += ["Context:", "", quote(r.example.context), ""]
    if p.rationale:
        lines += [f"**Rationale:** {p.rationale}", ""]
    if p.reasoning:
        lines += ["**Reasoning:**", "", quote(clip(p.reasoning, REASONING_LIMIT)), ""]
    return lines


def mistakes_section(results: Iterable[ItemResult]) -> list[str]:
    listed = list(results)
    lines: list[str] = []
    for outcome, title in (("fp", "False positives"), ("fn", "False negatives")):
        wrong = [(r, r.prediction) for r in listed if r.outcome == outcome and r.prediction]
        lines += [f"## {title} ({len(wrong)})", ""]
        for r, p in wrong:
            lines += item_block(r, p)
        if not wrong:
            lines += ["None.", ""]
    return lines


def body(run: EvalRun) -> list[str]:
    return [*metrics_section(run.summary), "", *confusion_section(run.summary.confusion), "",
            *runtime_section(run.summary), "", *errors_section(run.results), "", *mistakes_section(run.results)]


def markdown_report(run: EvalRun) -> str:
    lines = [f"# Eval: {run.info.policy_id}", "", *header(run.info, run.summary.items), "", *body(run)]
    return tidy(lines)


def flip_rows(flips: Iterable[Flip]) -> list[str]:
    rows = ["| id | line | expected | old | new | effect | text |", "|---|---|---|---|---|---|---|"]
    rows += [f"| `{f.example.id}` | {f.example.source_line} | {f.example.label} | {f.old} | {f.new} | {f.effect} "
             f"| {cell(f.example.text)} |" for f in flips]
    return rows


def comparison_report(old: EvalRun, new: EvalRun, comparison: Comparison) -> str:
    c_old, c_new = old.summary.metrics.counts, new.summary.metrics.counts
    effects = {e: sum(1 for f in comparison.flips if f.effect == e) for e in ("fixed", "broke", "changed")}
    lines = [
        f"# Compare: {old.info.policy_id} -> {new.info.policy_id}", "",
        "| | |", "|---|---|", *info_table(old.info, "old"), *info_table(new.info, "new"),
        f"| dataset | `{new.info.dataset}` ({new.summary.items} items) |",
        f"| classifier | `{new.info.model}` at `{new.info.base_url}`, reasoning effort `{new.info.reasoning_effort}` |",
        f"| started | {new.info.started} |", "",
        "## Metric deltas", "", "| metric | old | new | delta |", "|---|---|---|---|",
        *[f"| {d.name} | {ratio(d.old)} | {ratio(d.new)} | {delta(d.delta)} |" for d in comparison.deltas],
        f"| TP / FP / FN / TN / errors | {c_old.tp} / {c_old.fp} / {c_old.fn} / {c_old.tn} / {c_old.errors} "
        f"| {c_new.tp} / {c_new.fp} / {c_new.fn} / {c_new.tn} / {c_new.errors} | |", "",
        f"## Flipped verdicts ({len(comparison.flips)}: {effects['fixed']} fixed, {effects['broke']} broke, "
        f"{effects['changed']} to or from an error)", "",
        *(flip_rows(comparison.flips) if comparison.flips else ["None: every verdict is the same."]), "",
        "# New version in detail", "", *body(new),
    ]
    return tidy(lines)


def tidy(lines: list[str]) -> str:
    """Join, with at most one blank line in a row (sections may be empty)."""
    out: list[str] = []
    for line in lines:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    return "\n".join(out).rstrip() + "\n"
