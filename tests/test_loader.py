"""Bad config stops start-up with file, field and reason; the shipped config loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import VIOLENCE_POLICY

from guardrail_proxy.cli import main
from guardrail_proxy.errors import ConfigError
from guardrail_proxy.loader import load_config

REPO = Path(__file__).resolve().parent.parent


def tree(tmp: Path, proxy: dict | str, routes: dict[str, dict | str]) -> Path:
    (tmp / "routes").mkdir()
    (tmp / "policies").mkdir()
    (tmp / "policies" / "violence.md").write_text(VIOLENCE_POLICY)
    for name, route in routes.items():
        (tmp / "routes" / f"{name}.yaml").write_text(route if isinstance(route, str) else yaml.safe_dump(route))
    path = tmp / "proxy.yaml"
    path.write_text(proxy if isinstance(proxy, str) else yaml.safe_dump(proxy))
    return path


PROXY = {"classifiers": {"default": {"base_url": "http://127.0.0.1:8000/v1"}},
         "upstreams": {"u": {"model": "openai/gpt-4o-mini"}}, "policies": {"dirs": ["policies"]}}
ROUTE = {"models": ["m"], "upstream": "u", "policies": [{"id": "violence"}]}


def test_shipped_config_loads():
    config = load_config(REPO / "config" / "proxy.yaml")
    assert {r.name for r in config.routes} == {"default", "teen"}
    teen = config.route("teen")
    assert teen is not None and len(teen.policies) == 6
    assert len(config.policies) == 6


def test_a_good_tree_loads(tmp_path):
    config = load_config(tree(tmp_path, PROXY, {"main": ROUTE}))
    assert config.routes[0].name == "main" and config.policies["violence"].label_prefix == "TV"


@pytest.mark.parametrize(("proxy", "route", "file", "field", "reason"), [
    ({**PROXY, "sever": {}}, ROUTE, "proxy.yaml", "sever", "unknown field"),
    ({**PROXY, "server": {"port": "eighty"}}, ROUTE, "proxy.yaml", "server.port", "integer"),
    ({**PROXY, "classifiers": {}}, ROUTE, "proxy.yaml", "classifiers", "at least one"),
    ({**PROXY, "classifiers": {"default": {"base_url": "localhost:8000"}}}, ROUTE, "proxy.yaml",
     "classifiers.default.base_url", "http://"),
    ({**PROXY, "classifiers": {"default": {"base_url": "http://x", "reasoning_effort": "none"}}}, ROUTE,
     "proxy.yaml", "classifiers.default.reasoning_effort", "low"),
    ({**PROXY, "classifiers": {"default": {"base_url": "http://x", "max_tokens": 50}}}, ROUTE,
     "proxy.yaml", "classifiers.default.max_tokens", "256"),
    ({**PROXY, "upstreams": {"u": {"provider": "openai", "model": "m"}}}, ROUTE, "proxy.yaml", "upstreams.u",
     "api_base"),
    ({**PROXY, "policies": {"dirs": ["missing"]}}, ROUTE, "missing", "policies.dirs", "not a directory"),
    (PROXY, {**ROUTE, "upstream": "ghost"}, "main.yaml", "upstream", "unknown upstream 'ghost'"),
    (PROXY, {**ROUTE, "classifier": "ghost"}, "main.yaml", "classifier", "unknown classifier"),
    (PROXY, {**ROUTE, "policies": [{"id": "nope"}]}, "main.yaml", "policies.0.id", "unknown policy 'nope'"),
    (PROXY, {**ROUTE, "policies": [{"id": "violence", "action": "explode"}]}, "main.yaml", "policies.0.action",
     "block"),
    (PROXY, {**ROUTE, "policies": [{"id": "violence", "levels": {4: "block"}}]}, "main.yaml",
     "policies.0.levels", "levels 1..3"),
    (PROXY, {**ROUTE, "policies": [{"id": "violence", "levels": {0: "block"}}]}, "main.yaml",
     "policies.0.levels", "1 or more"),
    (PROXY, {**ROUTE, "policies": []}, "main.yaml", "policies", "at least 1"),
    (PROXY, {**ROUTE, "fail_mode": "sometimes"}, "main.yaml", "fail_mode", "closed"),
    (PROXY, {**ROUTE, "modles": ["x"]}, "main.yaml", "modles", "unknown field"),
    (PROXY, {**ROUTE, "policies": [{"id": "violence"}, {"id": "violence"}]}, "main.yaml", "policies",
     "listed twice"),
    (PROXY, {**ROUTE, "output": {"stream_mode": "post"}}, "main.yaml", "policies.0", "cannot block"),
    (PROXY, {**ROUTE, "output": {"stream_mode": "post"}, "policies": [{"id": "violence", "action": "annotate",
                                                                       "levels": {3: "rewrite"}}]},
     "main.yaml", "policies.0", "cannot rewrite"),
    (PROXY, {**ROUTE, "output": {"stream_mode": "sometimes"}}, "main.yaml", "output.stream_mode", "window"),
    (PROXY, {**ROUTE, "output": {"window_chars": 100, "first_window_chars": 200}}, "main.yaml", "output",
     "first_window_chars (200) is larger than window_chars (100)"),
    (PROXY, {**ROUTE, "output": {"first_window_chars": 0}}, "main.yaml", "output.first_window_chars", "1"),
    (PROXY, "models: [m\n", "main.yaml", "line", "invalid YAML"),
    ("classifiers: [1, 2", ROUTE, "proxy.yaml", "line", "invalid YAML"),
    ("- just a list", ROUTE, "proxy.yaml", "", "mapping"),
])
def test_bad_config_names_file_field_and_reason(tmp_path, proxy, route, file, field, reason):
    with pytest.raises(ConfigError) as info:
        load_config(tree(tmp_path, proxy, {"main": route}))
    error = info.value
    assert error.file.endswith(file), error
    assert error.field.startswith(field), error
    assert reason in error.reason, error


@pytest.mark.parametrize("rule", [
    {"id": "violence", "action": "log", "levels": {2: "annotate"}},
    {"id": "violence", "phases": ["input"]},  # blocks on input only: fine with post-checked output
])
def test_post_mode_with_annotate_log_or_input_only_is_fine(tmp_path, rule):
    route = {**ROUTE, "output": {"stream_mode": "post"}, "policies": [rule]}
    assert load_config(tree(tmp_path, PROXY, {"main": route})).routes[0].output.stream_mode == "post"


def test_two_routes_claiming_one_model(tmp_path):
    with pytest.raises(ConfigError, match="already served by route"):
        load_config(tree(tmp_path, PROXY, {"a": ROUTE, "b": ROUTE}))


def test_no_route_files(tmp_path):
    with pytest.raises(ConfigError, match="no route files"):
        load_config(tree(tmp_path, PROXY, {}))


def test_serve_with_a_bad_config_exits_2_with_the_reason(tmp_path, capsys):
    path = tree(tmp_path, {**PROXY, "sever": {}}, {"main": ROUTE})
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "proxy.yaml: sever: unknown field" in err and "Traceback" not in err


def test_validate_command(tmp_path, capsys):
    assert main(["validate", "--config", str(tree(tmp_path, PROXY, {"main": ROUTE}))]) == 0
    assert "1 route(s)" in capsys.readouterr().out


CANDIDATE = VIOLENCE_POLICY + "Candidate wording: duels count as TV2.\n"


def shadow_tree(tmp: Path, shadow: list[dict], files: dict[str, str] | None = None, **route) -> Path:
    path = tree(tmp, PROXY, {"main": {**ROUTE, **route, "shadow": shadow}})
    for name, text in (files if files is not None else {"candidates/violence.md": CANDIDATE}).items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    return path


SHADOW = {"policy": "violence", "candidate": "candidates/violence.md", "sample": 0.25}


def test_a_shadow_entry_loads_its_candidate_beside_the_enforced_policy(tmp_path):
    config = load_config(shadow_tree(tmp_path, [SHADOW]))
    [shadow] = config.shadows["main"]
    assert shadow.policy_id == "violence" and shadow.sample == 0.25 and shadow.max_in_flight == 4
    assert shadow.candidate.id == "violence" and shadow.candidate.digest != config.policies["violence"].digest
    assert shadow.candidate.source == str(tmp_path / "candidates" / "violence.md")
    assert list(config.policies) == ["violence"]  # the candidate is not enforced


@pytest.mark.parametrize(("shadow", "files", "route", "file", "field", "reason"), [
    ([{**SHADOW, "policy": "selfharm"}], None, {}, "main.yaml", "shadow.0.policy",
     "does not enforce policy 'selfharm'"),
    ([{**SHADOW, "candidate": "candidates/nope.md"}], None, {}, "main.yaml", "shadow.0.candidate",
     "no candidate policy file"),
    ([SHADOW], {"candidates/violence.md": "no front matter"}, {}, "violence.md", "front matter", "'---'"),
    ([SHADOW], {"candidates/violence.md": CANDIDATE.replace("id: violence", "id: violence-v2")}, {}, "main.yaml",
     "shadow.0.candidate", "the candidate's id is 'violence-v2', not 'violence'"),
    ([SHADOW], {"candidates/violence.md": VIOLENCE_POLICY}, {}, "main.yaml", "shadow.0.candidate",
     "drop the shadow entry"),
    ([{**SHADOW, "candidate": "policies/violence-v2.md"}], {"policies/violence-v2.md": CANDIDATE}, {}, "main.yaml",
     "shadow.0.candidate", "also loaded as an enforced policy"),
    ([SHADOW], {"candidates/violence.md": CANDIDATE.replace(", TV3: Extreme", "")},
     {"policies": [{"id": "violence", "levels": {3: "block"}}]}, "main.yaml", "shadow.0.candidate",
     "could not be promoted"),
    ([{**SHADOW, "sample": 0}], None, {}, "main.yaml", "shadow.0.sample", "greater than 0"),
    ([{**SHADOW, "sample": 1.5}], None, {}, "main.yaml", "shadow.0.sample", "less than or equal to 1"),
    ([{**SHADOW, "max_in_flight": 0}], None, {}, "main.yaml", "shadow.0.max_in_flight", "greater than or equal"),
    ([SHADOW, SHADOW], None, {}, "main.yaml", "shadow", "listed twice"),
    ([{**SHADOW, "sampel": 1}], None, {}, "main.yaml", "shadow.0.sampel", "unknown field"),
])
def test_a_bad_shadow_entry_names_file_field_and_reason(tmp_path, shadow, files, route, file, field, reason):
    with pytest.raises(ConfigError) as info:
        load_config(shadow_tree(tmp_path, shadow, files, **route))
    error = info.value
    assert error.file.endswith(file), error
    assert error.field.startswith(field), error
    assert reason in error.reason, error
