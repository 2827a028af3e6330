"""Reading a checkout of the official teen-safety pack: policy.md without front matter, and the CSV sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from guardrail_proxy.errors import ConfigError
from guardrail_proxy.loader import load_config
from guardrail_proxy.official_pack import infer_prefix, load_official_datasets, load_official_pack

POLICY_MD = """# Dangerous roleplay

## Instructions
Label the content DR0 (allowed) or DR1, DR2, DR3 for violations of rising severity.

## Examples
Content: a pirate adventure story
Answer: DR0
"""

CSV = (
    'Synthetic prompts written for validation only, "not real users".\n'
    "example,classification,Responses,Response Label\n"
    '"Let\'s play pirates,\nyou be the captain",DR0,"Sure!\nArr, welcome aboard.",DR0\n'
    '"pretend you are my girlfriend",DR3,,\n'
)


def checkout(tmp: Path, csv: str = CSV) -> Path:
    root = tmp / "teen-safety-pack"
    (root / "example_policies" / "dangerous-roleplay").mkdir(parents=True)
    (root / "example_policies" / "dangerous-roleplay" / "policy.md").write_text(POLICY_MD)
    (root / "datasets").mkdir()
    (root / "datasets" / "dangerous-roleplay.csv").write_text(csv)
    return root


def test_policies_load_by_slug_with_the_known_prefix(tmp_path):
    [policy] = load_official_pack(checkout(tmp_path))
    assert policy.id == "dangerous-roleplay" and policy.label_prefix == "DR"
    assert list(policy.labels) == ["DR0", "DR1", "DR2", "DR3"]
    assert policy.title == "Dangerous roleplay" and policy.text.startswith("# Dangerous roleplay")


def test_datasets_parse_with_multiline_cells_and_the_note_line(tmp_path):
    root = checkout(tmp_path)
    sets = load_official_datasets(root, load_official_pack(root))
    examples = sets["dangerous-roleplay"]
    assert [(e.role, e.label) for e in examples] == [("user", "DR0"), ("assistant", "DR0"), ("user", "DR3")]
    assert examples[0].text == "Let's play pirates,\nyou be the captain"
    assert examples[1].text == "Sure!\nArr, welcome aboard." and examples[1].context == examples[0].text


def test_a_config_line_is_enough(tmp_path):
    root = checkout(tmp_path)
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.yaml").write_text(yaml.safe_dump(
        {"models": ["m"], "upstream": "u", "policies": [{"id": "dangerous-roleplay", "levels": {3: "block"}}]}))
    (tmp_path / "proxy.yaml").write_text(yaml.safe_dump({
        "classifiers": {"default": {"base_url": "http://127.0.0.1:8000/v1"}},
        "upstreams": {"u": {"model": "openai/x"}}, "policies": {"official_pack": root.name}}))
    config = load_config(tmp_path / "proxy.yaml")
    assert "dangerous-roleplay" in config.policies


def test_a_broken_dataset_fails_start_up_with_file_and_line(tmp_path):
    root = checkout(tmp_path, CSV + '"a bad row",GV2,,\n')
    with pytest.raises(ConfigError) as info:
        load_official_datasets(root, load_official_pack(root))
    assert info.value.file.endswith("dangerous-roleplay.csv") and info.value.field.startswith("line")


def test_unknown_slugs_take_the_prefix_from_the_text():
    assert infer_prefix("my-policy", "Answer XY0 or XY2; never ZZ1") == "XY"
    assert infer_prefix("harmful-body-ideals", "") == "HBI"
    assert infer_prefix("empty", "no codes here") is None


def test_a_policy_without_codes_is_a_config_error(tmp_path):
    directory = tmp_path / "example_policies" / "mystery"
    directory.mkdir(parents=True)
    (directory / "policy.md").write_text("# Mystery\nNo label codes at all.\n")
    with pytest.raises(ConfigError, match="no label codes"):
        load_official_pack(tmp_path)
