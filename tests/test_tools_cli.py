"""`check` and `eval` as a user runs them: flags, config, outputs on disk, exit codes, one-line errors."""

from __future__ import annotations

import io
import json
import textwrap
import time
from pathlib import Path

import pytest
from conftest import VIOLENCE_POLICY, free_port, write_config

from guardrail_proxy.cli import build_parser
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import Rule

EDITED_POLICY = textwrap.dedent(VIOLENCE_POLICY) + "Pillow fights are play, not violence.\n"
OFFICIAL_POLICY = "# Dangerous roleplay\n\nAnswer DR0 (allowed) or DR1, DR2, DR3 for violations.\n"


def run_cli(argv: list[str], settings: Settings | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args, settings or Settings()))


@pytest.fixture
def endpoint(safeguard, tmp_path):
    """(stand-in behaviour, --base-url flags, path of the violence policy file)."""
    behaviour, server = safeguard
    behaviour.rules.extend([Rule("pillow fight", 0, policy="Pillow fights are play"), Rule("unreadable", answer="x"),
                            Rule("fight", 2), Rule("gore", 3)])
    policy = tmp_path / "violence.md"
    policy.write_text(textwrap.dedent(VIOLENCE_POLICY))
    return behaviour, ["--base-url", f"{server.url}/v1"], policy


def dataset(tmp_path: Path, rows: list[tuple[str, str, str]], name: str = "set.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": i, "text": t, "label": lab}) + "\n" for i, t, lab in rows))
    return path


