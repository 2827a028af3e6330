"""The audit stores end to end, SQLite and PostgreSQL alike (a real server on 127.0.0.1): requests through the
proxy (the openai SDK), then `guardrail-proxy audit` list, show (with reviewers' marks and shadow verdicts),
stats, export (read back by `eval`'s loader; --reviewed compared on by `eval --compare`) and prune; content
modes; refused requests."""

from __future__ import annotations

import json
import textwrap
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import httpx
import openai
import pytest
from conftest import VIOLENCE_POLICY, free_port, user

from guardrail_proxy.audit_postgres import connect as postgres_connect
from guardrail_proxy.audit_reviews import make_review, run_add
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


def open_store(backend: Backend) -> Any:
    if backend.audit["store"] == "sqlite":
        return sqlite_connect(backend.audit["path"])
    return postgres_connect(backend.env["AUDIT_DSN"])


def request_ids(db: Any) -> dict[str, str]:
    """The input text of each record with stored content -> its request id."""
    found = {}
    for stored, request_id in db.execute("SELECT record, request_id FROM records").fetchall():
        content = json.loads(stored).get("content")
        if content:
            found[content["input"]] = request_id
    return found


def review(db: Any, request_id: str, *, correct: bool, label: str | None = None, policy: str = "violence",
           verdict: str = "TV2", note: str = "") -> None:
    run_add(db, make_review(request_id=request_id, phase="input", policy=policy, verdict_label=verdict,
                            correct=correct, label=label, note=note, reviewer="Ana", ts=time.time()))


NEW_WORDING = "A fight in a story is allowed."


def test_reviewed_items_export_and_compare_two_wordings_on_them(traffic, backend, capsys, tmp_path, safeguard):
    db_flags = traffic("all")
    db = open_store(backend)
    ids = request_ids(db)
    review(db, ids["describe the fight"], correct=False, label="TV0", note="a story")
    review(db, ids["hello there"], correct=True, verdict="TV0")
    db.close()
    out_file = tmp_path / "reviewed.jsonl"
    code, _, err = audit_cli(["export", "--reviewed", *db_flags, "--out", str(out_file)], capsys, backend.env)
    assert code == 0 and "wrote 2 reviewed dataset rows" in err, err
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [(r["text"], r["label"], r["verdict_label"], r["note"]) for r in rows] == [
        ("describe the fight", "TV0", "TV2", "a story"), ("hello there", "TV0", "TV0", "")]
    assert rows[0]["id"] == ids["describe the fight"] and rows[0]["context"][0]["content"] == "earlier"
    old, new = tmp_path / "old.md", tmp_path / "new.md"
    old.write_text(textwrap.dedent(VIOLENCE_POLICY))
    new.write_text(textwrap.dedent(VIOLENCE_POLICY) + NEW_WORDING + "\n")
    behaviour, server = safeguard
    behaviour.rules.insert(0, Rule("fight", 0, policy=NEW_WORDING))  # the new wording allows the story
    results = tmp_path / "cmp"
    args = build_parser().parse_args(["eval", "--compare", str(old), str(new), "--dataset", str(out_file),
                                      "--base-url", f"{server.url}/v1", "--cache-dir", str(tmp_path / "c"),
                                      "--out", str(results), "--quiet"])
    assert args.func(args, Settings()) == 0
    summary = json.loads((results / "summary.json").read_text())
    assert summary["mcnemar"]["fixed"] == 1 and summary["mcnemar"]["broke"] == 0
    assert summary["old"]["metrics"]["counts"]["fp"] == 1 and summary["new"]["metrics"]["counts"]["tn"] == 2


def test_reviews_of_several_policies_need_policy(traffic, backend, capsys, tmp_path):
    db_flags = traffic("all")
    db = open_store(backend)
    ids = request_ids(db)
    review(db, ids["describe the fight"], correct=False, label="TV0")
    review(db, ids["hello there"], correct=False, label="1", policy="selfharm", verdict="0")
    db.close()
    out_file = tmp_path / "reviewed.csv"
    code, _, err = audit_cli(["export", "--reviewed", *db_flags, "--out", str(out_file)], capsys, backend.env)
    assert code == 2 and "several policies (selfharm, violence)" in err and "--policy" in err
    assert not out_file.exists()
    code, _, err = audit_cli(["export", "--reviewed", "--policy", "selfharm", *db_flags, "--out", str(out_file)],
                             capsys, backend.env)
    # A check of the policy must have run on the record: this route runs only violence.
    assert code == 0 and "wrote 0 reviewed dataset rows" in err
    code, _, err = audit_cli(["export", "--reviewed", "--policy", "violence", *db_flags, "--out", str(out_file)],
                             capsys, backend.env)
    assert code == 0 and "wrote 1 reviewed dataset rows" in err
    assert [e.label for e in load_dataset(out_file)] == ["TV0"]


