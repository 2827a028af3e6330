"""Shadow policies on live traffic, through the real proxy and the stand-in classifier: a candidate's verdicts never
change a reply, are stored paired with the enforced verdict on the same text and counted by agreement; the sample
rate, the in-flight bound, the classifier's room, history already asked and a failing candidate behave as
documented; every entry point is shadowed; a fault in starting shadow calls never reaches the request; promotion
is a reload."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import textwrap
import time
from typing import Any

import httpx
import openai
import psycopg
import pytest
import yaml
from conftest import VIOLENCE_POLICY, metric, user

from guardrail_proxy.audit_store import JsonlStore
from guardrail_proxy.audit_writer import AuditWriter
from guardrail_proxy.classifier import SafeguardClient
from guardrail_proxy.config import AuditConfig, ClassifierConfig, RouteConfig
from guardrail_proxy.decisions import Outcome, Verdict
from guardrail_proxy.litellm_guardrail import PATH
from guardrail_proxy.metrics import Metrics
from guardrail_proxy.pipeline import Checker
from guardrail_proxy.policies import load_policy_file, parse_policy
from guardrail_proxy.shadow import Shadow, sampled
from guardrail_proxy.shadow_run import ShadowOutput, ShadowRunner
from guardrail_proxy.standins.safeguard import Rule, target_text
from guardrail_proxy.subjects import Subject, Turn

MARK = "Candidate wording: duels count as TV2."
CANDIDATE = textwrap.dedent(VIOLENCE_POLICY) + MARK + "\n"
OPS = {"authorization": "Bearer ops-secret"}
# Both versions flag "sword"; only the candidate's text flags "duel"; the candidate answers "glitch" off-format.
RULES = [Rule("sword", 2), Rule("duel", 2, policy=MARK), Rule("glitch", answer="no idea", policy=MARK)]


def shadowed(tmp_path, sample: float = 1.0, **entry) -> dict:
    (tmp_path / "candidates").mkdir(exist_ok=True)
    (tmp_path / "candidates" / "violence.md").write_text(CANDIDATE)
    return {"shadow": [{"policy": "violence", "candidate": "candidates/violence.md", "sample": sample, **entry}]}


def split(lines: list[dict]) -> tuple[list[dict], list[dict]]:
    """(request records, shadow rows) of the jsonl store's lines."""
    return ([line for line in lines if "kind" not in line],
            [line for line in lines if line.get("kind") == "shadow_check"])


def wait_rows(proxy, count: int, records: int = 0, timeout: float = 5.0) -> list[dict]:
    """Shadow rows are written after the reply, once the candidate has answered (and a stream's record when its
    generator closes, just after the client saw [DONE]): wait for `count` rows and `records` records."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found, rows = split(proxy.audit())
        if len(rows) >= count and len(found) >= records:
            break
        time.sleep(0.02)
    return rows


def asked_of_candidate(proxy) -> list[str]:
    """The texts the stand-in classifier was asked with the candidate's wording, in order."""
    return [target_text(r["messages"][1]["content"]) for r in proxy.classifier.requests
            if MARK in r["messages"][0]["content"]]


def runner_for(client, writer, metrics, max_in_flight: int = 8, grace_s: float = 5) -> ShadowRunner:
    return ShadowRunner({"r": (Shadow("r", "violence", parse_policy(CANDIDATE, "c.md"), 1.0, max_in_flight),)},
                        {"default": client}, {"violence": POLICY}, ShadowOutput(writer, metrics), grace_s=grace_s)


POLICY = parse_policy(textwrap.dedent(VIOLENCE_POLICY), "v.md")
ROUTE = RouteConfig.model_validate({"name": "r", "models": ["m"], "upstream": "u", "policies": [{"id": "violence"}]})
PASS = Verdict("violence", POLICY.digest, "input", False, 0, "TV0")


