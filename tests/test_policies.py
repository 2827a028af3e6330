"""Policy files: front matter, digest (policy versioning), directory loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import VIOLENCE_POLICY

from guardrail_proxy.errors import ConfigError
from guardrail_proxy.policies import index_policies, load_policy_file, parse_policy, policy_files_in

REPO = Path(__file__).resolve().parent.parent


def test_parse_our_format():
    policy = parse_policy(VIOLENCE_POLICY, "v.md")
    assert policy.id == "violence" and policy.label_prefix == "TV" and policy.max_level == 3
    assert policy.text.startswith("# Test violence policy") and "---" not in policy.text
    assert policy.refusal == "That request is not allowed here."
    assert len(policy.digest) == 64


def test_digest_changes_with_the_text_only():
    edited = VIOLENCE_POLICY.replace("exactly one code", "one code")
    assert parse_policy(edited, "v.md").digest != parse_policy(VIOLENCE_POLICY, "v.md").digest
    retitled = VIOLENCE_POLICY.replace("title: Test violence policy", "title: Renamed")
    assert parse_policy(retitled, "v.md").digest == parse_policy(VIOLENCE_POLICY, "v.md").digest


@pytest.mark.parametrize(("raw", "field", "reason"), [
    ("# no front matter", "front matter", "starts with"),
    ("---\n[1, 2\n---\nbody", "front matter", "invalid YAML"),
    ("---\n- a\n---\nbody", "front matter", "mapping"),
    ("---\nid: Bad Id\ntitle: t\nformat: binary\n---\nbody", "id", "pattern"),
    ("---\nid: x\ntitle: t\nlabel_prefix: AB\nlabels: {AB0: a, AB2: b}\n---\nbody", "front matter", "no gaps"),
    ("---\nid: x\ntitle: t\nlabels: {AB0: a}\n---\nbody", "front matter", "label_prefix"),
    ("---\nid: x\ntitle: t\nformat: binary\ncolour: red\n---\nbody", "colour", "Extra"),
    ("---\nid: x\ntitle: t\nformat: binary\n---\n   \n", "body", "empty"),
])
def test_bad_policy_files(raw, field, reason):
    with pytest.raises(ConfigError) as info:
        parse_policy(raw, "p.md")
    assert info.value.field == field and reason in info.value.reason


def test_duplicate_ids_are_rejected():
    one = parse_policy(VIOLENCE_POLICY, "a.md")
    two = parse_policy(VIOLENCE_POLICY, "b.md")
    with pytest.raises(ConfigError, match=r"also used by a\.md"):
        index_policies([one, two])


def test_the_shipped_pack_loads():
    policies = [load_policy_file(p) for p in policy_files_in(REPO / "teen_safety_policies")]
    assert {p.label_prefix for p in policies} == {"GV", "GS", "HBI", "DC", "DR", "ARS"}
    assert all(p.refusal and p.safe_text for p in policies)
