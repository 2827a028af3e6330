"""`policy lint`: the shipped pack passes; broken policies fail with file and line; the body's length is
counted and reported for every policy. The pack's own content rules (SPEC of issue 15) are test_teen_pack.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_proxy.cli import main
from guardrail_proxy.lint import Finding, Limits, body_tokens, lint_path, lint_text
from guardrail_proxy.policies import parse_policy

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "teen_safety_policies"
SLUGS = sorted(p.parent.name for p in PACK.glob("*/policy.md"))
LOOSE = Limits(min_tokens=0, max_tokens=10_000)

GOOD = """---
id: demo
title: Demo
label_prefix: DM
labels: {DM0: Allowed, DM1: Low, DM2: Medium, DM3: High}
---
# Demo

## Output format
Answer with one code: DM0, DM1, DM2 or DM3.

## Purpose and scope
Scope.

## Definitions
Terms.

## Criteria
### DM0 – Allowed
### DM1 – Low
### DM2 – Medium
### DM3 – High

## Does not violate
Education.

## Tie-breaks and escalation
Pick the higher level.

## Output format reminder
One code only: DM0, DM1, DM2 or DM3.

## Examples
Content: "a"
Answer: DM0

Content: "b"
Answer: DM1

Content: "c"
Answer: DM2

Content: "d"
Answer: DM3
"""


def test_six_policies_ship():
    assert SLUGS == ["age-restricted-goods-and-services", "dangerous-content", "dangerous-roleplay",
                     "graphic-sexual-content", "graphic-violent-content", "harmful-body-ideals"]


def problems(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.kind != "note"]


def sized(tokens: int, text: str = GOOD) -> str:
    """`text` with its body padded to exactly `tokens` * 4 characters."""
    missing = tokens * 4 - len(parse_policy(text, "demo.md").text)
    assert missing >= 0
    return text.replace("Scope.", "Scope." + "x" * missing)


@pytest.mark.parametrize("slug", SLUGS)
def test_every_shipped_policy_passes_lint(slug):
    findings = lint_path(PACK / slug / "policy.md")
    assert problems(findings) == []
    assert next(f.message for f in findings if f.kind == "note").endswith("tokens (estimated as characters / 4)")


def test_a_good_policy_is_clean_but_for_its_length_note():
    findings = lint_text(GOOD, "demo.md", LOOSE)
    tokens = body_tokens(parse_policy(GOOD, "demo.md").text)
    assert findings == [Finding("demo.md", 1, f"body: {tokens} tokens (estimated as characters / 4)", "note")]


@pytest.mark.parametrize(("edit", "message", "line"), [
    (lambda t: t.replace("## Definitions\nTerms.\n\n", ""), "missing section '## Definitions'", 1),
    (lambda t: t.replace("### DM2 – Medium\n", ""), "no '### DM2' subsection", 1),
    (lambda t: t.replace("Answer: DM3", "Answer: DM4"), "label code DM4 is not declared", 44),
    (lambda t: t.replace("One code only: DM0, DM1, DM2 or DM3.", "One code only."), "does not name DM0", 1),
    (lambda t: t.replace('Content: "d"\nAnswer: DM3\n', ""), "3 labelled examples", 1),
    (lambda t: t.replace("## Purpose and scope\nScope.\n\n", "") + "\n## Purpose and scope\nScope.\n",
     "out of order", 1),
    (lambda t: t.replace("label_prefix: DM\n", ""), "label_prefix", 1),
])
def test_broken_policies_name_the_problem(edit, message, line):
    findings = lint_text(edit(GOOD), "demo.md", LOOSE)
    assert any(message in f.message and f.line == line and f.problem for f in findings), findings


def test_the_default_limits():
    assert (Limits().min_tokens, Limits().max_tokens, Limits().min_examples, Limits().max_examples) == (400, 650, 4, 6)


@pytest.mark.parametrize(("tokens", "in_range"), [(399, False), (400, True), (560, True), (650, True), (651, False)])
def test_body_length_at_the_boundaries(tokens, in_range):
    [length] = [f for f in lint_text(sized(tokens), "demo.md") if "tokens" in f.message]
    assert length.message.startswith(f"body: {tokens} tokens (estimated as characters / 4)")
    assert (length.kind, length.problem) == (("note", False) if in_range else ("error", True))
    assert in_range or length.message.endswith("; aim for 400-650")


@pytest.mark.parametrize(("characters", "tokens"), [(0, 0), (3, 0), (4, 1), (2599, 649), (2600, 650)])
def test_the_estimate_is_characters_over_four_rounded_down(characters, tokens):
    assert body_tokens("x" * characters) == tokens


def test_the_front_matter_is_not_counted():
    text = sized(600)
    padded = text.replace("title: Demo", "title: Demo\nrefusal: " + "a long refusal. " * 200)
    assert len(padded) - len(text) > 3000
    assert [f for f in lint_text(padded, "demo.md") if f.problem] == []
    assert [f.message for f in lint_text(padded, "demo.md")] == [f.message for f in lint_text(text, "demo.md")]


@pytest.mark.parametrize(("examples", "in_range"), [(3, False), (4, True), (6, True), (7, False)])
def test_example_count_at_the_boundaries(examples, in_range):
    blocks = "".join(f'Content: "item {n}"\nAnswer: DM{n % 4}\n\n' for n in range(examples))
    text = GOOD.split("## Examples\n")[0] + "## Examples\n" + blocks
    found = [f for f in lint_text(text, "demo.md", LOOSE) if "labelled examples" in f.message]
    assert found == ([] if in_range else [Finding("demo.md", 1, f"{examples} labelled examples; aim for 4-6")])


def test_bad_example_set_is_reported_with_its_line(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "policy.md").write_text(GOOD)
    (tmp_path / "demo" / "examples.jsonl").write_text(
        '{"text": "fine", "label": "DM0"}\n{"text": "bad", "label": "XX9"}\n')
    findings = lint_path(tmp_path, LOOSE)
    assert [(Path(f.file).name, f.line) for f in findings if f.problem] == [("examples.jsonl", 2)]


def test_cli_reports_every_policys_body_length_and_exits_by_problems(tmp_path, capsys):
    for name, tokens in (("a", 420), ("b", 640)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "policy.md").write_text(sized(tokens))
    assert main(["policy", "lint", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name, tokens in (("a", 420), ("b", 640)):
        assert f"{tmp_path / name / 'policy.md'}:1: note: body: {tokens} tokens (estimated as characters / 4)" in out
    assert out.rstrip().endswith(f"ok: {tmp_path}")
    long = tmp_path / "c.md"
    long.write_text(sized(651))
    assert main(["policy", "lint", str(long)]) == 1
    assert f"{long}:1: body: 651 tokens (estimated as characters / 4); aim for 400-650" in capsys.readouterr().err
    assert main(["policy", "lint", "--max-tokens", "700", str(long)]) == 0
    bad = tmp_path / "bad.md"
    bad.write_text(GOOD.replace("## Examples", "## Samples"))
    assert main(["policy", "lint", "--min-tokens", "0", str(bad)]) == 1
    assert f"{bad}:1: missing section '## Examples'" in capsys.readouterr().err
