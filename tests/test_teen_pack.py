"""The shipped teen pack against the rules of its second edition (issue 15), and its README's examples.

The rules are pure checks in teen_rules.py. Each is run on the shipped files, and on a small made-up pack that
follows the rules and on copies of it broken one way at a time, so a check that can never fail is caught too.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import pytest
import yaml
from teen_rules import (
    FRAMING,
    FRAMINGS,
    IGNORE,
    SIMILAR,
    SLUGS,
    TASK,
    TIE_BREAKS,
    example_text,
    in_policy_examples,
    near_copies,
    policy_problems,
    read_rows,
    target_problems,
)

from guardrail_proxy.cli import build_parser
from guardrail_proxy.config import Action
from guardrail_proxy.datasets import load_dataset
from guardrail_proxy.lint import body_tokens
from guardrail_proxy.loader import load_config
from guardrail_proxy.policies import Policy, parse_policy

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "teen_safety_policies"


# --- the shipped pack -----------------------------------------------------------------------------------

def shipped(slug: str) -> tuple[str, Policy, list[dict[str, Any]]]:
    raw = (PACK / slug / "policy.md").read_text(encoding="utf-8")
    return raw, parse_policy(raw, slug), read_rows(PACK / slug / "examples.jsonl")


def test_the_pack_is_the_six_policies():
    assert tuple(sorted(p.parent.name for p in PACK.glob("*/policy.md"))) == SLUGS


@pytest.mark.parametrize("slug", SLUGS)
def test_policy_follows_the_shared_rules(slug):
    raw, _, _ = shipped(slug)
    assert policy_problems(raw, slug) == []


@pytest.mark.parametrize("slug", SLUGS)
def test_example_set_meets_the_targets(slug):
    _, policy, rows = shipped(slug)
    assert target_problems(rows, policy) == []
    assert len(load_dataset(PACK / slug / "examples.jsonl", policy=policy)) == len(rows)  # the loader takes them


@pytest.mark.parametrize("slug", SLUGS)
def test_in_policy_examples_are_not_near_copies_of_the_set(slug):
    raw, _, rows = shipped(slug)
    examples = [example_text(content) for content, _ in in_policy_examples(raw)]
    texts = [row["text"] for row in rows]
    assert [(examples[i], rows[j]["id"], r) for i, j, r in near_copies(examples, texts)] == []
    with_context = [row for row in rows if row.get("context")]  # an item's context is set text too
    contexts = [row["context"] for row in with_context]
    assert [(examples[i], with_context[j]["id"], r) for i, j, r in near_copies(examples, contexts)] == []


@pytest.mark.parametrize("slug", SLUGS)
def test_items_are_not_near_copies_of_each_other(slug):
    _, _, rows = shipped(slug)
    texts = [row["text"] for row in rows]
    assert [(rows[i]["id"], rows[j]["id"], r) for i, j, r in near_copies(texts, texts, same=True)] == []


# --- the checks themselves, on a made-up pack -----------------------------------------------------------

def sample_policy(filler: int = 900) -> str:
    blocks = [("Asking why a vape harms lungs", 0), ("Assistant: I won't help with that", 0),
              ("Cheering a friend on to try it", 1), ("For a friend: where to buy one", 2),
              ("Assistant: go to the shop behind the station", 3), ("Story where someone explains it", 3)]
    examples = "\n".join(f'Content: "{text}"\nAnswer: XX{level}\n' for text, level in blocks)
    return f"""---
id: sample
title: Sample
label_prefix: XX
labels: {{XX0: Allowed, XX1: Low, XX2: Medium, XX3: High}}
---
# Sample

## Output format
Answer with one code: XX0, XX1, XX2 or XX3.

## Purpose and scope
{TASK.format(P="XX")}
{FRAMING}
Scope.

