"""Runs -> report.html: one page to open in a browser, which fetches nothing from anywhere. Pure.

It tells what report.md tells, with pictures where they read faster: shaded confusion cells, recall and
precision bars per category, a latency histogram. The mistakes (or, for a compare, the flipped verdicts)
sit in one capped table that a small inline script lets a reader narrow by kind or by a piece of text;
without scripts every row simply stays visible. Anything that came from a dataset, a policy file or a
classifier is escaped, so a dataset row holding markup shows as text and never runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from types import MappingProxyType

from ..dataset_rows import Example, context_lines
from .compare import Comparison, Flip, MetricDelta, shown
from .formatting import clip, delta, ms, ratio
from .results import ItemResult, outcome_of
from .runs import EvalRun
from .scoring import Confusion, Group, Summary
from .significance import McNemar
from .svg import bar_chart, histogram

TEXT_LIMIT = 300
REASONING_LIMIT = 1500
BINS = 20
MISTAKES = MappingProxyType({"fp": "false positives", "fn": "false negatives", "error": "classifier errors"})
EFFECTS = MappingProxyType({"fixed": "fixed", "broke": "broke", "changed": "changed (to or from an error)"})

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #111; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
.matrix td { text-align: right; min-width: 3rem; }
.matrix td.right { font-weight: bold; }
pre { white-space: pre-wrap; max-width: 48rem; margin: .25rem 0; }
.note { color: #555; }
.filter { margin: .5rem 0; }
.filter label { margin-right: 1rem; }
svg text { font: 12px system-ui, sans-serif; fill: #111; }
"""

# Hides the rows of a table whose kind is unticked or whose text lacks the typed words; nothing else.
SCRIPT = """
document.querySelectorAll("[data-filter-for]").forEach(function (box) {
  var table = document.getElementById(box.getAttribute("data-filter-for"));
  var key = box.getAttribute("data-key");
  function apply() {
    var query = box.querySelector("input[type=search]").value.toLowerCase();
    var off = {};
    box.querySelectorAll("input[type=checkbox]").forEach(function (c) { off[c.value] = !c.checked; });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      row.hidden = off[row.getAttribute(key)] === true || row.textContent.toLowerCase().indexOf(query) < 0;
    });
  }
  box.addEventListener("input", apply);
  box.addEventListener("change", apply);
  box.hidden = false;
});
"""


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def code(value: str) -> str:
    return f"<code>{esc(value)}</code>"


def row(cells: Iterable[str], attrs: str = "") -> str:
    """Cells are HTML already: callers escape what came from outside."""
    return f"<tr{attrs}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def table(head: Sequence[str], rows: Iterable[str], table_id: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    heads = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table{ident}><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def pair(name: str, value: str) -> str:
    return f"<tr><th>{esc(name)}</th><td>{value}</td></tr>"


def header(run: EvalRun, label: str = "policy") -> str:
    info, summary = run.info, run.summary
    rows = [pair(label, f"{code(info.policy_id)} from {code(info.policy_source)}, digest "
                        f"{code(info.policy_digest[:12])}"),
            pair("dataset", f"{code(info.dataset)} ({summary.items} items)"),
            pair("model", code(info.model)), pair("base URL", code(info.base_url)),
            pair("reasoning effort", code(info.reasoning_effort)), pair("started", esc(info.started))]
    if summary.threshold != 1:
        rows.append(pair("threshold", f"a violation counts at level {summary.threshold} or above"))
    if run.timing is not None:
        rate = run.timing.items_per_s
        speed = "n/a" if rate is None else f"{rate:.2f}"
        rows.append(pair("speed", f"{run.timing.items} items in {run.timing.seconds:.1f} s ({speed} items/s), "
                                  f"{run.timing.calls} classifier calls"))
    return f'<table class="info"><tbody>{"".join(rows)}</tbody></table>'


def metric_cells(summary: Summary) -> list[str]:
    m, c = summary.metrics, summary.metrics.counts
    return [ratio(m.precision), ratio(m.recall), ratio(m.f1), ratio(m.accuracy),
            str(c.tp), str(c.fp), str(c.fn), str(c.tn), str(c.errors)]