def add_shadow(db: Any, request_id: str, ts: float, agree: int | None = 0) -> None:
    detail = json.dumps({"reasoning": "candidate thinks it is a story", "rationale": None, "answer": "TV0",
                         "candidate": "routes/main.yaml"})
    db.execute("INSERT INTO shadow_checks (request_id, ts, route, phase, policy, subject, enforced_digest, "
               "candidate_digest, enforced_result, enforced_label, result, label, severity, agree, error_kind, "
               "latency_ms, detail) VALUES (?, ?, 'main', 'input', 'violence', 0, 'e1', 'c0ffee000000abc', "
               "'violation', 'TV2', 'pass', 'TV0', 0, ?, NULL, 3.5, ?)", [request_id, ts, agree, detail])


def test_show_has_the_review_history_and_the_shadow_verdicts(traffic, backend, capsys):
    db_flags = traffic("all")
    db = open_store(backend)
    request_id = request_ids(db)["describe the fight"]
    review(db, request_id, correct=False, label="TV0", note="a story")
    review(db, request_id, correct=True)
    add_shadow(db, request_id, time.time())
    db.close()
    code, out, _ = audit_cli(["show", request_id, *db_flags, "--json"], capsys, backend.env)
    record = json.loads(out)
    assert code == 0 and [(r["correct"], r["label"]) for r in record["reviews"]] == [(False, "TV0"), (True, "TV2")]
    [shadow] = record["shadow_checks"]
    assert (shadow["label"], shadow["enforced_label"], shadow["agree"]) == ("TV0", "TV2", False)
    assert shadow["detail"]["reasoning"] == "candidate thinks it is a story"
    assert record["policies"]["c0ffee000000abc"] is None  # the candidate's text was not stored by this test
    code, out, _ = audit_cli(["show", request_id, *db_flags], capsys, backend.env)
    assert "Ana: input violence TV2 should be TV0: a story" in out and "Ana: input violence TV2 correct" in out
    assert "shadow    input  violence candidate (c0ffee000000): pass TV0; enforced violation TV2: DISAGREES" in out
    assert "reasoning: candidate thinks it is a story" in out


def test_prune_deletes_the_reviews_and_shadow_verdicts_of_what_it_deletes(traffic, backend, capsys):
    db_flags = traffic("all")
    db = open_store(backend)
    ids = request_ids(db)
    for request_id in ids.values():
        review(db, request_id, correct=True)
        add_shadow(db, request_id, time.time())
    add_shadow(db, "orphan", 5.0)  # a shadow verdict whose record never arrived, long ago
    add_shadow(db, "orphan-new", time.time())  # ... and one made just now
    run_add(db, make_review(request_id="gone", phase="input", policy="violence", verdict_label="TV2", correct=True,
                            label=None, note="", reviewer="Ana", ts=5.0))  # a mark whose record is gone, long ago
    review(db, "kept-elsewhere", correct=True)  # a mark on no record of this store, made just now

    def counts() -> dict[str, int]:
        return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("records", "checks", "reviews", "shadow_checks")}

    before = counts()
    # Past an hour: no record is that old; only the old orphans go.
    code, out, _ = audit_cli(["prune", *db_flags, "--older-than", "1h", "--json"], capsys, backend.env)
    assert code == 0 and json.loads(out) == {"deleted": 0}
    assert counts() == {**before, "reviews": before["reviews"] - 1, "shadow_checks": before["shadow_checks"] - 1}
    code, out, _ = audit_cli(["prune", *db_flags, "--older-than", "2099-01-01", "--json"], capsys, backend.env)
    assert code == 0 and json.loads(out) == {"deleted": 5}
    found = counts()
    db.close()
    assert found == {"records": 0, "checks": 0, "reviews": 0, "shadow_checks": 0}


def test_reviewed_export_counts_the_marks_whose_text_was_not_stored(traffic, backend, capsys, tmp_path):
    db_flags = traffic("flagged")  # the allowed request's text is not kept
    db = open_store(backend)
    [(allowed,)] = db.execute("SELECT request_id FROM records WHERE decision = 'allow'").fetchall()
    review(db, request_ids(db)["describe the fight"], correct=False, label="TV0")
    review(db, allowed, correct=True, verdict="TV0")
    db.close()
    out_file = tmp_path / "reviewed.jsonl"
    code, _, err = audit_cli(["export", "--reviewed", *db_flags, "--out", str(out_file)], capsys, backend.env)
    assert code == 0 and "skipped 1 marks whose text was not stored" in err
    assert "wrote 1 reviewed dataset rows" in err and [e.label for e in load_dataset(out_file)] == ["TV0"]