def stream_text(proxy, text: str) -> str:
    chunks = proxy.client.chat.completions.create(model="test-model", messages=user(text), stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("text", "blocked", "enforced", "candidate"), [
    ("tell me about a duel", False, "TV0", "TV2"),  # the candidate would block: the reply is still allowed
    ("tell me about a sword", True, "TV2", "TV2"),  # both block: the block is the enforced policy's
    ("hello there", False, "TV0", "TV0"),
])
def test_shadow_verdicts_never_change_a_reply_and_are_stored_paired(make_proxy, tmp_path, stream, text, blocked,
                                                                      enforced, candidate):
    proxy = make_proxy(shadowed(tmp_path), server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": "ops-secret"})
    proxy.classifier.rules[:] = RULES
    if blocked:
        with pytest.raises(openai.BadRequestError):
            stream_text(proxy, text) if stream else proxy.client.chat.completions.create(
                model="test-model", messages=user(text))
    else:
        reply = stream_text(proxy, text) if stream else proxy.client.chat.completions.create(
            model="test-model", messages=user(text)).choices[0].message.content
        assert reply == f"Stand-in reply to: {text}"
    phases = ["input"] if blocked else ["input", "output"]
    wait_rows(proxy, len(phases), records=1)
    [record], rows = split(proxy.audit())
    assert record["decision"] == ("block" if blocked else "allow")
    assert sorted(r["phase"] for r in rows) == phases
    candidate_digest = parse_policy(CANDIDATE, "c").digest
    for row in rows:
        check = next(c for p in record["phases"] if p["phase"] == row["phase"] for c in p["checks"])
        assert row["request_id"] == record["request_id"] and row["route"] == "main" and row["policy"] == "violence"
        assert row["enforced_digest"] == check["policy_digest"] and row["candidate_digest"] == candidate_digest
        assert row["enforced_label"] == check["label"]
        assert row["detail"]["candidate"].endswith("candidates/violence.md") and row["detail"]["reasoning"]
    input_row = next(r for r in rows if r["phase"] == "input")
    assert (input_row["enforced_label"], input_row["label"]) == (enforced, candidate)
    assert input_row["agree"] == int(enforced == candidate)
    assert all(c["policy_digest"] != candidate_digest for p in record["phases"] for c in p["checks"])  # never a check
    metrics = httpx.get(f"{proxy.url}/metrics", headers=OPS).text
    name = "agree" if enforced == candidate else "disagree"
    assert metric(metrics, "guardrail_shadow_checks_total", route="main", policy="violence", agreement=name) >= 1
    assert metric(metrics, "guardrail_shadow_checks_total") == len(rows)


def test_the_sample_rate_picks_requests_by_id_for_both_phases(make_proxy, tmp_path):
    proxy = make_proxy(shadowed(tmp_path, sample=0.3))
    ids = [proxy.client.chat.completions.with_raw_response.create(model="test-model", messages=user(f"hi {i}"))
           .headers["x-guardrail-request-id"] for i in range(30)]
    expected = {rid for rid in ids if sampled(rid, "violence", 0.3)}
    assert 0 < len(expected) < len(ids)  # these ids fall on both sides
    rows = wait_rows(proxy, 2 * len(expected))
    assert {r["request_id"] for r in rows} == expected
    assert sorted(r["phase"] for r in rows) == ["input"] * len(expected) + ["output"] * len(expected)


def test_the_bound_drops_calls_beyond_it_and_counts_them_keeping_the_newest(make_proxy, tmp_path):
    # Output checks off: the input's candidate call may still run when the reply is checked, and the bound
    # would drop the output's call some of the time.
    route = {**shadowed(tmp_path, max_in_flight=1), "input": {"scope": "all_user"}, "output": {"enabled": False}}
    proxy = make_proxy(route, server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": "ops-secret"})
    messages = [{"role": "user", "content": f"message {i}"} for i in range(3)]
    proxy.client.chat.completions.create(model="test-model", messages=messages)  # three input texts at once
    metrics = httpx.get(f"{proxy.url}/metrics", headers=OPS).text
    assert metric(metrics, "guardrail_shadow_dropped_total", route="main", policy="violence", reason="bound") == 2
    [row] = wait_rows(proxy, 1, records=1)
    assert row["phase"] == "input"
    assert asked_of_candidate(proxy) == ["message 2"]  # the bound's one call went to the new message


def test_history_the_candidate_was_asked_already_is_not_asked_again(make_proxy, tmp_path):
    proxy = make_proxy({**shadowed(tmp_path), "input": {"scope": "all_user"}, "output": {"enabled": False}})
    history: list[dict[str, str]] = []
    for turn in range(3):
        history.append({"role": "user", "content": f"turn {turn}"})
        reply = proxy.client.chat.completions.create(model="test-model", messages=history)
        history.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
        wait_rows(proxy, turn + 1, records=turn + 1)
    assert asked_of_candidate(proxy) == ["turn 0", "turn 1", "turn 2"]  # each text once, however often resent
    records, rows = split(proxy.audit())
    assert len(rows) == 3 and {r["request_id"] for r in rows} == {r["request_id"] for r in records}


def test_every_entry_point_is_shadowed(make_proxy, tmp_path):
    proxy = make_proxy(shadowed(tmp_path))
    proxy.classifier.rules[:] = RULES
    answers = [httpx.post(f"{proxy.url}{PATH}", json={"input_type": "request", "texts": ["a duel"],
                                                      "model": "test-model"}, timeout=20),
               httpx.post(f"{proxy.url}/v1/guardrail/check", json={"model": "test-model", "phase": "input",
                                                                   "messages": user("a duel at noon")}, timeout=20),
               httpx.post(f"{proxy.url}/v1/moderations", json={"model": "test-model", "input": "a duel at dusk"},
                          timeout=20)]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    ids = {a.headers["x-guardrail-request-id"] for a in answers}
    rows = wait_rows(proxy, 3, records=3)
    assert {r["request_id"] for r in rows} == ids
    assert {(r["enforced_label"], r["label"], r["agree"]) for r in rows} == {("TV0", "TV2", 0)}


def test_a_failing_candidate_is_stored_as_an_error_and_changes_nothing(make_proxy, tmp_path):
    proxy = make_proxy(shadowed(tmp_path))
    proxy.classifier.rules[:] = RULES
    reply = proxy.client.chat.completions.create(model="test-model", messages=user("a glitch"))
    assert reply.choices[0].message.content == "Stand-in reply to: a glitch"
    [record] = split(proxy.wait_audit(3))[0]
    assert record["decision"] == "allow" and not record["unchecked"]
    rows = wait_rows(proxy, 2)
    assert {(r["result"], r["error_kind"], r["agree"], r["enforced_result"]) for r in rows} == {
        ("error", "unparseable", None, "pass")}


def test_combined_policies_are_shadowed_with_the_candidate_in_the_same_bundle(make_proxy, tmp_path):
    route = {**shadowed(tmp_path), "combine_policies": True, "policies": [{"id": "violence"}, {"id": "selfharm"}]}
    proxy = make_proxy(route)
    proxy.classifier.rules[:] = RULES
    proxy.client.chat.completions.create(model="test-model", messages=user("a duel"))
    rows = wait_rows(proxy, 2)
    assert {(r["phase"], r["enforced_label"], r["label"], r["agree"]) for r in rows} == {
        ("input", "TV0", "TV2", 0), ("output", "TV0", "TV2", 0)}
    assert all(r["detail"]["combined"] and r["detail"]["answer"] == "violence: TV2\nselfharm: 0" for r in rows)
    bundles = [r["messages"][0]["content"] for r in proxy.classifier.requests if MARK in r["messages"][0]["content"]]
    assert len(bundles) == 2 and all("=== POLICY selfharm ===" in b for b in bundles)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_database_stores_shadow_rows_apart_and_the_candidate_text(make_proxy, tmp_path, request, store):
    if store == "sqlite":
        audit, env = {"store": "sqlite", "path": str(tmp_path / "audit.db")}, {}
    else:
        audit, env = {"store": "postgres", "dsn_env": "AUDIT_DSN"}, {"AUDIT_DSN": request.getfixturevalue(
            "postgres_dsn")}
    proxy = make_proxy(shadowed(tmp_path), audit=audit, env=env)
    proxy.classifier.rules[:] = RULES
    proxy.client.chat.completions.create(model="test-model", messages=user("a duel"))
    proxy.server.stop()  # shutdown commits every record and row
    db: Any = sqlite3.connect(tmp_path / "audit.db") if store == "sqlite" else psycopg.connect(env["AUDIT_DSN"])
    candidate = parse_policy(CANDIDATE, "c")
    rows = db.execute("SELECT phase, policy, enforced_label, label, agree, candidate_digest, detail "
                      "FROM shadow_checks ORDER BY phase").fetchall()
    assert [r[:6] for r in rows] == [("input", "violence", "TV0", "TV2", 0, candidate.digest),
                                     ("output", "violence", "TV0", "TV2", 0, candidate.digest)]
    assert json.loads(rows[0][6])["answer"] == "TV2"
    assert db.execute("SELECT COUNT(*) FROM checks").fetchone() == (2,)  # the enforced checks only
    text = db.execute("SELECT policy_id, text FROM policies WHERE digest = %s" if store == "postgres" else
                      "SELECT policy_id, text FROM policies WHERE digest = ?", (candidate.digest,)).fetchone()
    assert text == ("violence", candidate.text)
    db.close()


def test_promotion_is_a_config_edit_picked_up_by_reload(make_proxy, tmp_path):
    proxy = make_proxy(shadowed(tmp_path), server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": "ops-secret"})
    proxy.classifier.rules[:] = RULES
    candidate = load_policy_file(tmp_path / "candidates" / "violence.md")
    assert proxy.client.chat.completions.create(model="test-model", messages=user("a duel")).choices
    # Promote: the candidate's text over the policy, the shadow entry gone, then a reload.
    (tmp_path / "policies" / "violence.md").write_text(CANDIDATE)
    route_file = tmp_path / "routes" / "main.yaml"
    route_file.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(route_file.read_text()).items()
                                          if k != "shadow"}))
    answer = httpx.post(f"{proxy.url}/admin/reload", headers=OPS, timeout=10).json()
    assert answer["reloaded"] is True, answer
    with pytest.raises(openai.BadRequestError):  # the former candidate now decides
        proxy.client.chat.completions.create(model="test-model", messages=user("a duel"))
    records, rows = split(proxy.wait_audit(4))
    assert records[-1]["phases"][0]["checks"][0]["policy_digest"] == candidate.digest
    assert all(r["request_id"] == records[0]["request_id"] for r in rows)  # nothing shadowed after promotion


