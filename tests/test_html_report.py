"""report.html and its charts: each page is parsed back with the standard library's HTML parser and its parts
checked by structure (tables, rows, attributes, SVG rectangles), not by matching the markup as text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

from guardrail_proxy.dataset_rows import Example
from guardrail_proxy.evaluation.compare import Comparison, compare
from guardrail_proxy.evaluation.formatting import delta
from guardrail_proxy.evaluation.html_report import comparison_html, fair_shares, run_html
from guardrail_proxy.evaluation.results import Failure, ItemResult, Prediction
from guardrail_proxy.evaluation.runs import EvalRun, RunInfo, Timing
from guardrail_proxy.evaluation.scoring import summarize
from guardrail_proxy.evaluation.svg import bar_chart, bin_counts, histogram
from guardrail_proxy.subjects import Turn

VOID = {"meta", "input", "br", "hr", "img", "link", "source", "wbr", "col", "area", "base", "embed"}
DR = ("DR0", "DR1", "DR2", "DR3")


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def find(self, tag: str, **attrs: str) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag and all(n.attrs.get(k) == v for k, v in attrs.items())]

    def one(self, tag: str, **attrs: str) -> Node:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def body_rows(self) -> list[Node]:
        return [r for body in self.find("tbody") for r in body.find("tr")]

    def cells(self) -> list[list[str]]:
        """Each body row's cells as text, header cells (the row's name) included."""
        return [[c.text() for c in r.children if isinstance(c, Node) and c.tag in ("td", "th")]
                for r in self.body_rows()]


class Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.unclosed: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [tree.root], [n.tag for n in tree.stack]  # every element closed, in order
    return tree.root


INFO = RunInfo("violence", "0123456789abcdef" * 4, "policies/violence.md", "sets/dev.jsonl", "gpt-oss-safeguard-20b",
               "low", "http://127.0.0.1:8000/v1", "2025-01-01T10:00:00")


def example(n: int, label: str, categories: tuple[str, ...] = (), text: str | None = None,
            role: str = "user", context: tuple[Turn, ...] = ()) -> Example:
    level = int(label[2:]) if label.startswith("DR") else None
    return Example(f"e{n}", text or f"text of item {n}", label, label[-1] != "0", level, role, context, n + 1,
                   categories)


def answer(ex: Example, label: str, latency: float = 100.0, reasoning: str | None = None,
           rationale: str | None = None) -> ItemResult:
    level = int(label[-1])
    prediction = Prediction(level > 0, level, label, rationale or f"rationale {ex.id}",
                            reasoning or f"reasoning {ex.id}", label, latency, 100, 20)
    return ItemResult(ex, prediction)


def failed(ex: Example) -> ItemResult:
    return ItemResult(ex, None, Failure("timeout", "no answer within 30 s"))


def make_run(results: list[ItemResult], threshold: int = 1, timing: Timing | None = None,
             info: RunInfo = INFO, labels: tuple[str, ...] = ()) -> EvalRun:
    return EvalRun(info, tuple(results), summarize(results, labels, threshold), timing)


def mistakes(fp: int, fn: int, errors: int, right: int = 0) -> list[ItemResult]:
    """fp, fn, errors and right answers of 0/1 labels, in that order in the set."""
    out = [answer(example(i, "0"), "1") for i in range(fp)]
    out += [answer(example(fp + i, "1"), "0") for i in range(fn)]
    out += [failed(example(fp + fn + i, "1")) for i in range(errors)]
    return out + [answer(example(fp + fn + errors + i, "1"), "1") for i in range(right)]


def categorised() -> list[ItemResult]:
    """Three categories, every one with a defined recall and precision; latencies 10..100 ms."""
    specs = [("DR2", "DR2", ("weapons",)), ("DR0", "DR2", ("weapons",)), ("DR3", "DR0", ("threats",)),
             ("DR3", "DR3", ("threats", "gore")), ("DR1", "DR1", ("gore",)), ("DR0", "DR0", ("gore",)),
             ("DR2", "DR1", ()), ("DR0", "DR0", ()), ("DR0", "DR3", ("weapons",)), ("DR1", "DR1", ("threats",))]
    return [answer(example(i, exp, cats), got, latency=10.0 * (i + 1)) for i, (exp, got, cats) in enumerate(specs)]


def bars(svg: Node) -> list[Node]:
    return svg.find("rect", **{"class": "bar"})


def comparison_pages(flips_fixed: int = 6, flips_broke: int = 0, max_rows: int = 200) -> tuple[str, Node, Comparison]:
    """Old wrong on `fixed` positives the new gets right, right on `broke` the new gets wrong, plus steady items."""
    exs = [example(i, "DR2", ("weapons",)) for i in range(flips_fixed + flips_broke)]
    steady = [example(100 + i, "DR0", ("gore",)) for i in range(6)]
    old_r = [answer(e, "DR0" if i < flips_fixed else "DR2", reasoning=f"old thinking {e.id}",
                    rationale=f"old says {e.id}") for i, e in enumerate(exs)]
    new_r = [answer(e, "DR2" if i < flips_fixed else "DR0", reasoning=f"new thinking {e.id}",
                    rationale=f"new says {e.id}") for i, e in enumerate(exs)]
    old_r += [answer(e, "DR0") for e in steady]
    new_r += [answer(e, "DR0") for e in steady]
    old = make_run(old_r, labels=DR)
    new = make_run(new_r, labels=DR, info=RunInfo("violence-v2", "f" * 64, "policies/violence2.md",
                                                   "sets/dev.jsonl", "m", "low", "http://x/v1", "2025-01-02"))
    comparison = compare(old.results, new.results, old.summary, new.summary)
    page = comparison_html(old, new, comparison, max_rows)
    return page, parse(page), comparison


@pytest.mark.parametrize("build", [
    lambda: run_html(make_run(categorised(), labels=DR, timing=Timing(2.0, 10, 8))),
    lambda: run_html(make_run(mistakes(3, 3, 2, 4))),
    lambda: comparison_pages()[0],
], ids=["run", "run-with-errors", "comparison"])
def test_the_page_is_one_document_that_fetches_nothing(build):
    page = build()
    root = parse(page)
    assert len(root.find("html")) == len(root.find("head")) == len(root.find("body")) == 1
    for node in root.walk():
        for name in ("src", "href", "action", "srcset", "xlink:href", "data"):
            assert name not in node.attrs, (node.tag, name, node.attrs[name])
    assert not root.find("link") and not root.find("img") and not root.find("iframe")
    assert len(root.find("script")) == 1 and "src" not in root.one("script").attrs
    assert "url(" not in root.one("style").text() and "@import" not in root.one("style").text()


def test_category_bars_and_latency_histogram():
    root = parse(run_html(make_run(categorised(), labels=DR)))
    assert len(root.find("svg")) == 2
    bar_svg, hist_svg = root.find("svg")
    assert len(bars(bar_svg)) == 6  # three categories x (recall, precision)
    labels = [t.text() for t in bar_svg.find("text")]
    assert [label for label in labels if "(" in label] == ["gore (3)gore (3)", "threats (3)threats (3)",
                                                             "weapons (3)weapons (3)"]  # name, then its tooltip
    assert "recall 0.667" in labels and "precision 0.333" in labels  # threats: 2 of 3 found, weapons: 1 of 3 right
    assert len(bars(hist_svg)) == 20
    tips = [r.one("title").text() for r in bars(hist_svg)]
    assert sum(int(tip.split(": ")[1].split()[0]) for tip in tips) == 10
    assert tips[0].startswith("10 ms to ") and tips[-1].endswith(": 1 answers")
    axis = [t.text() for t in hist_svg.find("text")]
    assert "10 ms" in axis and "100 ms" in axis


def test_a_category_without_predicted_violations_draws_only_its_recall_bar():
    results = [answer(example(0, "1", ("spam",)), "0"), answer(example(1, "0", ("spam",)), "0")]
    bar_svg = parse(run_html(make_run(results))).find("svg")[0]
    assert len(bars(bar_svg)) == 1  # recall 0.0 is a (zero-width) bar, precision n/a is none
    assert "precision n/a" in [t.text() for t in bar_svg.find("text")]


def test_no_categories_and_no_latencies_are_said_not_drawn():
    root = parse(run_html(make_run([failed(example(0, "1")), failed(example(1, "0"))])))
    text = root.text()
    assert "the dataset has no categories" in text
    assert "No latencies" in text
    assert not root.find("svg")


def test_confusion_tables_hold_the_counts_and_shade_by_count():
    root = parse(run_html(make_run(categorised(), labels=DR)))
    confusion = root.one("table", id="confusion")
    assert [th.text() for th in confusion.one("thead").find("th")] == ["expected \\ predicted", *DR]
    assert confusion.cells() == [["DR0", "2", "0", "1", "1"], ["DR1", "0", "2", "0", "0"],
                                 ["DR2", "0", "1", "1", "0"], ["DR3", "1", "0", "0", "1"]]
    shaded = [td for td in confusion.find("td") if "style" in td.attrs]
    assert len(shaded) == 8 and all(td.text() != "0" for td in shaded)
    darkest = max(shaded, key=lambda td: td.attrs["style"] or "")
    assert darkest.text() == "2"
    binary = root.one("table", id="binary")  # positive: violation at level >= 1
    assert binary.cells() == [["violation", "5", "1"], ["allowed", "2", "2"]]
    assert root.one("table", id="metrics").cells() == [["0.714", "0.833", "0.769", "0.700", "5", "2", "1", "2", "0"]]


def test_a_run_with_0_1_labels_has_only_the_binary_confusion():
    root = parse(run_html(make_run(mistakes(2, 1, 0, 3))))
    assert not root.find("table", id="confusion")
    assert root.one("table", id="binary").cells() == [["violation", "3", "1"], ["allowed", "2", "0"]]


@pytest.mark.parametrize(("fp", "fn", "errors", "max_rows", "shown", "more"), [
    (15, 15, 0, 10, {"fp": 5, "fn": 5}, "20 more not shown (10 false positives, 10 false negatives)"),
    (2, 20, 3, 10, {"fp": 2, "fn": 5, "error": 3}, "15 more not shown (15 false negatives)"),
    (3, 4, 1, 200, {"fp": 3, "fn": 4, "error": 1}, None),
    (4, 4, 4, 0, {}, "12 more not shown"),
])
def test_the_mistakes_table_is_capped_fairly_and_says_what_was_left_out(fp, fn, errors, max_rows, shown, more):
    root = parse(run_html(make_run(mistakes(fp, fn, errors, right=2)), max_rows))
    rows = root.one("table", id="mistakes").body_rows()
    kinds = [r.attrs["data-kind"] for r in rows]
    assert kinds == [k for k in ("fp", "fn", "error") for _ in range(shown.get(k, 0))]
    notes = [p.text() for p in root.find("p", **{"class": "note"}) if "more not shown" in p.text()]
    if more is None:
        assert not notes
    else:
        assert len(notes) == 1 and notes[0].startswith(more) and "results.jsonl" in notes[0]


def test_mistake_rows_carry_their_kind_category_and_explanation():
    long_reasoning = "why " * 1000
    results = [answer(example(0, "0", ("weapons", "gore"), role="assistant"), "1", reasoning=long_reasoning),
               answer(example(1, "1", text="x" * 1000, context=(Turn("user", "earlier turn"),)), "0"),
               failed(example(2, "1", ("threats",))), answer(example(3, "1"), "1")]
    root = parse(run_html(make_run(results)))
    table = root.one("table", id="mistakes")
    assert [th.text() for th in table.one("thead").find("th")] == [
        "kind", "id", "line", "role", "expected", "predicted", "categories", "text", "rationale", "reasoning"]
    rows = table.body_rows()
    assert [(r.attrs["data-kind"], r.attrs["data-category"]) for r in rows] == [
        ("fp", "weapons|gore"), ("fn", ""), ("error", "threats")]
    fp, fn, error = table.cells()
    assert fp[:7] == ["fp", "e0", "1", "assistant", "0", "1", "weapons, gore"] and fp[8] == "rationale e0"
    details = rows[0].one("details")
    assert details.one("summary").text() == "reasoning"
    assert len(details.one("pre").text()) < 1600 and "more characters" in details.one("pre").text()
    assert fn[7].startswith("x" * 300 + "… [700 more characters]") and "user: earlier turn" in fn[7]
    assert error[5] == "error" and error[8] == "timeout: no answer within 30 s" and error[9] == ""
    box = root.one("div", **{"data-filter-for": "mistakes"})
    assert "hidden" in box.attrs  # shown by the script; without scripts every row simply stays visible
    assert [i.attrs["value"] for i in box.find("input", type="checkbox")] == ["fp", "fn", "error"]
    assert box.find("input", type="search")
    assert not any("hidden" in r.attrs or "style" in r.attrs for r in rows)


@pytest.mark.parametrize(("threshold", "kinds"), [(1, ["fp", "fn"]), (2, ["fn"]), (3, ["fp", "fn"])])
def test_mistakes_follow_the_run_threshold(threshold, kinds):
    results = [answer(example(0, "DR0"), "DR1"), answer(example(1, "DR3"), "DR1"), answer(example(2, "DR1"), "DR0"),
               answer(example(3, "DR2"), "DR3")]
    root = parse(run_html(make_run(results, threshold, labels=DR)))
    found = root.find("table", id="mistakes")
    assert [r.attrs["data-kind"] for t in found for r in t.body_rows()] == kinds
    header = root.one("table", **{"class": "info"}).text()
    assert ("threshold" in header) == (threshold != 1)


@pytest.mark.parametrize(("timing", "expected"), [
    (Timing(4.0, 10, 7), "10 items in 4.0 s (2.50 items/s), 7 classifier calls"),
    (Timing(0.0, 10, 0), "(n/a items/s), 0 classifier calls"),
    (None, None),
])
def test_the_header_traces_the_run(timing, expected):
    root = parse(run_html(make_run(categorised(), timing=timing)))
    rows = dict((name, value) for name, value in root.one("table", **{"class": "info"}).cells())
    assert rows["policy"] == "violence from policies/violence.md, digest 0123456789ab"
    assert rows["dataset"] == "sets/dev.jsonl (10 items)"
    assert (rows["model"], rows["base URL"], rows["reasoning effort"], rows["started"]) == (
        "gpt-oss-safeguard-20b", "http://127.0.0.1:8000/v1", "low", "2025-01-01T10:00:00")
    if expected is None:
        assert "speed" not in rows
    else:
        assert expected in rows["speed"]


def test_dataset_text_never_becomes_markup():
    attack = "<script>alert(1)</script>"
    quoting = 'x" onmouseover="alert(2)'
    info = RunInfo("<b>policy</b>", "d" * 64, "<img src=x>.md", "<i>set</i>.jsonl", "m", "low", "http://x", "now")
    results = [answer(example(0, "0", (quoting,), text=attack), "1", reasoning=attack, rationale=f"<u>{attack}</u>"),
               ItemResult(Example("<id>", attack, "1", True, None, "user", (Turn("user", attack),), 3), None,
                          Failure("http", attack))]
    page = run_html(make_run(results, info=info))
    root = parse(page)
    assert len(root.find("script")) == 1 and "alert" not in root.one("script").text()
    assert not root.find("b") and not root.find("img") and not root.find("i") and not root.find("u")
    assert not any("onmouseover" in node.attrs for node in root.walk())
    rows = root.one("table", id="mistakes").body_rows()
    assert rows[0].attrs["data-category"] == quoting
    assert root.one("table", id="mistakes").cells()[0][7] == attack
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    assert "<script>alert(1)" not in page


def test_a_route_eval_lists_each_policy_alone_and_the_actions():
    part_a = make_run(mistakes(1, 0, 0, 3), info=RunInfo("teen-violence", "a" * 64, "a.md", "s", "m", "low", "u", "t"))
    part_b = make_run(mistakes(0, 1, 0, 1), info=RunInfo("teen-self-harm", "b" * 64, "b.md", "s", "m", "low", "u", "t"))
    whole = make_run(mistakes(1, 1, 0, 4), info=RunInfo("route teen", "c" * 64, "route", "s", "m", "low", "u", "t"))
    run = EvalRun(whole.info, whole.results, whole.summary, None, (part_a, part_b), {"allow": 3, "block": 3})
    root = parse(run_html(run))
    assert root.one("table", id="parts").cells() == [["teen-violence", "4", "0.750", "1.000", "0.857"],
                                                     ["teen-self-harm", "2", "1.000", "0.500", "0.667"]]
    assert root.one("table", id="actions").cells() == [["allow", "3"], ["block", "3"]]
    assert not parse(run_html(whole)).find("table", id="parts")


@pytest.mark.parametrize(("fixed", "broke", "p_text", "verdict"), [
    (6, 0, "p = 0.031", "unlikely to be chance"),
    (1, 1, "p = 1.000", "could be chance"),
    (12, 0, "p < 0.001", "unlikely to be chance"),
])
def test_comparison_shows_intervals_mcnemar_and_flips(fixed, broke, p_text, verdict):
    _, root, comparison = comparison_pages(fixed, broke)
    headers = root.find("table", **{"class": "info"})
    assert len(headers) == 2 and "violence-v2" in headers[1].text() and "digest ffffffffffff" in headers[1].text()
    deltas = {cells[0]: cells for cells in root.one("table", id="deltas").cells()}
    for d in comparison.deltas:
        shown = "n/a" if d.interval is None else f"[{delta(d.interval.low)}, {delta(d.interval.high)}]"
        assert deltas[d.name][4] == shown
    if fixed >= 6:  # six or more positives: recall is defined in (nearly) every resample
        assert deltas["recall"][4].startswith("[")
    sentence = next(p.text() for p in root.find("p") if "McNemar" in p.text())
    assert f"{fixed} fixed, {broke} broke, {p_text}" in sentence and verdict in sentence
    recall = {cells[0]: cells[1:] for cells in root.one("table", id="category-recall").cells()}
    assert recall["weapons"][1] == f"{fixed / (fixed + broke):.3f}"
    assert recall["gore"] == ["n/a", "n/a", "n/a"]
    flips = root.one("table", id="flips")
    rows = flips.body_rows()
    assert [r.attrs["data-effect"] for r in rows] == ["fixed"] * fixed + ["broke"] * broke
    first = flips.cells()[0]
    assert first[:5] == ["e0", "DR2", "fixed", "allowed DR0", "violation DR2"]
    assert first[6].startswith("old says e0") and first[7].startswith("new says e0")
    assert [d.one("pre").text() for d in rows[0].find("details")] == ["old thinking e0", "new thinking e0"]
    assert root.one("div", **{"data-filter-for": "flips"}).attrs["data-key"] == "data-effect"
    detail = root.find("h1")[-1]
    assert detail.text() == "New version in detail"
    assert (len(root.find("table", id="mistakes")) == 1) == (broke > 0)  # the new run's own mistakes, if any


def test_comparison_caps_the_flips():
    _, root, _ = comparison_pages(flips_fixed=8, flips_broke=4, max_rows=5)
    assert len(root.one("table", id="flips").body_rows()) == 5
    note = next(p.text() for p in root.find("p", **{"class": "note"}) if "more not shown" in p.text())
    assert note.startswith("7 more not shown (3 fixed, 4 broke)")


@pytest.mark.parametrize(("sizes", "total", "expected"), [
    ([15, 15, 0], 10, [5, 5, 0]), ([15, 15, 1], 10, [5, 4, 1]), ([1, 30, 2], 9, [1, 6, 2]),
    ([3, 3, 3], 100, [3, 3, 3]), ([3, 3], 0, [0, 0]), ([], 5, []),
])
def test_fair_shares(sizes, total, expected):
    assert fair_shares(sizes, total) == expected


# svg.py


@pytest.mark.parametrize(("values", "bins", "expected"), [
    ([0.0, 10.0], 2, (0.0, 5.0, [1, 1])),
    ([0.0, 4.9, 5.0, 9.9, 10.0], 2, (0.0, 5.0, [2, 3])),  # the last bin holds the maximum
    ([7.0, 7.0, 7.0], 4, (7.0, 0.25, [3, 0, 0, 0])),  # all equal: one full bin
    ([float(v) for v in range(100)], 10, (0.0, 9.9, [10] * 10)),
])
def test_bin_counts(values, bins, expected):
    low, width, counts = bin_counts(values, bins)
    assert (low, counts) == (expected[0], expected[2]) and width == pytest.approx(expected[1])


def test_histogram_bars_are_proportional_with_counts_in_tooltips():
    svg = parse(histogram([100.0, 100.0, 100.0, 200.0, 300.0], 4))
    heights = [float(r.attrs["height"] or 0) for r in bars(svg)]
    assert len(heights) == 4 and heights[0] == pytest.approx(3 * heights[2], abs=0.2) and heights[1] == 0
    assert bars(svg)[0].one("title").text() == "100 ms to 150 ms: 3 items"


def test_bar_chart_escapes_names_and_skips_missing_values():
    svg = parse(bar_chart([("<b>a</b>", (0.5, None)), ("b", (1.0, 0.0))], ("recall", "precision")))
    widths = [float(r.attrs["width"] or 0) for r in bars(svg)]
    assert len(widths) == 3 and widths[0] * 2 == pytest.approx(widths[1]) and widths[2] == 0
    assert not svg.find("b") and "<b>a</b>" in [t.one("title").text() for t in svg.find("text") if t.find("title")]
    assert len(svg.find("rect", **{"class": "key"})) == 2
