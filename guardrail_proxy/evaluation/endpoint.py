"""Which policy and which classifier endpoint a `check` or `eval` command uses.

`--policy` is a file (our front-matter format, or an official-pack policy.md with none) or a policy id
looked up in the config. The endpoint is the config's classifier, with any flag given overriding that
field; with `--base-url` and a policy file no config is needed at all, so a policy can be tried against a
hosted endpoint before any proxy is set up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import ClassifierConfig
from ..errors import ConfigError
from ..loader import LoadedConfig, load_config
from ..official_pack import official_policy
from ..policies import FRONT_MATTER, Policy, load_policy_file
from ..settings import Settings


@dataclass(frozen=True)
class EndpointFlags:
    config: str | None = None
    classifier: str = "default"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    reasoning_effort: str | None = None
    timeout_s: float | None = None
    transport: str | None = None

    def overrides(self) -> dict[str, Any]:
        fields = {"base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env,
                  "reasoning_effort": self.reasoning_effort, "timeout_s": self.timeout_s, "transport": self.transport}
        return {name: value for name, value in fields.items() if value is not None}


def read_policy_file(path: Path) -> Policy:
    """Our format when the file has front matter; otherwise an official-pack policy.md."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read policy file: {exc}") from None
    if FRONT_MATTER.match(text):
        return load_policy_file(path)
    if not text.strip():
        raise ConfigError(str(path), "", "policy file is empty")
    slug = path.parent.name if path.name == "policy.md" else path.stem
    return official_policy(slug, text, str(path))


def needs_config(policy_specs: list[str], flags: EndpointFlags) -> bool:
    return flags.base_url is None or any(not Path(spec).is_file() for spec in policy_specs)


def load_wanted_config(policy_specs: list[str], flags: EndpointFlags, settings: Settings) -> LoadedConfig | None:
    if flags.config:
        return load_config(flags.config)
    if not needs_config(policy_specs, flags):
        return None
    path = settings.config_path
    if Path(path).is_file():
        return load_config(path)
    missing = next((spec for spec in policy_specs if not Path(spec).is_file()), None)
    if missing is not None:
        raise ConfigError(missing, "--policy", f"no such file, and no config to look the id up in ({path} not found)")
    raise ConfigError(path, "", "config not found: pass --config, or --base-url with a policy file")


def find_policy(spec: str, config: LoadedConfig | None) -> Policy:
    path = Path(spec)
    if path.is_file():
        return read_policy_file(path)
    if config is None:
        raise ConfigError(spec, "--policy", "no such file, and no config to look the id up in")
    policy = config.policies.get(spec)
    if policy is None:
        known = ", ".join(sorted(config.policies)) or "none"
        raise ConfigError(spec, "--policy", f"no such file, and no policy with this id in {config.path} "
                                            f"(loaded: {known})")
    return policy


def classifier_config(flags: EndpointFlags, config: LoadedConfig | None) -> ClassifierConfig:
    base: dict[str, Any] = {}
    if config is not None:
        named = config.proxy.classifiers.get(flags.classifier)
        if named is None and flags.base_url is None:
            known = ", ".join(config.proxy.classifiers)
            raise ConfigError(str(config.path), "--classifier",
                              f"no classifier named '{flags.classifier}'; defined: {known}")
        base = named.model_dump() if named else {}
    elif flags.base_url is None:
        raise ConfigError("--base-url", "", "no classifier endpoint: pass --base-url, or --config")
    try:
        return ClassifierConfig.model_validate({**base, **flags.overrides()})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = "--" + ".".join(str(p) for p in error["loc"]).replace("_", "-")
        raise ConfigError(field, "", error["msg"].removeprefix("Value error, ")) from None
