"""`guardrail-proxy policy lint`: structure, label-code consistency, length, and example sets. Pure core.

A policy in our format needs, in this order, the sections below; its label codes must agree between the
front matter, the criteria, the output contract and the examples; the length of its body (the text after
the front matter: what the classifier reads) should sit where gpt-oss-safeguard is most accurate, estimated as
characters / 4. Every policy gets a note with that estimate, in range or not. A sibling `examples.jsonl` must
parse and use only the policy's codes. A policy.md with no front matter is read in the official pack's layout
instead (`lint_official`), where the whole file is the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .datasets import load_dataset
from .errors import ConfigError
from .official_csv import read_official_csv
from .official_pack import dataset_path, level_names, official_policy
from .policies import Policy, parse_policy

REQUIRED_SECTIONS = (
    "Output format",
    "Purpose and scope",
    "Definitions",
    "Criteria",
    "Does not violate",
    "Tie-breaks and escalation",
    "Output format reminder",
    "Examples",
)
SECTION = re.compile(r"^##\s+(.+?)\s*$")
ANSWER = re.compile(r"^Answer:\s*(\S+)\s*$")
CODE_LIKE = re.compile(r"\b([A-Z]{1,6})([0-9]{1,2})\b")
ESTIMATE = "estimated as characters / 4"
Kind = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    message: str
    kind: Kind = "error"  # a warning or a note is shown, but does not fail the lint

    @property
    def problem(self) -> bool:
        return self.kind == "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {'' if self.problem else self.kind + ': '}{self.message}"


@dataclass(frozen=True)
class Limits:
    min_tokens: int = 400  # of the body, the text the classifier reads
    max_tokens: int = 650
    min_examples: int = 4
    max_examples: int = 6


def body_tokens(body: str) -> int:
    """The token estimate lint uses: characters / 4, rounded down."""
    return len(body) // 4


def length_finding(source: str, body: str, limits: Limits, out_of_range: Kind = "error") -> Finding:
    """Always one finding: a note with the estimate when it is in range, else `out_of_range` saying the target."""
    tokens = body_tokens(body)
    message = f"body: {tokens} tokens ({ESTIMATE})"
    if limits.min_tokens <= tokens <= limits.max_tokens:
        return Finding(source, 1, message, "note")
    return Finding(source, 1, f"{message}; aim for {limits.min_tokens}-{limits.max_tokens}", out_of_range)


def sections(lines: list[str]) -> list[tuple[str, int, int]]:
    """(title, first line number, last line number) of each `## ` section, 1-based."""
    found: list[tuple[str, int]] = [(m.group(1), i + 1) for i, line in enumerate(lines)
                                    if (m := SECTION.match(line))]
    bounds = [n for _, n in found[1:]] + [len(lines) + 1]
    return [(title, start, end - 1) for (title, start), end in zip(found, bounds, strict=True)]


def lint_text(raw: str, source: str, limits: Limits = Limits()) -> list[Finding]:
    try:
        policy = parse_policy(raw, source)
    except ConfigError as exc:
        return [Finding(source, 1, f"{exc.field}: {exc.reason}")]
    lines = raw.splitlines()
    findings = check_sections(lines, source)
    findings += check_codes(policy, lines, source)
    findings.append(length_finding(source, policy.text, limits))
    findings += check_examples(lines, policy, source, limits)
    return findings


def check_sections(lines: list[str], source: str) -> list[Finding]:
    titles = [t for t, _, _ in sections(lines)]
    findings = [Finding(source, 1, f"missing section '## {name}'") for name in REQUIRED_SECTIONS
                if name not in titles]
    present = [t for t in titles if t in REQUIRED_SECTIONS]
    expected = [name for name in REQUIRED_SECTIONS if name in present]
    if present != expected:
        findings.append(Finding(source, 1, f"sections out of order: expected {' > '.join(expected)}"))
    return findings


def section_lines(lines: list[str], title: str) -> list[tuple[int, str]]:
    for name, start, end in sections(lines):
        if name == title:
            return [(n, lines[n - 1]) for n in range(start + 1, end + 1)]
    return []


def check_codes(policy: Policy, lines: list[str], source: str) -> list[Finding]:
    if policy.format != "label":
        return []
    codes = set(policy.labels)
    findings = []
    for number, line in enumerate(lines, start=1):
        for match in CODE_LIKE.finditer(line):
            code = match.group(0)
            if match.group(1) == policy.label_prefix and code not in codes:
                findings.append(Finding(source, number, f"label code {code} is not declared in labels"))
    criteria = "\n".join(text for _, text in section_lines(lines, "Criteria"))
    for code in sorted(codes):
        if not re.search(rf"^###\s+{code}\b", criteria, re.MULTILINE):
            findings.append(Finding(source, 1, f"criteria have no '### {code}' subsection"))
    for title in ("Output format", "Output format reminder"):
        contract = " ".join(text for _, text in section_lines(lines, title))
        missing = [code for code in sorted(codes) if code not in contract]
        if contract and missing:
            findings.append(Finding(source, 1, f"'{title}' does not name {', '.join(missing)}"))
    return findings


def check_examples(lines: list[str], policy: Policy, source: str, limits: Limits) -> list[Finding]:
    answers = [(n, m.group(1)) for n, text in section_lines(lines, "Examples") if (m := ANSWER.match(text))]
    findings = []
    if not limits.min_examples <= len(answers) <= limits.max_examples:
        findings.append(Finding(source, 1, f"{len(answers)} labelled examples; "
                                           f"aim for {limits.min_examples}-{limits.max_examples}"))
    valid = set(policy.labels) if policy.format == "label" else {"0", "1"}
    for number, answer in answers:
        if policy.format != "json" and answer not in valid:
            findings.append(Finding(source, number, f"example answer {answer} is not one of "
                                                    f"{', '.join(sorted(valid))}"))
    if answers and policy.format == "label" and not any(a.endswith("0") for _, a in answers):
        findings.append(Finding(source, 1, "the examples show no allowed (level 0) case"))
    return findings


def lint_example_set(path: Path, policy: Policy) -> list[Finding]:
    try:
        examples = load_dataset(path, policy=policy)
    except ConfigError as exc:
        line = int(exc.field.split()[-1]) if exc.field.startswith("line ") else 1
        return [Finding(str(path), line, exc.reason)]
    if not examples:
        return [Finding(str(path), 1, "the example set is empty")]
    return []


def lint_path(path: Path, limits: Limits = Limits()) -> list[Finding]:
    """Lint a policy file, or every policy in a directory (`<slug>/policy.md` and `*.md`)."""
    if path.is_dir():
        files = sorted(path.glob("*/policy.md")) + sorted(p for p in path.glob("*.md")
                                                          if p.name.lower() != "readme.md")
        if not files:
            return [Finding(str(path), 1, "no policy files found")]
        return [f for file in files for f in lint_path(file, limits)]
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Finding(str(path), 1, f"cannot read: {exc}")]
    if not raw.lstrip().startswith("---"):
        return lint_official(raw, path, limits)  # no front matter: the official pack's layout
    findings = lint_text(raw, str(path), limits)
    examples = path.parent / "examples.jsonl"
    if path.name == "policy.md" and examples.exists() and not any(f.problem for f in findings):
        findings += lint_example_set(examples, parse_policy(raw, str(path)))
    return findings


def lint_official(raw: str, path: Path, limits: Limits) -> list[Finding]:
    """An official-pack `<slug>/policy.md`: its codes, a heading naming each level, its length (the whole file
    is the body; out of our own range is a warning: the published policies are longer), and its
    `datasets/<slug>.csv`, where a row left out for an empty or unknown label is a warning and anything else
    unreadable an error."""
    source, slug = str(path), path.parent.name
    try:
        policy = official_policy(slug, raw, source)
    except ConfigError as exc:
        return [Finding(source, 1, exc.reason)]
    prefix = policy.label_prefix or ""
    named = level_names(raw, prefix)
    findings = [Finding(source, 1, f"no heading names level {code} (such as '## Title ({code} - ...)')")
                for code in policy.labels if int(code[len(prefix):]) not in named]
    findings.append(length_finding(source, policy.text, limits, out_of_range="warning"))
    dataset = dataset_path(path.parent.parent, slug)
    if dataset is None:
        return findings
    warnings: list[str] = []
    try:
        read_official_csv(dataset, policy=policy, warnings=warnings)
    except ConfigError as exc:
        line = int(exc.field.split()[-1]) if exc.field.startswith("line ") else 1
        return [*findings, Finding(str(dataset), line, exc.reason)]
    for warning in warnings:
        where, _, reason = warning.removeprefix(f"{dataset}: ").partition(": ")
        line = int(where.split()[-1]) if where.startswith("line ") else 1
        findings.append(Finding(str(dataset), line, reason, "warning"))
    return findings