async def test_a_call_is_dropped_when_the_enforced_calls_leave_no_room(safeguard, tmp_path):
    behaviour, server = safeguard
    behaviour.delay_s = 0.3
    client = SafeguardClient(ClassifierConfig(base_url=f"{server.url}/v1", max_concurrency=1, retries=0),
                             api_key=None)
    metrics = Metrics()
    writer = AuditWriter(JsonlStore(str(tmp_path / "a.jsonl")), AuditConfig(store="jsonl", path="x"), metrics)
    await writer.start()
    runner = runner_for(client, writer, metrics)
    try:
        holder = asyncio.create_task(client.classify(POLICY, "an enforced call"))  # takes the only slot
        while not client.active:
            await asyncio.sleep(0.01)
        runner.start("req", ROUTE, "input", [("text", (POLICY,))], [("text", PASS)], lambda m: m[0])
        assert not runner.tasks  # dropped at once: nothing queued
        await holder
        await runner.close()
    finally:
        await client.aclose()
        await writer.close()
    assert metric(metrics.render(), "guardrail_shadow_dropped_total", reason="busy") == 1
    assert len(behaviour.requests) == 1  # the enforced call only


async def test_candidate_calls_up_to_the_cap_never_make_an_enforced_call_wait_or_be_refused(safeguard, tmp_path):
    behaviour, server = safeguard
    behaviour.delay_s = 0.3
    # No queue at all: an enforced call that found every slot taken would be refused as overload at once.
    client = SafeguardClient(ClassifierConfig(base_url=f"{server.url}/v1", max_concurrency=4, max_queue=0,
                                              retries=0), api_key=None)
    metrics = Metrics()
    writer = AuditWriter(JsonlStore(str(tmp_path / "a.jsonl")), AuditConfig(store="jsonl", path="x"), metrics)
    await writer.start()
    runner = runner_for(client, writer, metrics)
    texts = [f"text {i}" for i in range(6)]
    try:
        runner.start("req", ROUTE, "input", [(t, (POLICY,)) for t in texts], [(t, PASS) for t in texts],
                     lambda m: m[0])
        assert runner.running == {"default": 3}  # the cap for 4 slots: 3 candidate calls, one slot in reserve
        while len(behaviour.requests) < 3:  # the candidate calls are at the classifier
            await asyncio.sleep(0.01)
        calls = [asyncio.create_task(client.classify(POLICY, f"enforced {i}")) for i in range(4)]
        await asyncio.sleep(0)  # each took a slot at its first step, or was refused there
        assert (client.active, client.waiting, runner.running) == (4, 0, {"default": 3})  # all 7 in flight
        enforced = await asyncio.gather(*calls, return_exceptions=True)
        await runner.close()
    finally:
        await client.aclose()
        await writer.close()
    assert [type(e).__name__ for e in enforced] == ["Classification"] * 4
    rendered = metrics.render()
    assert metric(rendered, "guardrail_shadow_dropped_total", reason="busy") == 3
    assert metric(rendered, "guardrail_shadow_checks_total") == 3