def metrics_section(summary: Summary) -> str:
    positive = "violation" if summary.threshold == 1 else f"violation at level {summary.threshold} or above"
    lat, usage = summary.latency, summary.usage
    tokens = (f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens ({usage.reported} "
              "answers reported usage)" if usage.reported else "not reported by the endpoint")
    return (f"<h2>Metrics</h2><p>Positive class: {positive}. Classifier errors are counted apart and left out of "
            "every metric.</p>"
            + table(("precision", "recall", "F1", "accuracy", "TP", "FP", "FN", "TN", "errors"),
                    [row(metric_cells(summary))], "metrics")
            + f"<ul><li>latency: p50 {ms(lat.p50)}, p90 {ms(lat.p90)}, p99 {ms(lat.p99)}</li>"
            f"<li>tokens: {tokens}</li><li>cache: {summary.cache_hits} hits, {summary.cache_misses} misses</li></ul>")


def matrix(table_id: str, corner: str, labels: Sequence[str], grid: Sequence[Sequence[int]]) -> str:
    """Rows expected, columns predicted; a cell's blue deepens with its count, the diagonal is bold."""
    most = max((n for line in grid for n in line), default=0)
    head = f"<tr><th>{esc(corner)}</th>" + "".join(f"<th>{esc(label)}</th>" for label in labels) + "</tr>"
    body = ""
    for i, (label, counts) in enumerate(zip(labels, grid, strict=True)):
        cells = ""
        for j, n in enumerate(counts):
            shade = f' style="background: rgba(37, 99, 235, {0.08 + 0.5 * n / most:.2f})"' if n else ""
            right = ' class="right"' if i == j else ""
            cells += f"<td{right}{shade}>{n}</td>"
        body += f"<tr><th>{esc(label)}</th>{cells}</tr>"
    return f'<table id="{table_id}" class="matrix"><thead>{head}</thead><tbody>{body}</tbody></table>'


def confusion_section(summary: Summary) -> str:
    c = summary.metrics.counts
    binary = matrix("binary", "expected \\ predicted", ("violation", "allowed"), ((c.tp, c.fn), (c.fp, c.tn)))
    out = f"<h2>Confusion</h2><p>Violation or not, scored items only (rows: expected, columns: predicted).</p>{binary}"
    confusion: Confusion | None = summary.confusion
    if confusion is not None:
        labels = confusion.labels
        grid = [[confusion.counts[e][p] for p in labels] for e in labels]
        out += "<p>By label code:</p>" + matrix("confusion", "expected \\ predicted", labels, grid)
    return out


def group_rows(groups: Iterable[Group]) -> list[str]:
    return [row([esc(g.name), str(g.items), ratio(g.metrics.precision), ratio(g.metrics.recall),
                 ratio(g.metrics.f1), str(g.metrics.counts.tp), str(g.metrics.counts.fp),
                 str(g.metrics.counts.fn), str(g.metrics.counts.tn), str(g.metrics.counts.errors)]) for g in groups]


def groups_section(summary: Summary) -> str:
    categories = summary.breakdowns.by_category
    head = ("items", "precision", "recall", "F1", "TP", "FP", "FN", "TN", "errors")
    out = "<h2>By category</h2>"
    if categories:
        out += ("<p>Recall and precision per category; an item with several categories counts in each.</p>"
                + bar_chart([(f"{g.name} ({g.items})", (g.metrics.recall, g.metrics.precision)) for g in categories],
                            ("recall", "precision")))
    else:
        out += '<p class="note">No bars: the dataset has no categories.</p>'
    return (out + "<h2>By role</h2>" + table(("role", *head), group_rows(summary.breakdowns.by_role))
            + "<h2>By expected label</h2>" + table(("label", *head), group_rows(summary.breakdowns.by_label)))


def latency_section(results: Sequence[ItemResult]) -> str:
    values = [r.prediction.latency_ms for r in results if r.prediction is not None]
    if not values:
        return '<h2>Latency</h2><p class="note">No latencies: the classifier answered nothing.</p>'
    return (f"<h2>Latency</h2><p>{len(values)} answers (cached ones as first measured), in {BINS} equal bins; "
            f"hover a bar for its count.</p>" + histogram(values, BINS, "answers"))


def route_section(run: EvalRun) -> str:
    if not run.parts:
        return ""
    parts = [row([code(p.info.policy_id), str(p.summary.items), ratio(p.summary.metrics.precision),
                  ratio(p.summary.metrics.recall), ratio(p.summary.metrics.f1)]) for p in run.parts]
    actions = [row([esc(name), str(n)]) for name, n in run.actions.items()]
    return ("<h2>Each policy alone</h2><p>Each policy of the route on the items it checks.</p>"
            + table(("policy", "items", "precision", "recall", "F1"), parts, "parts")
            + "<h2>Actions</h2><p>What the proxy would have done with the items.</p>"
            + table(("action", "items"), actions, "actions"))


def fair_shares(sizes: Sequence[int], total: int) -> list[int]:
    """Hand out `total` rows one at a time, round the groups, skipping a group once it is all shown."""
    taken = [0] * len(sizes)
    left = max(0, total)
    while left and any(t < s for t, s in zip(taken, sizes, strict=True)):
        for i, size in enumerate(sizes):
            if left and taken[i] < size:
                taken[i] += 1
                left -= 1
    return taken


def text_cell(example: Example) -> str:
    out = esc(clip(example.text, TEXT_LIMIT))
    if example.context:
        turns = esc(clip(context_lines(example.context), TEXT_LIMIT))
        out += f"<details><summary>context</summary><pre>{turns}</pre></details>"
    return out


def explanation(result: ItemResult) -> str:
    """Rationale, then the reasoning folded away; for an error, what went wrong."""
    if result.prediction is None:
        return esc(f"{result.failure.kind}: {clip(result.failure.message, TEXT_LIMIT)}") if result.failure else ""
    return esc(result.prediction.rationale or "") + reasoning(result)


def reasoning(result: ItemResult) -> str:
    text = result.prediction.reasoning if result.prediction is not None else None
    if not text:
        return ""
    return f"<details><summary>reasoning</summary><pre>{esc(clip(text, REASONING_LIMIT))}</pre></details>"


def filter_box(table_id: str, key: str, choices: Iterable[str]) -> str:
    """Hidden until the script runs: without it the boxes would do nothing, and every row shows anyway."""
    ticks = "".join(f'<label><input type="checkbox" value="{c}" checked> {esc(c)}</label>' for c in choices)
    return (f'<div class="filter" data-filter-for="{table_id}" data-key="{key}" hidden>'
            f'<label>filter <input type="search" placeholder="words in the row"></label>{ticks}</div>')


def left_out(hidden: dict[str, int], names: Mapping[str, str]) -> str:
    total = sum(hidden.values())
    if not total:
        return ""
    parts = ", ".join(f"{n} {names[k]}" for k, n in hidden.items() if n)
    return f'<p class="note">{total} more not shown ({parts}); all of them are in results.jsonl.</p>'


def mistake_row(result: ItemResult, kind: str) -> str:
    ex, p = result.example, result.prediction
    rationale = esc(p.rationale or "") if p else explanation(result)
    cells = [kind, code(ex.id), str(ex.source_line), esc(ex.role), esc(ex.label), esc(p.label if p else "error"),
             esc(", ".join(ex.categories)), text_cell(ex), rationale, reasoning(result)]
    return row(cells, f' data-kind="{kind}" data-category="{esc("|".join(ex.categories))}"')


def mistakes_section(run: EvalRun, max_rows: int) -> str:
    by_kind = {k: [r for r in run.results if outcome_of(r, run.summary.threshold) == k] for k in MISTAKES}
    title = ", ".join(f"{len(found)} {MISTAKES[k]}" for k, found in by_kind.items())
    out = f"<h2>Mistakes ({title})</h2>"
    if not any(by_kind.values()):
        return out + "<p>None.</p>"
    shares = dict(zip(by_kind, fair_shares([len(v) for v in by_kind.values()], max_rows), strict=True))
    rows = [mistake_row(r, k) for k, found in by_kind.items() for r in found[:shares[k]]]
    head = ("kind", "id", "line", "role", "expected", "predicted", "categories", "text", "rationale", "reasoning")
    return (out + filter_box("mistakes", "data-kind", MISTAKES) + table(head, rows, "mistakes")
            + left_out({k: len(v) - shares[k] for k, v in by_kind.items()}, MISTAKES))


def run_body(run: EvalRun, max_rows: int) -> str:
    return (metrics_section(run.summary) + confusion_section(run.summary) + groups_section(run.summary)
            + latency_section(run.results) + route_section(run) + mistakes_section(run, max_rows))


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{esc(title)}</h1>{body}<script>{SCRIPT}</script></body></html>\n")


def run_html(run: EvalRun, max_rows: int = 200) -> str:
    """One run: header, metrics, confusion, breakdowns, latency, route parts, then at most max_rows mistakes."""
    return page(f"Eval: {run.info.policy_id}", header(run) + run_body(run, max_rows))


def interval_text(d: MetricDelta) -> str:
    return "n/a" if d.interval is None else f"[{delta(d.interval.low)}, {delta(d.interval.high)}]"


def mcnemar_text(m: McNemar) -> str:
    p = "p < 0.001" if m.p_value < 0.001 else f"p = {m.p_value:.3f}"
    verdict = ("below 0.05: the difference in correct answers is unlikely to be chance" if m.p_value < 0.05
               else "not below 0.05: the difference in correct answers could be chance")
    return (f"<p>McNemar's exact test on the items whose correctness changed: {m.fixed} fixed, {m.broke} broke, "
            f"{p}, {verdict}.</p>")


def deltas_section(old: Summary, new: Summary, comparison: Comparison) -> str:
    rows = [row([esc(d.name), ratio(d.old), ratio(d.new), delta(d.delta), interval_text(d)])
            for d in comparison.deltas]
    counts = [" / ".join(metric_cells(s)[4:]) for s in (old, new)]
    rows.append(row(["TP / FP / FN / TN / errors", *counts, "", ""]))
    return ("<h2>Metric deltas</h2><p>Delta is new minus old, with its 95% interval from a paired bootstrap.</p>"
            + table(("metric", "old", "new", "delta", "95% interval"), rows, "deltas")
            + mcnemar_text(comparison.mcnemar))


def change(old: float | None, new: float | None) -> float | None:
    return None if old is None or new is None else new - old


def category_recall_section(old: Summary, new: Summary) -> str:
    before = {g.name: g.metrics.recall for g in old.breakdowns.by_category}
    after = {g.name: g.metrics.recall for g in new.breakdowns.by_category}
    names = sorted(before.keys() | after.keys())
    if not names:
        return '<h2>Recall by category</h2><p class="note">The dataset has no categories.</p>'
    rows = [row([esc(n), ratio(before.get(n)), ratio(after.get(n)), delta(change(before.get(n), after.get(n)))])
            for n in names]
    return "<h2>Recall by category</h2>" + table(("category", "old", "new", "delta"), rows, "category-recall")


def flip_row(flip: Flip) -> str:
    ex = flip.example
    cells = [code(ex.id), esc(ex.label), flip.effect, esc(shown(flip.old)), esc(shown(flip.new)), text_cell(ex),
             explanation(flip.old), explanation(flip.new)]
    return row(cells, f' data-effect="{flip.effect}" data-category="{esc("|".join(ex.categories))}"')


def flips_section(flips: Sequence[Flip], max_rows: int) -> str:
    counts = {e: sum(1 for f in flips if f.effect == e) for e in EFFECTS}
    title = ", ".join(f"{n} {EFFECTS[e]}" for e, n in counts.items())
    out = f"<h2>Flipped verdicts ({len(flips)}: {title})</h2>"
    if not flips:
        return out + "<p>None: every verdict is the same.</p>"
    shown_flips = flips[:max(0, max_rows)]
    hidden = {e: counts[e] - sum(1 for f in shown_flips if f.effect == e) for e in EFFECTS}
    head = ("id", "expected", "effect", "old answer", "new answer", "text", "old explanation", "new explanation")
    return (out + filter_box("flips", "data-effect", EFFECTS) + table(head, map(flip_row, shown_flips), "flips")
            + left_out(hidden, EFFECTS))


def comparison_html(old: EvalRun, new: EvalRun, comparison: Comparison, max_rows: int = 200) -> str:
    """Both headers, deltas with intervals and McNemar, recall per category, flips, then the new run in detail."""
    body = ("<h2>Old</h2>" + header(old, "old") + "<h2>New</h2>" + header(new, "new")
            + deltas_section(comparison.old, comparison.new, comparison)
            + category_recall_section(comparison.old, comparison.new)
            + flips_section(comparison.flips, max_rows) + "<h1>New version in detail</h1>" + run_body(new, max_rows))
    return page(f"Compare: {old.info.policy_id} -> {new.info.policy_id}", body)
