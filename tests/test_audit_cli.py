"""The audit stores end to end, SQLite and PostgreSQL alike (a real server on 127.0.0.1): requests through the
proxy (the openai SDK), then `guardrail-proxy audit` list, show, stats, export (read back by `eval`'s
loader) and prune; content modes; refused requests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import httpx
import openai
import pytest
from conftest import free_port, user

from guardrail_proxy.audit_sqlite import connect as sqlite_connect
from guardrail_proxy.auth import key_name
from guardrail_proxy.cli import build_parser
from guardrail_proxy.datasets import load_dataset
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import Rule


@dataclass
class Backend:
    audit: dict[str, Any]  # the config's audit section, durability aside
    flags: list[str]  # how the audit command finds the store
    env: dict[str, str]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        path = str(tmp_path / "audit.db")
        return Backend({"store": "sqlite", "path": path}, ["--db", path], {})
    dsn = request.getfixturevalue("postgres_dsn")
    return Backend({"store": "postgres", "dsn_env": "AUDIT_DSN"}, ["--dsn-env", "AUDIT_DSN"], {"AUDIT_DSN": dsn})


def audit_cli(argv: list[str], capsys, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    args = build_parser().parse_args(["audit", *argv])
    code = int(args.func(args, Settings(MappingProxyType(env or {}))))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def traffic(make_proxy, backend):
    """A proxy with client keys and the store, after five requests: allowed, blocked, 401, 400, 413. Returns
    the audit command's flags for that store."""

    def run(content: str = "flagged", durability: str = "sync"):
        proxy = make_proxy({"audit_content": content}, server_cfg={"client_keys_env": "KEYS", "max_body_bytes": 4096},
                           env={"KEYS": "key-one,key-two", **backend.env},
                           audit={**backend.audit, "durability": durability})
        proxy.classifier.rules.append(Rule("fight", 2))
        client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="key-one", max_retries=0)
        client.chat.completions.create(model="test-model", messages=user("hello there"))
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="test-model", messages=[
                {"role": "assistant", "content": "earlier"}, {"role": "user", "content": "describe the fight"}])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
                model="test-model", messages=user("hi"))
        headers = {"authorization": "Bearer key-two", "content-type": "application/json"}
        assert httpx.post(f"{proxy.url}/v1/chat/completions", content=b"{not json", headers=headers).status_code == 400
        big = json.dumps({"model": "test-model", "messages": user("x" * 5000)})
        assert httpx.post(f"{proxy.url}/v1/chat/completions", content=big, headers=headers).status_code == 413
        return backend.flags

    return run


def test_every_request_is_stored_and_listed(traffic, backend, capsys):
    db = traffic()
    code, out, _ = audit_cli(["list", *db, "--json"], capsys, backend.env)
    rows = json.loads(out)
    assert code == 0 and [r["status"] for r in rows] == [413, 400, 401, 400, 200]  # newest first
    assert [r["decision"] for r in rows][-2:] == ["block", "allow"]
    assert rows[3]["violations"] == ["input: violence TV2 (block)"]
    assert rows[4]["client"] == key_name("key-one") and rows[0]["client"] == key_name("key-two")
    assert rows[2]["client"] is None and "key-one" not in json.dumps(rows)  # never the key itself
    code, out, _ = audit_cli(["list", *db, "--json", "--decision", "block"], capsys, backend.env)
    assert [r["status"] for r in json.loads(out)] == [400]
    code, out, _ = audit_cli(["list", *db, "--json", "--policy", "violence", "--label", "TV2"], capsys, backend.env)
    assert len(json.loads(out)) == 1
    code, out, _ = audit_cli(["list", *db, "--json", "--flagged", "--since", "1h"], capsys, backend.env)
    assert len(json.loads(out)) == 4
    code, out, _ = audit_cli(["list", *db], capsys, backend.env)
    assert "violence TV2" in out and "request_id" in out


def test_show_has_the_reasoning_and_the_policy_version(traffic, backend, capsys):
    db = traffic()
    _, out, _ = audit_cli(["list", *db, "--json", "--decision", "block"], capsys, backend.env)
    request_id = json.loads(out)[0]["request_id"]
    code, out, _ = audit_cli(["show", request_id, *db, "--json"], capsys, backend.env)
    record = json.loads(out)
    check = record["phases"][0]["checks"][0]
    assert code == 0 and check["reasoning"].startswith("Stand-in") and check["label"] == "TV2"
    assert record["policies"][check["policy_digest"]]["text"].startswith("# Test violence policy")
    code, out, _ = audit_cli(["show", request_id, *db], capsys, backend.env)
    assert "reasoning: Stand-in" in out and "-> block" in out
    assert audit_cli(["show", "nope", *db], capsys, backend.env)[0] == 1