async def test_calls_still_running_at_shutdown_get_a_short_grace_then_are_dropped(safeguard, tmp_path):
    behaviour, server = safeguard
    behaviour.delay_s = 1.5
    client = SafeguardClient(ClassifierConfig(base_url=f"{server.url}/v1", retries=0), api_key=None)
    metrics = Metrics()
    writer = AuditWriter(JsonlStore(str(tmp_path / "a.jsonl")), AuditConfig(store="jsonl", path="x"), metrics)
    await writer.start()
    runner = runner_for(client, writer, metrics, grace_s=20)
    try:
        runner.start("req", ROUTE, "input", [("text", (POLICY,))], [("text", PASS)], lambda m: m[0])
        while not behaviour.requests:
            await asyncio.sleep(0.01)
        closing = asyncio.create_task(runner.close())  # a reload's close: it would wait up to 20 s
        await asyncio.sleep(0)
        runner.hurry(0.05)  # then the process shuts down
        await asyncio.wait_for(closing, 10)
    finally:
        await client.aclose()
        await writer.close()
    assert metric(metrics.render(), "guardrail_shadow_dropped_total", reason="shutdown") == 1
    assert not (tmp_path / "a.jsonl").read_text()  # no row for a call that did not finish
    assert not runner.tasks and not runner.in_flight and not runner.running


