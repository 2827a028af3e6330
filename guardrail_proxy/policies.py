"""Policy files -> `Policy` values.

Our format is markdown with YAML front matter (see teen_safety_policies/README.md). The body after the
front matter is exactly what the classifier reads as its system message; its SHA-256 digest is recorded
with every verdict, so an audit record always says which version of the text decided it.

The official teen-safety pack (`example_policies/<slug>/policy.md`, no front matter) is read by
official_pack.py and produces the same `Policy` values.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import Action
from .errors import ConfigError

FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*\r?\n", re.DOTALL)
PolicyFormat = Literal["label", "binary", "json"]


class PolicyMeta(BaseModel):
    """The front matter of a policy file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    title: str
    format: PolicyFormat = "label"
    label_prefix: str | None = Field(None, pattern=r"^[A-Z]{1,6}$")
    labels: dict[str, str] = Field(default_factory=dict, description="label code -> short name")
    default_action: Action = Action.BLOCK
    refusal: str | None = None
    safe_text: str | None = None

    @model_validator(mode="after")
    def _labels_match_prefix(self) -> PolicyMeta:
        if self.format != "label":
            return self
        if not self.label_prefix:
            raise ValueError("format 'label' needs label_prefix")
        expected = {f"{self.label_prefix}{level}" for level in range(len(self.labels))}
        if not self.labels or set(self.labels) != expected:
            raise ValueError(
                f"labels must be {self.label_prefix}0..{self.label_prefix}N with no gaps; got {sorted(self.labels)}")
        return self


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    title: str
    format: PolicyFormat | Literal["bundle"]  # bundle: several policies in one call (bundles.py), never a file
    label_prefix: str | None
    labels: dict[str, str]
    default_action: Action
    refusal: str | None
    safe_text: str | None
    text: str
    digest: str
    source: str
    members: tuple[Policy, ...] = ()  # a bundle's policies, in prompt order

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("policy text is empty")
        return value

    @property
    def answer_key(self) -> str:
        """What decides how an answer is read: the text the classifier saw, and how its answer is parsed.
        Two policies with one text but other labels must not share cached answers."""
        labels = ",".join(self.labels)
        return digest_of(f"{self.digest}|{self.format}|{self.label_prefix}|{labels}")

    @property
    def max_level(self) -> int:
        return max(len(self.labels) - 1, 1)


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_front_matter(raw: str, source: str) -> tuple[dict[str, object], str]:
    """Return (front matter mapping, body). Raises ConfigError naming the file when it is malformed."""
    match = FRONT_MATTER.match(raw)
    if not match:
        raise ConfigError(source, "front matter", "a policy file starts with a '---' YAML block")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise ConfigError(source, "front matter", f"invalid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise ConfigError(source, "front matter", "must be a mapping of keys to values")
    return meta, raw[match.end():]


def parse_policy(raw: str, source: str) -> Policy:
    meta_raw, body = split_front_matter(raw, source)
    try:
        meta = PolicyMeta.model_validate(meta_raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "front matter"
        raise ConfigError(source, field, err["msg"].removeprefix("Value error, ")) from None
    text = body.strip() + "\n"
    try:
        return Policy(**meta.model_dump(), text=text, digest=digest_of(text), source=source)
    except ValidationError as exc:
        raise ConfigError(source, "body", exc.errors()[0]["msg"]) from None


def load_policy_file(path: Path) -> Policy:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read policy file: {exc}") from None
    return parse_policy(raw, str(path))


def policy_files_in(directory: Path) -> list[Path]:
    """`<dir>/<slug>/policy.md` files and `<dir>/*.md` files other than README.md, sorted."""
    if not directory.is_dir():
        raise ConfigError(str(directory), "policies.dirs", "not a directory")
    found = sorted(directory.glob("*/policy.md"))
    found += sorted(p for p in directory.glob("*.md") if p.name.lower() != "readme.md")
    return found


def index_policies(policies: list[Policy]) -> dict[str, Policy]:
    """Map id -> policy; two files with one id is a config error."""
    by_id: dict[str, Policy] = {}
    for policy in policies:
        if policy.id in by_id:
            raise ConfigError(policy.source, "id",
                              f"policy id '{policy.id}' is also used by {by_id[policy.id].source}")
        by_id[policy.id] = policy
    return by_id