def test_check_json(endpoint, capsys):
    behaviour, flags, policy = endpoint
    code = run_cli(["check", "--policy", str(policy), *flags, "--model", "my-safeguard", "--reasoning-effort", "high",
                    "--json", "describe the knife fight"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["violation"] is True and out["label"] == "TV2" and out["label_name"] == "Graphic"
    assert out["severity"] == 2 and out["policy"] == "violence" and len(out["policy_digest"]) == 64
    assert out["reasoning"].startswith("Stand-in") and out["latency_ms"] > 0
    assert (out["prompt_tokens"], out["completion_tokens"], out["error"]) == (100, 20, None)
    [request] = behaviour.requests
    assert request["model"] == "my-safeguard" and request["reasoning_effort"] == "high"
    assert request["messages"][1] == {"role": "user", "content": "describe the knife fight"}


def test_check_human_output_from_stdin(endpoint, capsys, monkeypatch):
    behaviour, flags, policy = endpoint
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\n"))
    assert run_cli(["check", "--policy", str(policy), *flags]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("policy     violence (digest ")
    assert lines[1] == "verdict    allowed (TV0: Allowed)"
    assert lines[2].startswith("reasoning  Stand-in: no rule matched")
    assert lines[3].startswith("latency    ") and "100 prompt + 20 completion tokens" in lines[3]
    assert behaviour.requests[0]["messages"][1]["content"] == "hello there"


def test_check_an_assistant_reply_with_context(endpoint, capsys):
    behaviour, flags, policy = endpoint
    assert run_cli(["check", "--policy", str(policy), *flags, "--role", "assistant", "--context",
                    "tell me about a fight", "--json", "Once upon a time"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "TV0"  # the context does not trigger the rule
    content = behaviour.requests[0]["messages"][1]["content"]
    assert "[context: user]\ntell me about a fight" in content
    assert content.endswith("[classify this: assistant]\nOnce upon a time")


def test_check_an_official_pack_policy_file(endpoint, tmp_path, capsys):
    _behaviour, flags, _policy = endpoint
    official = tmp_path / "dangerous-roleplay" / "policy.md"
    official.parent.mkdir()
    official.write_text(OFFICIAL_POLICY)
    assert run_cli(["check", "--policy", str(official), *flags, "--json", "a sword fight scene"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["policy"], out["label"], out["violation"]) == ("dangerous-roleplay", "DR2", True)


def test_check_resolves_a_policy_id_and_the_endpoint_from_config(safeguard, tmp_path, capsys):
    behaviour, server = safeguard
    config = write_config(tmp_path, {}, server.url, "http://127.0.0.1:9")
    assert run_cli(["check", "--config", str(config), "--policy", "violence", "--json", "hi"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "openai/gpt-oss-safeguard-20b"
    # Flags override single fields of the config's classifier; the env var named for the key comes from Settings.
    settings = Settings({"GUARDRAIL_PROXY_CONFIG": str(config), "SG_KEY": "secret"})
    assert run_cli(["check", "--policy", "selfharm", "--model", "other", "--api-key-env", "SG_KEY", "--json",
                    "hi"], settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["policy"], out["model"], out["label"]) == ("selfharm", "other", "0")
    assert [r["model"] for r in behaviour.requests] == ["openai/gpt-oss-safeguard-20b", "other"]


def test_check_classifier_error_exits_1(endpoint, capsys):
    _behaviour, flags, policy = endpoint
    assert run_cli(["check", "--policy", str(policy), *flags, "--json", "unreadable text"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["kind"] == "unparseable" and out["violation"] is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--policy", "no-such-policy", "--base-url", "http://127.0.0.1:9/v1", "hi"],
     "error: no-such-policy: --policy: no such file, and no config to look the id up in"),
    (["--policy", "{policy}", "hi"], "error: {tmp}/absent.yaml: config not found"),
    (["--policy", "{policy}", "--base-url", "ftp://x", "hi"], "error: --base-url: must start with http:// or https://"),
    (["--policy", "{policy}", "--base-url", "http://127.0.0.1:9/v1", "  "], "error: text: nothing to classify"),
    (["--policy", "{tmp}/bad.md", "--base-url", "http://127.0.0.1:9/v1", "hi"], "error: {tmp}/bad.md: id:"),
])
def test_check_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    policy = tmp_path / "violence.md"
    policy.write_text(textwrap.dedent(VIOLENCE_POLICY))
    (tmp_path / "bad.md").write_text("---\nid: Not Valid\ntitle: x\n---\nbody\n")
    argv = [a.format(policy=policy, tmp=tmp_path) for a in argv]
    settings = Settings({"GUARDRAIL_PROXY_CONFIG": str(tmp_path / "absent.yaml")})
    assert run_cli(["check", *argv], settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1


def test_eval_writes_results_summary_and_report(endpoint, tmp_path, capsys):
    behaviour, flags, policy = endpoint
    data = dataset(tmp_path, [("a", "a knife fight", "TV2"), ("b", "a pillow fight", "TV0"),
                              ("c", "a quiet menace", "TV1"), ("d", "hello", "TV0"), ("e", "unreadable", "TV0")])
    out_dir = tmp_path / "out"
    argv = ["eval", "--policy", str(policy), "--dataset", str(data), *flags, "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out_dir)]
    assert run_cli(argv) == 0
    stdout = capsys.readouterr().out
    assert "0.500" in stdout and "cache 0 hits, 5 misses" in stdout
    assert "classifier errors (not scored): unparseable 1" in stdout
    assert "b (line 2) expected TV0, predicted TV2" in stdout and "c (line 3) expected TV1, predicted TV0" in stdout
    assert "\x1b[" not in stdout and "cached 0" not in stdout  # no colour codes, no progress bar off a TTY
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in rows] == ["tp", "fp", "fn", "tn", "error"]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["metrics"]["counts"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1, "errors": 1}
    assert summary["metrics"]["precision"] == 0.5 and summary["run"]["policy_id"] == "violence"
    report = (out_dir / "report.md").read_text()
    assert "## False positives (1)" in report and "### `b` (line 2, user): expected TV0, predicted TV2" in report
    assert "Stand-in: the text contains 'fight'" in report
    # Again: everything but the error comes from the cache.
    assert run_cli(argv) == 0
    assert "cache 4 hits, 1 misses" in capsys.readouterr().out
    assert len(behaviour.requests) == 6


def test_eval_compare_shows_flips_in_terminal_and_report(endpoint, tmp_path, capsys):
    behaviour, flags, policy = endpoint
    edited = tmp_path / "violence-v2.md"
    edited.write_text(EDITED_POLICY)
    data = dataset(tmp_path, [("a", "a knife fight", "TV2"), ("b", "a pillow fight", "TV0"), ("c", "hi", "TV0")])
    out_dir = tmp_path / "cmp"
    assert run_cli(["eval", "--compare", str(policy), str(edited), "--dataset", str(data), *flags,
                    "--cache-dir", str(tmp_path / "cache"), "--out", str(out_dir)]) == 0
    stdout = capsys.readouterr().out
    assert "flipped verdicts (1)" in stdout
    cells = [line.replace("│", " ").split() for line in stdout.splitlines()]
    assert ["b", "TV0", "violation", "TV2", "allowed", "TV0", "fixed", "a", "pillow", "fight"] in cells
    assert "precision" in stdout and "+0.500" in stdout
    report = (out_dir / "report.md").read_text()
    assert "| `b` | 2 | TV0 | violation TV2 | allowed TV0 | fixed | a pillow fight |" in report
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["flips"][0]["id"] == "b" and summary["deltas"]["precision"]["delta"] == 0.5
    versions = [json.loads(line)["version"] for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert versions == ["old"] * 3 + ["new"] * 3
    assert len(behaviour.requests) == 6


def test_eval_reads_mapped_and_official_csv(endpoint, tmp_path, capsys):
    _behaviour, flags, policy = endpoint
    mapped = tmp_path / "mapped.csv"
    mapped.write_text('key,prompt,gold\nk1,"a knife\nfight",1\nk2,hello,0\n')
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(mapped), "--text-col", "prompt",
                    "--label-col", "gold", "--id-col", "key", *flags, "--cache-dir", str(tmp_path / "c"),
                    "--out", str(tmp_path / "o1"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o1" / "summary.json").read_text())["metrics"]["accuracy"] == 1.0
    official_policy = tmp_path / "dangerous-roleplay" / "policy.md"
    official_policy.parent.mkdir()
    official_policy.write_text(OFFICIAL_POLICY)
    official = tmp_path / "dangerous-roleplay.csv"
    official.write_text('A note about\nexample,classification,Responses,Response Label\n'
                        '"roleplay a\nsword fight",DR2,"ok, the\nfight begins",DR2\nlet us chat,DR0,,\n')
    assert run_cli(["eval", "--policy", str(official_policy), "--dataset", str(official), *flags,
                    "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o2")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o2" / "results.jsonl").read_text().splitlines()]
    assert [(r["id"], r["role"], r["outcome"]) for r in rows] == [
        ("line-3", "user", "tp"), ("line-3-response", "assistant", "tp"), ("line-6", "user", "tn")]
    assert rows[1]["context"] == [{"role": "user", "content": "roleplay a\nsword fight"}]


def test_eval_default_cache_and_out_dirs(endpoint, tmp_path, monkeypatch, capsys):
    _behaviour, flags, policy = endpoint
    data = dataset(tmp_path, [("a", "hello", "0")])
    monkeypatch.chdir(tmp_path)
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), *flags]) == 0
    assert (tmp_path / ".guardrail-cache" / "classifications.jsonl").exists()
    [run_dir] = (tmp_path / "eval-results").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html", "report.md", "results.jsonl", "summary.json"]


@pytest.mark.parametrize(("rows", "message"), [
    ('{"text": "a", "label": "TV0"}\n{"text": "b", "label": "GV2"}\n',
     "set.jsonl: line 2: label GV2 does not belong to policy 'violence'"),
    ('{"text": "a", "label": 0}\n{"text": "b"}\n', "set.jsonl: line 2: missing 'label'"),
    ('{"text": "a", "label": 0}\nnot json\n', "set.jsonl: line 2: not valid JSON"),
])
def test_eval_dataset_errors_exit_2_with_file_and_line(endpoint, tmp_path, capsys, rows, message):
    behaviour, flags, policy = endpoint
    data = tmp_path / "set.jsonl"
    data.write_text(rows)
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), *flags,
                    "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}/set.jsonl: 1 bad row; fix them, or pass --skip-invalid")
    assert f"\n  {tmp_path}/{message}" in err and err.count("\n") == 2
    assert behaviour.requests == []


def test_eval_exits_1_when_every_item_errored(endpoint, tmp_path, capsys):
    _behaviour, flags, policy = endpoint
    data = dataset(tmp_path, [("a", "unreadable one", "TV0"), ("b", "unreadable two", "TV2")])
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), *flags,
                    "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 1
    captured = capsys.readouterr()
    assert "failed on every item" in captured.err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["metrics"]["counts"]["errors"] == 2


def test_eval_against_a_dead_endpoint_stops_at_once(tmp_path, capsys):
    policy = tmp_path / "violence.md"
    policy.write_text(textwrap.dedent(VIOLENCE_POLICY))
    data = dataset(tmp_path, [(f"i{n}", f"text {n}", "TV0") for n in range(200)])
    started = time.monotonic()
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), "--quiet",
                    "--base-url", f"http://127.0.0.1:{free_port()}/v1",
                    "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 1
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert err.startswith("error: cannot connect to the classifier") and "nothing was evaluated" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [
    ["eval", "--dataset", "x.jsonl"],
    ["eval", "--policy", "a", "--compare", "a", "b", "--dataset", "x.jsonl"],
    ["eval", "--policy", "a", "--dataset", "x.jsonl", "--concurrency", "0"],
    ["check", "--policy", "a", "--reasoning-effort", "none", "hi"],
])
def test_bad_usage_is_an_argparse_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        run_cli(argv)
    assert info.value.code == 2


def test_eval_with_a_label_map(endpoint, tmp_path):
    _behaviour, flags, policy = endpoint
    data = tmp_path / "words.csv"
    data.write_text("text,label\na pillow fight,safe\na gore scene,unsafe\n")
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), "--label-map", "safe=0,unsafe=1",
                    *flags, "--quiet", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["metrics"]["counts"]["errors"] == 0 and summary["items"] == 2


def test_eval_rejects_a_malformed_label_map(endpoint, tmp_path, capsys):
    _behaviour, flags, policy = endpoint
    data = dataset(tmp_path, [("a", "hi", "0")])
    assert run_cli(["eval", "--policy", str(policy), "--dataset", str(data), "--label-map", "safe", *flags,
                    "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 2
    assert "word=label pairs" in capsys.readouterr().err