async def test_a_call_cancelled_before_its_first_step_is_counted_and_released(safeguard, tmp_path):
    _, server = safeguard
    client = SafeguardClient(ClassifierConfig(base_url=f"{server.url}/v1", retries=0), api_key=None)
    metrics = Metrics()
    writer = AuditWriter(JsonlStore(str(tmp_path / "a.jsonl")), AuditConfig(store="jsonl", path="x"), metrics)
    await writer.start()
    runner = runner_for(client, writer, metrics)
    try:
        runner.start("req", ROUTE, "input", [("text", (POLICY,))], [("text", PASS)], lambda m: m[0])
        runner.cancel()  # before the task ran at all
        await asyncio.gather(*runner.tasks, return_exceptions=True)
        await runner.close()
    finally:
        await client.aclose()
        await writer.close()
    assert metric(metrics.render(), "guardrail_shadow_dropped_total", reason="shutdown") == 1
    assert not runner.in_flight and not runner.running
    assert "text" not in runner.asked.keys and not runner.asked.keys  # never answered: may be asked again


async def test_a_fault_starting_shadow_calls_never_reaches_the_request(safeguard, tmp_path, caplog):
    behaviour, server = safeguard
    behaviour.rules[:] = [Rule("sword", 2)]
    client = SafeguardClient(ClassifierConfig(base_url=f"{server.url}/v1", retries=0), api_key=None)
    metrics = Metrics()
    writer = AuditWriter(JsonlStore(str(tmp_path / "a.jsonl")), AuditConfig(store="jsonl", path="x"), metrics)
    await writer.start()
    # A bug of ours: the runner has no client for the route's classifier, so starting its calls raises.
    broken = ShadowRunner({"r": (Shadow("r", "violence", parse_policy(CANDIDATE, "c.md"), 1.0, 8),)}, {},
                          {"violence": POLICY}, ShadowOutput(writer, metrics), grace_s=5)
    checker = Checker({"default": client}, {"violence": POLICY}, shadow=broken)
    try:
        allowed = await checker.check("input", [Subject(Turn("user", "hello"))], ROUTE, request_id="r1")
        blocked = await checker.check("input", [Subject(Turn("user", "a sword"))], ROUTE, request_id="r2")
    finally:
        await client.aclose()
        await writer.close()
    assert allowed.outcome is Outcome.ALLOW and blocked.outcome is Outcome.BLOCK  # decided as without shadows
    assert metric(metrics.render(), "guardrail_shadow_dropped_total", policy="*", reason="internal") == 2
    assert any("could not start" in r.getMessage() for r in caplog.records)


def test_concurrent_requests_with_a_slow_classifier_all_end_and_rows_stay_paired(make_proxy, tmp_path):
    proxy = make_proxy(shadowed(tmp_path, max_in_flight=2))
    proxy.classifier.delay_s = 0.05
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: proxy.client.chat.completions.create(
            model="test-model", messages=user(f"hi {i}")).choices[0].message.content, range(16)))
    assert replies == [f"Stand-in reply to: hi {i}" for i in range(16)]
    records, rows = split(proxy.wait_audit(16))
    ids = {r["request_id"] for r in records}
    assert rows and all(r["request_id"] in ids and r["agree"] == 1 for r in rows)
