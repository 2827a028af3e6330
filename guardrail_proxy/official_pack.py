"""Read a checkout of the official teen-safety pack into `Policy` values.

Layout: `example_policies/<slug>/policy.md` (plain markdown, no front matter) and `datasets/<slug>.csv`
(an optional free-text first line, then one of two headers, multi-line cells; see datasets.py).
The label prefix comes from the slug for the six known policies, otherwise from the codes the text uses.
Pointing `policies.official_pack` at the checkout's root (or at example_policies/) is enough. Labels are the
policy's own codes (a 0-2 policy stays 0-2), named after its level headings. Serving never parses the
datasets; `validate` reports their problems apart from the config's, and `eval` scores against them.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from .config import Action
from .dataset_rows import Example
from .errors import ConfigError
from .official_csv import read_official_csv
from .policies import Policy, digest_of

KNOWN_PREFIXES = {
    "graphic-violent-content": "GV",
    "graphic-sexual-content": "GS",
    "harmful-body-ideals": "HBI",
    "dangerous-content": "DC",
    "dangerous-roleplay": "DR",
    "age-restricted-goods-and-services": "ARS",
}
CODE = re.compile(r"\b([A-Z]{1,6})([0-9])\b")
HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)
NAMED_LEVEL = re.compile(r"^#{1,6}\s+(.+?)\s*\(\s*([A-Z]{1,6})([0-9])\b[^)\n]*\)\s*$", re.MULTILINE)


def policies_dir(root: Path) -> Path:
    if (root / "example_policies").is_dir():
        return root / "example_policies"
    return root


def infer_prefix(slug: str, text: str) -> str | None:
    if slug in KNOWN_PREFIXES:
        return KNOWN_PREFIXES[slug]
    counts = Counter(m.group(1) for m in CODE.finditer(text))
    return counts.most_common(1)[0][0] if counts else None


def official_policy(slug: str, text: str, source: str) -> Policy:
    prefix = infer_prefix(slug, text)
    if prefix is None:
        raise ConfigError(source, "label codes", "no label codes such as GV0..GV3 found in the policy text")
    levels = [int(m.group(2)) for m in CODE.finditer(text) if m.group(1) == prefix]
    top = max(levels, default=1)  # the policy's own codes: a 0-2 policy stays 0-2
    named = level_names(text, prefix)
    labels = {f"{prefix}{n}": named.get(n) or ("allowed" if n == 0 else f"{prefix}{n}") for n in range(top + 1)}
    heading = HEADING.search(text)
    body = text.strip() + "\n"
    return Policy(
        id=slug, title=heading.group(1).strip() if heading else slug, format="label", label_prefix=prefix,
        labels=labels, default_action=Action.BLOCK, refusal=None, safe_text=None, text=body,
        digest=digest_of(body), source=source,
    )


def level_names(text: str, prefix: str) -> dict[int, str]:
    """Level -> name from headings such as "## Some Title (XY2 - some description)". Several official policies'
    levels are kinds (different roleplay types, say) rather than a severity ladder, so the names matter."""
    found: dict[int, str] = {}
    for match in NAMED_LEVEL.finditer(text):
        if match.group(2) == prefix:
            found.setdefault(int(match.group(3)), match.group(1).strip())
    return found


def dataset_path(root: Path, slug: str) -> Path | None:
    """`datasets/<slug>.csv` beside example_policies/, when the checkout has it."""
    base = root if (root / "example_policies").is_dir() else root.parent
    path = base / "datasets" / f"{slug}.csv"
    return path if path.is_file() else None


def load_official_datasets(root: Path, policies: list[Policy],
                           warnings: list[str] | None = None) -> dict[str, list[Example]]:
    """Every policy's validation set, parsed against the policy's label codes (errors name file and line;
    unlabelled rows are left out and reported in `warnings`). Only `validate` and `eval` read them: serving
    never parses a dataset."""
    found = {}
    for policy in policies:
        path = dataset_path(root, policy.id)
        if path is not None:
            found[policy.id] = read_official_csv(path, policy=policy, warnings=warnings)
    return found


def load_official_pack(root: Path) -> list[Policy]:
    directory = policies_dir(root)
    if not directory.is_dir():
        raise ConfigError(str(root), "policies.official_pack", "not a directory")
    files = sorted(directory.glob("*/policy.md"))
    if not files:
        raise ConfigError(str(directory), "policies.official_pack", "no <slug>/policy.md files found")
    policies = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), "", f"cannot read policy file: {exc}") from None
        if not text.strip():
            raise ConfigError(str(path), "", "policy file is empty")
        policies.append(official_policy(path.parent.name, text, str(path)))
    return policies