def test_stats_count_requests_per_period_policy_label_and_decision(traffic, backend, capsys):
    db = traffic()
    code, out, _ = audit_cli(["stats", *db, "--json", "--per", "hour"], capsys, backend.env)
    assert code == 0
    counts = {(c["decision"], c["policy"], c["label"]): c["requests"] for c in json.loads(out)}
    assert counts == {("allow", "-", "-"): 1, ("block", "violence", "TV2"): 1, ("none", "-", "-"): 3}


# flagged: the blocked request's input (it got no reply); all: also the allowed one, input and reply.
# Requests refused before a route was picked (401, 400, 413) have no route to ask, so no content.
@pytest.mark.parametrize(("content", "rows"), [("none", 0), ("flagged", 1), ("all", 3)])
def test_content_modes_and_export_into_eval(traffic, backend, capsys, tmp_path, content, rows):
    db = traffic(content)
    out_file = tmp_path / "flagged.jsonl"
    code, _, err = audit_cli(["export", *db, "--out", str(out_file)], capsys, backend.env)
    assert code == 0 and f"wrote {rows} dataset rows" in err
    if not rows:
        return
    examples = {e.text: e for e in load_dataset(out_file)}
    blocked = examples["describe the fight"]
    assert blocked.violation and blocked.categories == ("violence",) and blocked.context[0].text == "earlier"
    if content == "all":
        reply = next(e for e in examples.values() if e.role == "assistant")
        assert not reply.violation and reply.context[0].text == "hello there"


def test_prune_deletes_what_is_past_retention(traffic, backend, capsys):
    db = traffic()
    code, out, _ = audit_cli(["prune", *db, "--older-than", "1h"], capsys, backend.env)
    assert (code, out.strip()) == (0, "deleted 0 records")
    code, out, _ = audit_cli(["prune", *db, "--older-than", "2099-01-01", "--json"], capsys, backend.env)
    assert json.loads(out) == {"deleted": 5}
    assert json.loads(audit_cli(["list", *db, "--json"], capsys, backend.env)[1]) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["list", "--db", "{tmp}/none.db"], "no audit database here"),
    (["list", "--db", "{db}", "--since", "yesterday"], "expected a time like 24h"),
    (["prune", "--db", "{db}"], "no retention period"),
    (["prune", "--db", "{tmp}/typo.db", "--older-than", "1d"], "no audit database here"),  # never creates one
    (["list", "--dsn-env", "NO_SUCH_VARIABLE"], "environment variable NO_SUCH_VARIABLE is not set"),
    (["list", "--dsn-env", "CLOSED"], "cannot connect to the PostgreSQL audit store"),
])
def test_errors_are_one_line(capsys, tmp_path, argv, message):
    db = tmp_path / "audit.db"
    sqlite_connect(str(db)).close()
    env = {"CLOSED": f"postgresql://nobody@127.0.0.1:{free_port()}/none"}
    code, _, err = audit_cli([a.format(tmp=tmp_path, db=db) for a in argv], capsys, env)
    assert code == 2 and message in err and err.count("\n") == 1


def test_batch_mode_stores_the_records_too(traffic, backend, capsys):
    db = traffic(durability="batch")
    # Batch mode may answer before the commit: the records arrive within the window.
    for _ in range(100):
        rows = json.loads(audit_cli(["list", *db, "--json"], capsys, backend.env)[1])
        if len(rows) == 5:
            break
        time.sleep(0.05)
    assert len(rows) == 5


def test_a_streamed_reply_is_stored_as_relayed(make_proxy, backend, capsys):
    proxy = make_proxy({"audit_content": "all"}, env=backend.env, audit={**backend.audit, "durability": "sync"})
    stream = proxy.client.chat.completions.create(model="test-model", messages=user("tell me a story"), stream=True)
    relayed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [record] = json.loads(audit_cli(["list", *backend.flags, "--json"], capsys, backend.env)[1])
    shown = json.loads(audit_cli(["show", record["request_id"], *backend.flags, "--json"], capsys, backend.env)[1])
    assert relayed and shown["content"]["output"] == relayed and shown["content"]["input"] == "tell me a story"
