"""Strict parsing of the classifier's final answer. Pure.

Three answer formats, chosen by the policy's front matter:
  label   a single code such as GV2 (prefix + level; level 0 = allowed)
  binary  exactly 0 or 1
  json    {"violation": 0|1, "policy_category": ..., "rationale": ...}

Anything else raises ClassifierError(kind="unparseable"). An empty answer (typically a token budget spent
on reasoning) is an error too. Nothing here ever turns an odd answer into an allow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import ClassifierError
from .policies import Policy

WRAPPING = re.compile(r"^[`\"'*\s]*(.*?)[`\"'*\s.]*$", re.DOTALL)
CODE_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class Answer:
    violation: bool
    severity: int
    label: str | None
    rationale: str | None = None


def unparseable(message: str, content: str) -> ClassifierError:
    shown = content if len(content) <= 200 else content[:200] + "..."
    return ClassifierError(f"{message}; the classifier answered {shown!r}", kind="unparseable")


def parse_answer(content: str | None, policy: Policy) -> Answer:
    if content is None or not content.strip():
        raise ClassifierError(
            "the classifier returned an empty answer (often a max_tokens cap spent on reasoning)",
            kind="unparseable")
    text = content.strip()
    if policy.format == "bundle":  # several policies in one answer (bundles.py): exactly one line per member
        answers = parse_bundle(text, policy.members)
        return Answer(any(a.violation for a in answers), max((a.severity for a in answers), default=0), None)
    if policy.format == "json" or text.startswith(("{", "```")):
        return parse_json_answer(text, policy)
    bare = WRAPPING.match(text).group(1)  # type: ignore[union-attr]  # the pattern matches any string
    if policy.format == "binary":
        return parse_binary(bare, text)
    return parse_label(bare, text, policy)


def parse_binary(bare: str, original: str) -> Answer:
    if bare == "0":
        return Answer(False, 0, "0")
    if bare == "1":
        return Answer(True, 1, "1")
    raise unparseable("expected exactly 0 or 1", original)


def parse_label(bare: str, original: str, policy: Policy) -> Answer:
    prefix = policy.label_prefix or ""
    match = re.fullmatch(rf"{re.escape(prefix)}([0-9]+)", bare)
    if not match or bare not in policy.labels:
        codes = ", ".join(policy.labels)
        raise unparseable(f"expected one label code of {codes}", original)
    level = int(match.group(1))
    return Answer(level > 0, level, bare)


def parse_json_answer(text: str, policy: Policy) -> Answer:
    fenced = CODE_FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise unparseable("expected a JSON object", text) from None
    if not isinstance(data, dict) or "violation" not in data:
        raise unparseable('expected a JSON object with a "violation" field', text)
    violation = data["violation"]
    if violation not in (0, 1) or isinstance(violation, float):
        raise unparseable('"violation" must be 0 or 1', text)
    category = data.get("policy_category")
    rationale = data.get("rationale")
    rationale = rationale if isinstance(rationale, str) else None
    if policy.format == "label":
        # A label policy answered in JSON: accept it only when the category is one of its codes.
        if not isinstance(category, str) or category not in policy.labels:
            raise unparseable(f"expected policy_category to be one of {', '.join(policy.labels)}", text)
        level = int(category[len(policy.label_prefix or ""):])
        if bool(level) != bool(violation):
            raise unparseable("violation and policy_category disagree", text)
        return Answer(level > 0, level, category, rationale)
    label = category if isinstance(category, str) and category else str(int(violation))
    return Answer(bool(violation), int(violation), label, rationale)


MEMBER_LINE = re.compile(r"^\s*(?:[-*]\s*)?[`*\"']*([a-z0-9][a-z0-9_.-]*)[`*\"']*\s*:\s*(.*?)\s*$")


def parse_bundle(raw: str, members: tuple[Policy, ...]) -> list[Answer]:
    """A combined answer, strictly: exactly one non-empty line per member, in the prompt's order, each naming
    its member and read with that member's parser. Anything else (a lead-in sentence, an echoed line of the
    content, a missing or extra line) is unparseable: a line the model did not write for a member must never be
    taken as its verdict."""
    lines = [line for line in raw.splitlines() if line.strip()]
    if len(lines) != len(members):
        raise unparseable(f"expected {len(members)} lines, one per policy ({', '.join(m.id for m in members)})",
                          raw)
    answers = []
    for line, member in zip(lines, members, strict=True):
        match = MEMBER_LINE.match(line)
        if not match or match.group(1) != member.id:
            raise unparseable(f"expected the line for policy '{member.id}' here, in the prompt's order", raw)
        try:
            answers.append(parse_answer(match.group(2), member))
        except ClassifierError as exc:
            raise ClassifierError(f"policy '{member.id}' in a combined answer: {exc.message}",
                                  kind=exc.kind) from None
    return answers
