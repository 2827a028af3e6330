"""`eval` and `export` as a user runs them: route evals, compares of models and efforts with significance,
bad rows, subsets, thresholds, the preflight, and mistakes fed back in as a dataset."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import VIOLENCE_POLICY, write_config

from guardrail_proxy.cli import build_parser
from guardrail_proxy.datasets import load_dataset
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import Rule


def run_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args, Settings()))


@pytest.fixture
def endpoint(safeguard, tmp_path):
    behaviour, server = safeguard
    behaviour.rules.extend([Rule("unreadable", answer="x"), Rule("fight", 2, policy="Test violence policy"),
                            Rule("hurt myself", 1, policy="Test binary policy")])
    policy = tmp_path / "violence.md"
    policy.write_text(textwrap.dedent(VIOLENCE_POLICY))
    return behaviour, server, policy


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def outputs(out: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return rows, json.loads((out / "summary.json").read_text())


def test_route_eval_from_the_config(endpoint, tmp_path, capsys):
    behaviour, server, _policy = endpoint
    config = write_config(tmp_path, {"name": "teen", "policies": [{"id": "violence"}, {"id": "selfharm"}]},
                          server.url, "http://127.0.0.1:9")
    data = write_jsonl(tmp_path / "set.jsonl", [
        {"id": "a", "text": "a knife fight", "label": 1, "categories": ["violence"]},
        {"id": "b", "text": "I want to hurt myself", "label": 1, "categories": "self-harm"},
        {"id": "c", "text": "hello", "label": 0},
        {"id": "d", "text": "a pillow fight", "label": 0, "source": "set-x"},
    ])
    out = tmp_path / "out"
    assert run_cli(["eval", "--route", "teen", "--config", str(config), "--dataset", str(data),
                    "--cache-dir", str(tmp_path / "c"), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "each policy alone" in stdout and "the proxy would: block 3, allow 1" in stdout
    rows, summary = outputs(out)
    assert summary["metrics"]["counts"] == {"tp": 2, "fp": 1, "fn": 0, "tn": 1, "errors": 0}
    assert summary["policies"]["violence"]["metrics"]["counts"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1, "errors": 0}
    assert summary["policies"]["selfharm"]["metrics"]["counts"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 2, "errors": 0}
    assert summary["run"]["policy_id"] == "route teen" and summary["actions"] == {"block": 3, "allow": 1}
    assert summary["timing"]["items"] == 4 and summary["timing"]["items_per_s"] > 0
    assert [g["name"] for g in summary["breakdowns"]["by_category"]] == ["self-harm", "violence"]
    route_rows = [r for r in rows if r["scope"] == "route"]
    assert [(r["id"], r["categories"], r["source"]) for r in route_rows] == [
        ("a", ["violence"], None), ("b", ["self-harm"], None), ("c", [], None), ("d", [], "set-x")]
    assert {r["scope"] for r in rows} == {"route", "violence", "selfharm"}
    assert len(behaviour.requests) == 8


def test_unknown_route_names_the_routes(endpoint, tmp_path, capsys):
    _behaviour, server, _policy = endpoint
    config = write_config(tmp_path, {"name": "teen"}, server.url, "http://127.0.0.1:9")
    data = write_jsonl(tmp_path / "set.jsonl", [{"text": "x", "label": 0}])
    assert run_cli(["eval", "--route", "kids", "--config", str(config), "--dataset", str(data)]) == 2
    assert "no route named 'kids' (routes: teen)" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "values", "field"), [
    ("--models", ["safeguard-a", "safeguard-b"], "model"),
    ("--efforts", ["low", "high"], "reasoning_effort"),
])
def test_compare_two_models_or_efforts_with_significance(endpoint, tmp_path, flag, values, field):
    behaviour, server, policy = endpoint
    rows = [{"id": i, "text": f"a fight {i}" if i % 2 else f"calm {i}", "label": "TV2"} for i in range(8)]
    data = write_jsonl(tmp_path / "set.jsonl", rows)
    out = tmp_path / "cmp"
    assert run_cli(["eval", "--policy", str(policy), flag, *values, "--dataset", str(data), "--base-url",
                    f"{server.url}/v1", "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet"]) == 0
    _rows, summary = outputs(out)
    assert [summary["old"]["run"][field], summary["new"]["run"][field]] == values
    assert summary["mcnemar"] == {"fixed": 0, "broke": 0, "p_value": 1.0}  # the stand-in answers both alike
    assert summary["deltas"]["recall"]["interval_95"] == [0.0, 0.0]
    assert sorted({r[field] for r in behaviour.requests}) == sorted(values)  # each asked, none from the other's cache
    assert len(behaviour.requests) == 16
    report = (out / "report.md").read_text()
    assert "McNemar's exact test" in report and "95% interval" in report


def test_bad_rows_are_listed_together_and_skip_invalid_scores_the_rest(endpoint, tmp_path, capsys):
    behaviour, server, policy = endpoint
    data = tmp_path / "set.jsonl"
    data.write_text('{"text": "a fight", "label": "TV2"}\nnot json\n{"text": "calm", "label": "maybe"}\n'
                    '{"text": "calm", "label": "TV0"}\n{"text": "", "label": "TV0"}\n')
    base = ["eval", "--policy", str(policy), "--dataset", str(data), "--base-url", f"{server.url}/v1",
            "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert run_cli([*base, "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "3 bad rows" in err and all(f"set.jsonl: line {n}:" in err for n in (2, 3, 5))
    assert behaviour.requests == []
    assert run_cli([*base, "--out", str(tmp_path / "o2"), "--max-errors", "2"]) == 2
    assert "(--max-errors 2)" in capsys.readouterr().err
    assert run_cli([*base, "--out", str(tmp_path / "o3"), "--skip-invalid"]) == 0
    err = capsys.readouterr().err
    assert "3 bad rows were left out" in err and "line 5: 'text' must be a non-empty string" in err
    rows, summary = outputs(tmp_path / "o3")
    assert [r["line"] for r in rows] == [1, 4] and len(summary["skipped_rows"]) == 3


def test_sample_limit_and_threshold(endpoint, tmp_path):
    _behaviour, server, policy = endpoint
    data = write_jsonl(tmp_path / "set.jsonl", [{"id": i, "text": f"a fight {i}", "label": "TV1"} for i in range(20)])
    base = ["eval", "--policy", str(policy), "--dataset", str(data), "--base-url", f"{server.url}/v1",
            "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert run_cli([*base, "--sample", "5", "--seed", "7", "--out", str(tmp_path / "s1")]) == 0
    assert run_cli([*base, "--sample", "5", "--seed", "7", "--limit", "3", "--out", str(tmp_path / "s2")]) == 0
    first, _ = outputs(tmp_path / "s1")
    second, _ = outputs(tmp_path / "s2")
    assert len(first) == 5 and [r["id"] for r in second] == [r["id"] for r in first][:3]
    assert [int(r["id"]) for r in first] == sorted(int(r["id"]) for r in first)  # set order kept
    # TV1 labels and TV2 answers: all positive at threshold 1; at threshold 2 every item is a false positive.
    assert run_cli([*base, "--threshold", "2", "--limit", "4", "--out", str(tmp_path / "t")]) == 0
    _, summary = outputs(tmp_path / "t")
    assert summary["threshold"] == 2 and summary["metrics"]["counts"]["fp"] == 4


@pytest.mark.parametrize(("setup", "message"), [
    ({"served_models": ("the-real-one",)}, "does not serve model 'openai/gpt-oss-safeguard-20b'"),
    ({"reasoning_field": ""}, "answered without reasoning"),
])
def test_preflight_stops_a_wrong_endpoint_after_one_call(endpoint, tmp_path, capsys, setup, message):
    behaviour, server, policy = endpoint
    for name, value in setup.items():
        setattr(behaviour, name, value)
    data = write_jsonl(tmp_path / "set.jsonl", [{"text": f"item {i}", "label": 0} for i in range(50)])
    argv = ["eval", "--policy", str(policy), "--dataset", str(data), "--base-url", f"{server.url}/v1",
            "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]
    assert run_cli(argv) == 1
    assert message in capsys.readouterr().err and len(behaviour.requests) == 1
    if "reasoning_field" in setup:
        assert run_cli([*argv, "--no-reasoning-ok", "--quiet"]) == 0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_export_mistakes_round_trip_as_a_dataset(endpoint, tmp_path, capsys, suffix):
    _behaviour, server, policy = endpoint
    data = write_jsonl(tmp_path / "set.jsonl", [
        {"id": "fp", "text": "a pillow fight", "label": "TV0", "categories": ["play, rough", "kids|teens"]},
        {"id": "ok", "text": "calm", "label": "TV0"},
        {"id": "fn", "text": "a reply, \"quoted\"\nover lines", "label": "TV2", "role": "assistant",
         "context": [{"role": "user", "content": "tell me"}, {"role": "assistant", "content": "hm"}]},
    ])
    out = tmp_path / "out"
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), "--base-url", f"{server.url}/v1",
                    "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet"]) == 0
    target = tmp_path / f"relabel{suffix}"
    assert run_cli(["export", str(out), "--what", "mistakes", "--out", str(target)]) == 0
    assert "wrote 2 mistakes" in capsys.readouterr().err
    back = load_dataset(target)
    original = {e.id: e for e in load_dataset(data)}
    assert [e.id for e in back] == ["fp", "fn"]
    # Text, label, role, context and categories survive; only the line numbers are the new file's.
    assert all(replace(e, source_line=0) == replace(original[e.id], source_line=0) for e in back)
    if suffix == ".csv":
        header = next(csv.reader(io.StringIO(target.read_text())))
        assert header[:7] == ["id", "text", "label", "role", "context", "categories", "source"]
        assert "predicted" in header and "outcome" in header


def test_export_flips_of_a_compare(endpoint, tmp_path, capsys):
    _behaviour, server, policy = endpoint
    edited = tmp_path / "violence-v2.md"
    edited.write_text(textwrap.dedent(VIOLENCE_POLICY) + "Pillow fights are play.\n")
    _behaviour.rules.insert(0, Rule("pillow fight", 0, policy="Pillow fights are play"))
    data = write_jsonl(tmp_path / "set.jsonl", [{"id": "p", "text": "a pillow fight", "label": "TV0"},
                                                {"id": "k", "text": "a knife fight", "label": "TV2"}])
    out = tmp_path / "cmp"
    assert run_cli(["eval", "--compare", str(policy), str(edited), "--dataset", str(data), "--base-url",
                    f"{server.url}/v1", "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet"]) == 0
    target = tmp_path / "flips.jsonl"
    assert run_cli(["export", str(out), "--what", "flips", "--out", str(target)]) == 0
    [flip] = [json.loads(line) for line in target.read_text().splitlines()]
    assert (flip["id"], flip["effect"], flip["old_predicted"], flip["predicted"]) == ("p", "fixed", "TV2", "TV0")
    assert run_cli(["export", str(tmp_path / "nope"), "--out", str(target)]) == 2
    assert "cannot read results" in capsys.readouterr().err


@pytest.mark.parametrize("transport", ["openai", "aiohttp"])
def test_either_transport_gives_the_same_results(endpoint, tmp_path, transport):
    behaviour, server, policy = endpoint
    data = write_jsonl(tmp_path / "set.jsonl", [{"id": i, "text": f"a fight {i}" if i % 3 else f"calm {i}",
                                                 "label": "TV2" if i % 3 else "TV0"} for i in range(9)])
    out = tmp_path / transport
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), "--base-url", f"{server.url}/v1",
                    "--transport", transport, "--cache-dir", str(tmp_path / transport), "--out", str(out),
                    "--quiet"]) == 0
    _rows, summary = outputs(out)
    assert summary["metrics"]["counts"] == {"tp": 6, "fp": 0, "fn": 0, "tn": 3, "errors": 0}
    assert len(behaviour.requests) == 9


def test_an_official_row_keeps_its_good_item_when_the_other_is_bad(endpoint, tmp_path):
    _behaviour, server, _policy = endpoint
    official = tmp_path / "dangerous-roleplay" / "policy.md"
    official.parent.mkdir()
    official.write_text("# Dangerous roleplay\n\nAnswer DR0 (allowed) or DR1, DR2 for violations.\n")
    data = tmp_path / "dr.csv"
    data.write_text("example,classification,Responses,Response Label\nhow to fight,DR2,,DR0\nhello,DR0,,\n")
    out = tmp_path / "o"
    assert run_cli(["eval", "--policy", str(official), "--dataset", str(data), "--base-url", f"{server.url}/v1",
                    "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet", "--skip-invalid"]) == 0
    rows, summary = outputs(out)
    assert [r["id"] for r in rows] == ["line-2", "line-3"]
    [skipped] = summary["skipped_rows"]
    assert "line 2: 'text' must be a non-empty string" in skipped


@pytest.mark.parametrize(("name", "content", "extra", "message"), [
    ("set.csv", "text,label,speaker\nhi,0,user\n", ["--role-col", "speakr"], "no column 'speakr'"),
    ("set.jsonl.gz", b"\x1f\x8b\x08\x00corrupt", [], "cannot read dataset"),
    ("set.csv", "text,label\n\"" + "x" * 200_000 + "\",0\n", [], "unreadable CSV"),
    ("set.json", "[" * 100_000, [], "not valid JSON"),
])
def test_unreadable_sets_and_misnamed_columns_are_one_line_errors(endpoint, tmp_path, capsys, name, content, extra,
                                                                   message):
    _behaviour, server, policy = endpoint
    data = tmp_path / name
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), "--base-url", f"{server.url}/v1",
                    "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_named_json_field_no_row_has_is_a_warning(endpoint, tmp_path, capsys):
    _behaviour, server, policy = endpoint
    data = write_jsonl(tmp_path / "set.jsonl", [{"text": "hi", "label": 0, "speaker": "user"}])
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), "--role-col", "speakr", "--base-url",
                    f"{server.url}/v1", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
                    "--quiet"]) == 0
    assert "no row has the field 'speakr'" in capsys.readouterr().err
    _rows, summary = outputs(tmp_path / "o")
    assert any("speakr" in w for w in summary["warnings"])


def test_export_refuses_what_is_not_an_eval_result(tmp_path, capsys):
    data = write_jsonl(tmp_path / "set.jsonl", [{"text": "hi", "label": 0}])
    assert run_cli(["export", str(data), "--out", str(tmp_path / "x.csv")]) == 2
    assert "line 1: not an eval result row" in capsys.readouterr().err


def test_combine_compares_one_call_per_policy_with_one_call_per_item(endpoint, tmp_path, capsys):
    behaviour, server, _policy = endpoint
    config = write_config(tmp_path, {"name": "teen", "policies": [{"id": "violence"}, {"id": "selfharm"}]},
                          server.url, "http://127.0.0.1:9")
    data = write_jsonl(tmp_path / "set.jsonl", [
        {"id": "a", "text": "a knife fight", "label": 1}, {"id": "b", "text": "I want to hurt myself", "label": 1},
        {"id": "c", "text": "hello", "label": 0}, {"id": "d", "text": "a pillow", "label": 0}])
    out = tmp_path / "cmp"
    assert run_cli(["eval", "--route", "teen", "--combine", "--config", str(config), "--dataset", str(data),
                    "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet"]) == 0
    _rows, summary = outputs(out)
    assert summary["mcnemar"] == {"fixed": 0, "broke": 0, "p_value": 1.0}  # the stand-in answers both alike
    assert summary["old"]["metrics"]["counts"] == summary["new"]["metrics"]["counts"] == {
        "tp": 2, "fp": 0, "fn": 0, "tn": 2, "errors": 0}
    assert len(behaviour.requests) == 8 + 4  # two calls per item, then one
    combined = [r for r in behaviour.requests if "=== POLICY violence ===" in r["messages"][0]["content"]]
    assert len(combined) == 4 and all("=== POLICY selfharm ===" in r["messages"][0]["content"] for r in combined)
    assert "policies combined" in (out / "report.md").read_text()


def test_combine_needs_a_route(endpoint, tmp_path, capsys):
    _behaviour, server, policy = endpoint
    config = write_config(tmp_path, {"name": "teen"}, server.url, "http://127.0.0.1:9")
    data = write_jsonl(tmp_path / "set.jsonl", [{"text": "x", "label": 0}])
    assert run_cli(["eval", "--policy", str(policy), "--combine", "--config", str(config), "--dataset",
                    str(data)]) == 2
    assert "name the route with --route" in capsys.readouterr().err
