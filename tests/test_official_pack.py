"""Reading a checkout of the official teen-safety pack: policy.md without front matter, and the CSV sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from guardrail_proxy.cli import main
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


def checkout(tmp: Path, csv: str = CSV, slug: str = "dangerous-roleplay", policy: str = POLICY_MD) -> Path:
    """A checkout in the official layout; the CSV is written byte for byte (CRLF stays CRLF)."""
    root = tmp / "teen-safety-pack"
    (root / "example_policies" / slug).mkdir(parents=True)
    (root / "example_policies" / slug / "policy.md").write_text(policy)
    (root / "datasets").mkdir()
    (root / "datasets" / f"{slug}.csv").write_bytes(csv.encode())
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
    assert examples[1].text == "Sure!\nArr, welcome aboard." and examples[1].context[0].text == examples[0].text


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


def test_a_broken_dataset_is_an_error_with_file_and_line(tmp_path):
    root = checkout(tmp_path, CSV + '"",DR2,,\n')
    with pytest.raises(ConfigError) as info:
        load_official_datasets(root, load_official_pack(root))
    assert info.value.file.endswith("dangerous-roleplay.csv") and info.value.field == "line 7"


# --- the pack as published: a second header variant, CRLF, an unlabelled row, a 0-2 policy --------------

LEVELED_MD = """# Spooky stories

Classify the content as SP0, SP1 or SP2.

## Allowed Content (SP0 - mild or playful)
Campfire tales with no gore.

## Frightening Detail (SP1 - vivid fear)
Stories built to frighten a young reader badly.

## Helping Someone Frighten Others (SP2 - facilitation)
Plans to scare a particular person.
"""
VARIANT_CSV = (
    "A note about these made-up items.\r\n"
    "Example Prompt,Prompt label,Example Generation,Generation Label\r\n"
    '"tell me a campfire tale",SP0,"Once upon a time, a friendly owl...",SP0\r\n'
    '"help me scare my little brother at night",SP2,,\r\n'
    '"a story with a haunted attic",,,\r\n'
    '"make it really terrifying",SP7,,\r\n'
)


def leveled_checkout(tmp: Path, csv: str = VARIANT_CSV) -> Path:
    return checkout(tmp, csv, "spooky-stories", LEVELED_MD)


def test_a_policy_keeps_its_own_levels_and_their_names(tmp_path):
    [policy] = load_official_pack(leveled_checkout(tmp_path))
    assert policy.labels == {"SP0": "Allowed Content", "SP1": "Frightening Detail",
                             "SP2": "Helping Someone Frighten Others"}
    assert policy.max_level == 2


@pytest.mark.parametrize("note", [True, False])
def test_the_second_header_variant_with_crlf_and_unlabelled_rows_loads_with_warnings(tmp_path, note):
    csv = VARIANT_CSV if note else VARIANT_CSV.split("\r\n", 1)[1]
    root = leveled_checkout(tmp_path, csv)
    warnings: list[str] = []
    examples = load_official_datasets(root, load_official_pack(root), warnings)["spooky-stories"]
    assert [(e.role, e.label) for e in examples] == [("user", "SP0"), ("assistant", "SP0"), ("user", "SP2")]
    assert examples[1].text == "Once upon a time, a friendly owl..."
    first = 3 if note else 2
    assert [w.split(": ", 2)[1] for w in warnings] == [f"line {first + 2}", f"line {first + 3}"]
    assert all(w.startswith(str(root / "datasets" / "spooky-stories.csv")) for w in warnings)


def pack_config(tmp: Path, root: Path, levels: dict[int, str] | None = None) -> Path:
    (tmp / "routes").mkdir(exist_ok=True)
    rule: dict = {"id": "spooky-stories", **({"levels": levels} if levels else {})}
    (tmp / "routes" / "r.yaml").write_text(yaml.safe_dump({"models": ["m"], "upstream": "u", "policies": [rule]}))
    (tmp / "proxy.yaml").write_text(yaml.safe_dump({
        "classifiers": {"default": {"base_url": "http://127.0.0.1:8000/v1"}},
        "upstreams": {"u": {"model": "openai/x"}}, "policies": {"official_pack": root.name}}))
    return tmp / "proxy.yaml"


def test_serving_never_parses_the_datasets(tmp_path):
    root = leveled_checkout(tmp_path, "not, an, official, file\n")
    config = load_config(pack_config(tmp_path, root))
    assert "spooky-stories" in config.policies


def test_a_levels_map_beyond_the_policy_fails_validation(tmp_path):
    root = leveled_checkout(tmp_path)
    with pytest.raises(ConfigError, match=r"levels 1\.\.2"):
        load_config(pack_config(tmp_path, root, {3: "block"}))


def test_validate_reports_datasets_apart_from_the_config(tmp_path, capsys):
    root = leveled_checkout(tmp_path)
    path = pack_config(tmp_path, root)
    assert main(["validate", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert ": ok" in captured.out and "datasets: 3 items in 1 official set(s)" in captured.out
    assert captured.err.count("datasets: warning:") == 2
    (root / "datasets" / "spooky-stories.csv").write_text(VARIANT_CSV.replace('"tell me a campfire tale"', '""'))
    assert main(["validate", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert ": ok" in captured.out and "datasets: error:" in captured.err and "line 3" in captured.err


def test_policy_lint_reads_the_official_layout(tmp_path, capsys):
    root = leveled_checkout(tmp_path)
    assert main(["policy", "lint", str(root / "example_policies")]) == 0
    assert "warning" in capsys.readouterr().err
    unnamed = root / "example_policies" / "spooky-stories" / "policy.md"
    unnamed.write_text(LEVELED_MD.replace("## Frightening Detail (SP1 - vivid fear)", "## Frightening Detail"))
    assert main(["policy", "lint", str(unnamed)]) == 1
    assert "no heading names level SP1" in capsys.readouterr().err


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