## Definitions
Terms.{" t" * (filler // 2)}

## Criteria
### XX0 – Allowed
### XX1 – Low
### XX2 – Medium
### XX3 – High

## Does not violate
Education.

## Tie-breaks and escalation
{TIE_BREAKS[0]}
{TIE_BREAKS[1].format(P="XX")}
- Weapons: dangerous-content.
- {IGNORE}

## Output format reminder
One code only: XX0, XX1, XX2 or XX3.

## Examples
{examples}"""


def sample_rows() -> list[dict[str, Any]]:
    """86 rows that just meet the targets: 50 allowed (40 hard negatives, 6 refusals), 12 of each violation."""
    kinds = ([("user", 0, {"hard_negative": True})] * 40 + [("assistant", 0, {"refusal": True})] * 6
             + [("assistant", 0, {})] * 4 + [("assistant", level, {}) for level in (1, 2, 3)] * 2
             + [("user", level, {}) for level in (1, 2, 3)] * 10)
    rows = [{"id": f"xx-{n:03d}", "role": role, "text": f"item {n}", "label": f"XX{level}", "hard_negative": False,
             **extra} for n, (role, level, extra) in enumerate(kinds, start=1)]
    for row in rows[-10:]:
        row["hard_positive"] = True
    for row, framing in zip(rows[-8:], sorted(FRAMINGS) * 2, strict=False):
        row["framing"] = framing
    return rows


def test_the_made_up_pack_passes():
    raw = sample_policy()
    assert 400 <= body_tokens(parse_policy(raw, "s").text) <= 650
    assert policy_problems(raw, "sample.md") == []
    assert target_problems(sample_rows(), parse_policy(raw, "s")) == []


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda t: t.replace("Task: label", "Task: classify"), "shared Task: and Framing:"),
    (lambda t: t.replace("Scope.\n", "").replace(FRAMING + "\n", "Scope.\n" + FRAMING + "\n"), "shared Task:"),
    (lambda t: t.replace("pick the higher one", "pick the lower one"), "tie-breaks lack '- Unsure"),
    (lambda t: t.replace(f"- {IGNORE}\n", ""), "tie-breaks lack 'Ignore"),
    (lambda t: t.replace("dangerous-content", "the other policy"), "route nothing to a sibling"),
    (lambda t: t.replace('Content: "Asking why a vape harms lungs"\nAnswer: XX0\n', ""), "examples answer"),
    (lambda t: t.replace("Answer: XX0", "Answer: XX1", 1), "examples answer"),
    (lambda t: t.replace("Answer: XX3", "Answer: XX2"), "examples answer"),
    (lambda t: t.replace("## Does not violate\nEducation.\n\n", ""), "sections are"),
    (lambda t: t.replace("### XX2 – Medium\n", ""), "criteria subsections"),
    (lambda t: sample_policy(filler=0), "body is"),
    (lambda t: sample_policy(filler=2000), "body is"),
])
def test_a_broken_policy_names_the_rule(edit, problem):
    assert any(problem in found for found in policy_problems(edit(sample_policy()), "sample.md"))


def edited(change: Callable[[list[dict[str, Any]]], object]) -> list[dict[str, Any]]:
    rows = sample_rows()
    change(rows)
    return rows


@pytest.mark.parametrize(("rows", "problem"), [
    (sample_rows()[:79], "items, want at least 80"),
    (edited(lambda r: [row.update(hard_negative=False) for row in r[:20]]), "hard negatives, want"),
    (edited(lambda r: r.__setitem__(slice(0, 16), [{**row, "label": "XX1"} for row in r[16:32]])), "XX0 items"),
    (edited(lambda r: [r.remove(row) for row in [row for row in r if row["label"] == "XX2"][:5]]), "XX2 items"),
    (edited(lambda r: [row.update(role="user") for row in r[40:46]]), "assistant items"),
    (edited(lambda r: [r[n].pop("refusal") for n in (40, 41)]), "4 refusals, want at least 5"),
    (edited(lambda r: [row.update(role="user") for row in r[50:52]]), "4 violating assistant replies"),
    (edited(lambda r: [row.pop("hard_positive") for row in r[-3:]]), "hard positives"),
    (edited(lambda r: r[-1].update(framing="satire")), "framing 'satire' is not one of"),
    (edited(lambda r: r[1].update(id="xx-001")), "id xx-001 is used 2 times"),
    (edited(lambda r: r[2].update(id="ars-3")), "id is not xx-NNN"),
    (edited(lambda r: r[3].update(label="GV1")), "label 'GV1' is not one of"),
    (edited(lambda r: r[4].pop("hard_negative")), "hard_negative must be true or false"),
    (edited(lambda r: r[-1].update(hard_negative=True)), "hard_negative goes with XX0"),
    (edited(lambda r: r[0].update(refusal=True)), "a refusal is an assistant item"),
])
def test_a_set_that_misses_a_target_names_it(rows, problem):
    assert any(problem in found for found in target_problems(rows, parse_policy(sample_policy(), "s")))


def test_near_copies_agree_with_the_plain_ratio():
    texts = ["How do I hide skipping lunch from my mum?", "how do I hide skipping lunch from my dad?",
             "Where can I buy a vape without ID?", "Tell me a calm story about a river.",
             "where can i buy vapes with no id", "A calm story about a river, please."]
    plain = [(i, j, round(SequenceMatcher(None, a.lower(), b.lower()).ratio(), 3))
             for j, b in enumerate(texts) for i, a in enumerate(texts[:j])]
    assert near_copies(texts, texts, same=True) == [pair for pair in plain if pair[2] >= SIMILAR] != []
    across = near_copies(texts[:2], texts[2:])
    assert across == [(i, j, r) for i, a in enumerate(texts[:2]) for j, b in enumerate(texts[2:])
                      if (r := round(SequenceMatcher(None, a.lower(), b.lower()).ratio(), 3)) >= SIMILAR] == []


# --- the README -----------------------------------------------------------------------------------------

def readme_section(title: str) -> str:
    text = (PACK / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_the_readmes_routes_load_and_block_as_it_says(tmp_path):
    blocks = re.findall(r"```yaml\n(.*?)```", readme_section("Our levels and the official labels"), re.DOTALL)
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    proxy = yaml.safe_load((config / "proxy.yaml").read_text())
    proxy["policies"]["dirs"] = [str(PACK)]
    (config / "proxy.yaml").write_text(yaml.safe_dump(proxy))
    for block in blocks:
        name = re.search(r"config/routes/(\S+)\.yaml", block)
        assert name, block
        (config / "routes" / f"{name.group(1)}.yaml").write_text(block)
    loaded = load_config(config / "proxy.yaml")
    actions = {(route.name, rule.id): [rule.levels[level] for level in (1, 2, 3)]
               for route in loaded.routes for rule in route.policies if route.name != "default"}
    assert {name for name, _ in actions} == {"teen", "teen-strict", "teen-lenient"}
    assert all(actions["teen-strict", slug] == [Action.BLOCK] * 3 for slug in SLUGS)
    assert all(actions["teen-lenient", slug][2] == Action.BLOCK for slug in SLUGS)
    assert all(actions["teen-lenient", slug][0] != Action.BLOCK for slug in SLUGS)
    assert actions["teen", "graphic-sexual-content"] == [Action.BLOCK] * 3
    assert all(actions["teen", slug] == [Action.ANNOTATE, Action.BLOCK, Action.BLOCK]
               for slug in SLUGS if slug != "graphic-sexual-content")


def test_the_readmes_acceptance_command_parses():
    section = readme_section("Acceptance run against the official validation sets")
    [command] = [line.strip() for line in section.splitlines() if line.strip().startswith("guardrail-proxy eval")]
    slug = "dangerous-roleplay"
    argv = shlex.split(command.replace("$OFFICIAL", "/pack").replace("$slug", slug))
    args = build_parser().parse_args(argv[1:])
    assert (args.route, args.dataset, args.threshold) == ("teen", f"/pack/datasets/{slug}.csv", 1)
    assert all(s in section for s in SLUGS)


def test_the_readme_has_the_coverage_table_header():
    section = readme_section("Coverage against the official pack")
    assert "| slug | official sub-topic (our words) | our criterion | our level |" in section
