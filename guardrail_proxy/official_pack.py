"""Read a checkout of the official teen-safety pack into `Policy` values.

Layout: `example_policies/<slug>/policy.md` (plain markdown, no front matter) and `datasets/<slug>.csv`
(a free-text first line, then `example,classification,Responses,Response Label`, multi-line cells).
The label prefix comes from the slug for the six known policies, otherwise from the codes the text uses.
Pointing `policies.official_pack` at the checkout's root (or at example_policies/) is enough; the loader
also parses each dataset at start-up so a broken file fails loudly, and `eval` can score against it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from .config import Action
from .datasets import Example, read_official_csv
from .errors import ConfigError
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
    top = max([3, *levels])
    labels = {f"{prefix}{n}": ("allowed" if n == 0 else f"violation level {n}") for n in range(top + 1)}
    heading = HEADING.search(text)
    body = text.strip() + "\n"
    return Policy(
        id=slug, title=heading.group(1).strip() if heading else slug, format="label", label_prefix=prefix,
        labels=labels, default_action=Action.BLOCK, refusal=None, safe_text=None, text=body,
        digest=digest_of(body), source=source,
    )


def dataset_path(root: Path, slug: str) -> Path | None:
    """`datasets/<slug>.csv` beside example_policies/, when the checkout has it."""
    base = root if (root / "example_policies").is_dir() else root.parent
    path = base / "datasets" / f"{slug}.csv"
    return path if path.is_file() else None


def load_official_datasets(root: Path, policies: list[Policy]) -> dict[str, list[Example]]:
    """Every policy's validation set, parsed against the policy's label codes (errors name file and line)."""
    found = {}
    for policy in policies:
        path = dataset_path(root, policy.id)
        if path is not None:
            found[policy.id] = read_official_csv(path, policy=policy)
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
