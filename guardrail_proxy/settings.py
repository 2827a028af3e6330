"""The only module that reads environment variables.

Config files name secrets by environment variable (`api_key_env: OPENAI_API_KEY`); the values are looked
up here, from a snapshot taken once when the process starts, so nothing else touches `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_CONFIG = "config/proxy.yaml"


@dataclass(frozen=True)
class Settings:
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_environ(cls) -> Settings:
        return cls(MappingProxyType(dict(os.environ)))

    @property
    def config_path(self) -> str:
        return self.env.get("GUARDRAIL_PROXY_CONFIG", DEFAULT_CONFIG)

    def secret(self, name: str | None) -> str | None:
        """The value of the environment variable `name`, or None when unset or empty."""
        if not name:
            return None
        value = self.env.get(name, "")
        return value or None


def prepare_litellm_import() -> None:
    """Keep litellm from fetching its model-price map over the network at import.

    Air-gapped deployments would otherwise stall start-up on retries. Called right before the lazy
    import in upstream_litellm.py; an operator's explicit setting wins.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
