"""Runs -> the Markdown report (report.md). Pure.

The report is for the person editing the policy: numbers first (with breakdowns by category, role and
expected label), then the false positives and false negatives with the classifier's own explanation,
because the explanation is what points at the sentence of the policy to change. It stays readable at any
set size: at most `max_listed` items per kind are written out, the rest are in results.jsonl. Reasoning is
clipped: it is audit material and can run to pages.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..dataset_rows import context_lines
from .compare import Comparison, Flip, shown
from .formatting import clip, delta, ms, one_line, ratio
from .results import ItemResult, Prediction, outcome_of
from .runs import EvalRun, RunInfo
from .scoring import Confusion, Group, Summary

REASONING_LIMIT = 1500
MAX_LISTED = 50


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


def positive_class(summary: Summary) -> str:
    return "violation" if summary.threshold == 1 else f"violation at level {summary.threshold} or above"


def metrics_section(summary: Summary) -> list[str]:
    m, c = summary.metrics, summary.metrics.counts
    return [
        "## Metrics", "",
        f"Positive class: {positive_class(summary)}. Classifier errors are counted apart and excluded from every "
        "metric.", "",
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


def group_table(title: str, groups: tuple[Group, ...]) -> list[str]:
    if not groups:
        return []
    lines = [f"### By {title}", "", "| " + title + " | items | precision | recall | F1 | TP | FP | FN | TN | errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        m, c = g.metrics, g.metrics.counts
        lines.append(f"| {cell(g.name, 40)} | {g.items} | {ratio(m.precision)} | {ratio(m.recall)} | {ratio(m.f1)} "
                     f"| {c.tp} | {c.fp} | {c.fn} | {c.tn} | {c.errors} |")
    return [*lines, ""]


def breakdown_section(summary: Summary) -> list[str]:
    b = summary.breakdowns
    return ["## Breakdowns", "", *group_table("category", b.by_category), *group_table("role", b.by_role),
            *group_table("expected label", b.by_label)]


def route_section(run: EvalRun) -> list[str]:
    if not run.parts:
        return []
    lines = ["## Each policy alone", "", "On the items it checks, against the same labels.", "",
             "| policy | items | precision | recall | F1 | FP | FN | errors |", "|---|---|---|---|---|---|---|---|"]
    for part in run.parts:
        m, c = part.summary.metrics, part.summary.metrics.counts
        lines.append(f"| `{part.info.policy_id}` | {part.summary.items} | {ratio(m.precision)} | {ratio(m.recall)} "
                     f"| {ratio(m.f1)} | {c.fp} | {c.fn} | {c.errors} |")
    actions = ", ".join(f"{name} {n}" for name, n in run.actions.items())
    return [*lines, "", f"What the proxy would do with these items: {actions}.", ""]


def runtime_section(summary: Summary, run: EvalRun | None = None) -> list[str]:
    lat, usage = summary.latency, summary.usage
    tokens = (f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens "
              f"({usage.reported} answers reported usage)" if usage.reported else "not reported by the endpoint")
    return [
        "## Latency, usage, cache", "",
        f"- latency (answers, cached ones as first measured): p50 {ms(lat.p50)}, p90 {ms(lat.p90)}, "
        f"p99 {ms(lat.p99)}",
        f"- tokens: {tokens}",
        f"- cache: {summary.cache_hits} hits, {summary.cache_misses} misses",
        *speed_line(run),
    ]


def speed_line(run: EvalRun | None) -> list[str]:
    if run is None or run.timing is None or run.timing.items_per_s is None:
        return []
    t = run.timing
    return [f"- speed: {t.items} items in {t.seconds:.1f} s ({t.items_per_s:.1f} items/s), {t.calls} classifier calls"]


def left_out(total: int, listed: int) -> list[str]:
    return [f"... and {total - listed} more in results.jsonl.", ""] if total > listed else []


def errors_section(results: Iterable[ItemResult], max_listed: int = MAX_LISTED) -> list[str]:
    failed = [(r.example, r.failure) for r in results if r.failure]
    if not failed:
        return []
    lines = [f"## Classifier errors ({len(failed)})", ""]
    for example, failure in failed[:max_listed]:
        lines.append(f"- `{example.id}` (line {example.source_line}): {failure.kind}: "
                     f"{one_line(failure.message, 200)}")
    return [*lines, "", *left_out(len(failed), max_listed)]


def item_block(r: ItemResult, p: Prediction) -> list[str]:
    lines = [f"### `{r.example.id}` (line {r.example.source_line}, {r.example.role}): expected {r.example.label}, "
             f"predicted {p.label}", "", quote(r.example.text), ""]
    if r.example.categories:
        lines += [f"Categories: {', '.join(r.example.categories)}", ""]
    if r.example.context:
        lines += ["Context:", "", quote(context_lines(r.example.context)), ""]
    if p.rationale:
        lines += [f"**Rationale:** {p.rationale}", ""]
    if p.reasoning:
        lines += ["**Reasoning:**", "", quote(clip(p.reasoning, REASONING_LIMIT)), ""]
    return lines


def mistakes_section(results: Iterable[ItemResult], threshold: int = 1, max_listed: int = MAX_LISTED) -> list[str]:
    listed = list(results)
    lines: list[str] = []
    for outcome, title in (("fp", "False positives"), ("fn", "False negatives")):
        wrong = [(r, r.prediction) for r in listed if outcome_of(r, threshold) == outcome and r.prediction]
        lines += [f"## {title} ({len(wrong)})", ""]
        for r, p in wrong[:max_listed]:
            lines += item_block(r, p)
        lines += left_out(len(wrong), max_listed)
        if not wrong:
            lines += ["None.", ""]
    return lines


def body(run: EvalRun, max_listed: int = MAX_LISTED) -> list[str]:
    summary = run.summary
    return [*metrics_section(summary), "", *route_section(run), *confusion_section(summary.confusion), "",
            *breakdown_section(summary), "", *runtime_section(summary, run), "",
            *errors_section(run.results, max_listed), "", *mistakes_section(run.results, summary.threshold, max_listed)]


def markdown_report(run: EvalRun, max_listed: int = MAX_LISTED) -> str:
    lines = [f"# Eval: {run.info.policy_id}", "", *header(run.info, run.summary.items), "", *body(run, max_listed)]
    return tidy(lines)


def flip_rows(flips: Iterable[Flip]) -> list[str]:
    rows = ["| id | line | expected | old | new | effect | text |", "|---|---|---|---|---|---|---|"]
    rows += [f"| `{f.example.id}` | {f.example.source_line} | {f.example.label} | {shown(f.old)} | {shown(f.new)} "
             f"| {f.effect} | {cell(f.example.text)} |" for f in flips]
    return rows


def answer_lines(side: str, result: ItemResult) -> list[str]:
    p = result.prediction
    if p is None:
        return [f"**{side}:** error: {result.failure.message if result.failure else '?'}", ""]
    lines = [f"**{side}:** {shown(result)}" + (f": {p.rationale}" if p.rationale else ""), ""]
    if p.reasoning:
        lines += [quote(clip(p.reasoning, REASONING_LIMIT)), ""]
    return lines


def flip_details(flips: tuple[Flip, ...], max_listed: int) -> list[str]:
    lines = ["## Flips, old and new answer", ""]
    for f in flips[:max_listed]:
        lines += [f"### `{f.example.id}` (line {f.example.source_line}): {f.effect}, expected {f.example.label}", "",
                  quote(f.example.text), "", *answer_lines("old", f.old), *answer_lines("new", f.new)]
    return [*lines, *left_out(len(flips), max_listed)]


def significance_lines(comparison: Comparison) -> list[str]:
    test = comparison.mcnemar
    verdict = ("is unlikely to be chance" if test.p_value < 0.05 else
               "could well be chance: more items, or a larger effect, are needed to tell")
    return [f"McNemar's exact test on the items whose correctness changed: {test.fixed} fixed, {test.broke} broke, "
            f"p = {test.p_value:.3g}: the difference in correct answers {verdict}. Intervals: 95%, paired "
            "bootstrap over the items.", ""]


def interval_text(comparison: Comparison, name: str) -> str:
    found = next(d for d in comparison.deltas if d.name == name)
    return f"[{delta(found.interval.low)}, {delta(found.interval.high)}]" if found.interval else "n/a"


def version_line(old: RunInfo, new: RunInfo) -> str:
    """What differs between the two runs: the policy, the model or the effort."""
    if old.model != new.model:
        return f"{old.model} -> {new.model}"
    if old.reasoning_effort != new.reasoning_effort:
        return f"effort {old.reasoning_effort} -> {new.reasoning_effort}"
    return f"{old.policy_id} -> {new.policy_id}"


def comparison_report(old: EvalRun, new: EvalRun, comparison: Comparison, max_listed: int = MAX_LISTED) -> str:
    c_old, c_new = old.summary.metrics.counts, new.summary.metrics.counts
    effects = {e: sum(1 for f in comparison.flips if f.effect == e) for e in ("fixed", "broke", "changed")}
    lines = [
        f"# Compare: {version_line(old.info, new.info)}", "",
        "| | |", "|---|---|", *info_table(old.info, "old"), *info_table(new.info, "new"),
        f"| dataset | `{new.info.dataset}` ({new.summary.items} items) |",
        f"| classifier (old) | `{old.info.model}` at `{old.info.base_url}`, effort `{old.info.reasoning_effort}` |",
        f"| classifier (new) | `{new.info.model}` at `{new.info.base_url}`, effort `{new.info.reasoning_effort}` |",
        f"| started | {new.info.started} |", "",
        "## Metric deltas", "", "| metric | old | new | delta | 95% interval |", "|---|---|---|---|---|",
        *[f"| {d.name} | {ratio(d.old)} | {ratio(d.new)} | {delta(d.delta)} | {interval_text(comparison, d.name)} |"
          for d in comparison.deltas],
        f"| TP / FP / FN / TN / errors | {c_old.tp} / {c_old.fp} / {c_old.fn} / {c_old.tn} / {c_old.errors} "
        f"| {c_new.tp} / {c_new.fp} / {c_new.fn} / {c_new.tn} / {c_new.errors} | | |", "",
        *significance_lines(comparison),
        f"## Flipped verdicts ({len(comparison.flips)}: {effects['fixed']} fixed, {effects['broke']} broke, "
        f"{effects['changed']} to or from an error)", "",
        *(flip_rows(comparison.flips[:max_listed]) if comparison.flips else ["None: every verdict is the same."]), "",
        *left_out(len(comparison.flips), max_listed),
        *(flip_details(comparison.flips, max_listed) if comparison.flips else []),
        "# New version in detail", "", *body(new, max_listed),
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
