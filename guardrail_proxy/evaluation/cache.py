"""Classifier answers on disk, so an eval re-run only pays for what changed.

Key: SHA-256 of (schema version, endpoint base URL, model, reasoning effort, max tokens, policy
digest, classifier input). Editing a policy changes its digest, so every item misses for the edited policy
and hits for the unchanged one; a real endpoint started where a stand-in ran never gets the stand-in's
answers. The file is JSONL,
appended and flushed as each answer arrives: an interrupted run keeps what it paid for, and a line torn
by the interruption is skipped on the next read. Only answers are stored, never classifier errors (a
timeout today says nothing about tomorrow). The raw answer is stored and parsed again on a hit, so a
change to a policy's front matter (its label set, its format) is applied to cached answers too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

FILE_NAME = "classifications.jsonl"
SCHEMA_VERSION = 2  # bump when what a cached answer means changes; older lines then miss


@dataclass(frozen=True)
class Endpoint:
    """Everything about the classifier that changes its answer, besides the policy and the text."""

    base_url: str
    model: str
    reasoning_effort: str
    max_tokens: int | None = None


@dataclass(frozen=True)
class CachedAnswer:
    raw: str
    reasoning: str | None
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None


def cache_key(endpoint: Endpoint, policy_digest: str, content: str) -> str:
    material = json.dumps([SCHEMA_VERSION, endpoint.base_url.rstrip("/"), endpoint.model, endpoint.reasoning_effort,
                           endpoint.max_tokens, policy_digest, content], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def parse_entry(line: str) -> tuple[str, CachedAnswer] | None:
    """Pure: one cache line -> (key, answer), or None for a torn or foreign line."""
    try:
        data: Any = json.loads(line)
        return data["key"], CachedAnswer(str(data["raw"]), data.get("reasoning"), float(data["latency_ms"]),
                                         data.get("prompt_tokens"), data.get("completion_tokens"))
    except (ValueError, KeyError, TypeError):
        return None


def read_entries(path: Path) -> dict[str, CachedAnswer]:
    if not path.exists():
        return {}
    entries: dict[str, CachedAnswer] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            entry = parse_entry(line)
            if entry:
                entries[entry[0]] = entry[1]
    return entries


def ends_mid_line(path: Path) -> bool:
    if not path.exists():
        return False
    with path.open("rb") as handle:
        if handle.seek(0, 2) == 0:
            return False
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


class ResultCache:
    """Opened once per command; `put` appends at once. One event loop writes, so lines never interleave."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self.entries = read_entries(self.path)
        self.handle: IO[str] | None = None

    def get(self, key: str) -> CachedAnswer | None:
        return self.entries.get(key)

    def put(self, key: str, answer: CachedAnswer) -> None:
        if self.handle is None:
            torn = ends_mid_line(self.path)
            self.handle = self.path.open("a", encoding="utf-8")
            if torn:
                self.handle.write("\n")  # a run killed mid-write left a torn line; start ours on a fresh one
        self.entries[key] = answer
        self.handle.write(json.dumps({"key": key, **asdict(answer)}, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
