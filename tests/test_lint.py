"""`policy lint`: the shipped pack passes; broken policies fail with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_proxy.cli import main
from guardrail_proxy.datasets import load_dataset
from guardrail_proxy.lint import Limits, lint_path, lint_text
from guardrail_proxy.policies import load_policy_file

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


@pytest.mark.parametrize("slug", SLUGS)
def test_every_shipped_policy_passes_lint(slug):
    assert [str(f) for f in lint_path(PACK / slug / "policy.md")] == []


@pytest.mark.parametrize("slug", SLUGS)
def test_every_example_set_parses_and_meets_the_bar(slug):
    policy = load_policy_file(PACK / slug / "policy.md")
    examples = load_dataset(PACK / slug / "examples.jsonl", policy=policy)
    rows = [json.loads(line) for line in (PACK / slug / "examples.jsonl").read_text().splitlines()]
    assert len(examples) >= 40
    assert {e.label for e in examples} <= set(policy.labels)
    assert sum(r.get("hard_negative", False) and r["label"].endswith("0") for r in rows) >= 0.4 * len(rows)
    assert {e.role for e in examples} == {"user", "assistant"}


def test_a_good_policy_is_clean():
    assert lint_text(GOOD, "demo.md", LOOSE) == []


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
    assert any(message in f.message and f.line == line for f in findings), findings


def test_length_limits():
    assert any("tokens" in f.message for f in lint_text(GOOD, "demo.md", Limits()))


def test_bad_example_set_is_reported_with_its_line(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "policy.md").write_text(GOOD)
    (tmp_path / "demo" / "examples.jsonl").write_text(
        '{"text": "fine", "label": "DM0"}\n{"text": "bad", "label": "XX9"}\n')
    findings = lint_path(tmp_path, LOOSE)
    assert [(Path(f.file).name, f.line) for f in findings] == [("examples.jsonl", 2)]


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["policy", "lint", str(PACK)]) == 0
    bad = tmp_path / "bad.md"
    bad.write_text(GOOD.replace("## Examples", "## Samples"))
    assert main(["policy", "lint", "--min-tokens", "0", str(bad)]) == 1
    assert f"{bad}:1: missing section '## Examples'" in capsys.readouterr().err
