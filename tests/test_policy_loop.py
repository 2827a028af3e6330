"""The README's policy loop, run end to end as one story: a wrong block, marked in the review console, exported
as a dataset, the edited policy compared on it, then run as a shadow on live traffic (never changing a reply),
then promoted by a config edit and a reload, after which the same request is allowed. Real proxy, real SQLite
store, the stand-in classifier (which allows pillow fights only under a policy text that says they are play),
the openai SDK for traffic, plain HTTP for the console and the admin endpoint, the CLI for export and eval."""

from __future__ import annotations

import json
import textwrap
import time
from types import MappingProxyType

import httpx
import openai
import pytest
import yaml
from conftest import VIOLENCE_POLICY, user

from guardrail_proxy.audit_sqlite import connect
from guardrail_proxy.cli import build_parser
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import Rule

MARKER = "Pillow fights are play, not violence."
OPS = {"authorization": "Bearer ops-secret"}
TEXT = "a pillow fight at the sleepover"


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = int(args.func(args, Settings(MappingProxyType({}))))
    out, err = capsys.readouterr()
    return code, out, err


def blocked_id(client: openai.OpenAI) -> str:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test-model", messages=user(TEXT))
    return caught.value.response.headers["x-guardrail-request-id"]


def reload(url: str) -> dict:
    answer = httpx.post(f"{url}/admin/reload", headers=OPS, timeout=20)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_wrong_block_is_reviewed_exported_compared_shadowed_and_promoted(make_proxy, tmp_path, capsys):
    db_path = str(tmp_path / "audit.db")
    proxy = make_proxy({"audit_content": "all"}, server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": "ops-secret"},
                       audit={"store": "sqlite", "path": db_path, "durability": "sync"})
    proxy.classifier.rules[:0] = [Rule("pillow", 0, policy=MARKER), Rule("fight", 2)]

    # 1. Last night's wrong block.
    request_id = blocked_id(proxy.client)

    # 2. A reviewer marks it in the console: it should have been TV0.
    page = httpx.get(f"{proxy.url}/console/decisions/{request_id}", headers=OPS, timeout=20)
    assert page.status_code == 200 and TEXT in page.text and "TV2" in page.text
    mark = httpx.post(f"{proxy.url}/console/decisions/{request_id}/review", headers=OPS, timeout=20,
                      data={"phase": "input", "policy": "violence", "verdict": "wrong", "label": "TV0",
                            "note": "play, not violence", "reviewer": "Ana"})
    assert mark.status_code in (200, 303), mark.text
    db = connect(db_path)
    [(label, reviewer)] = db.execute("SELECT label, reviewer FROM reviews WHERE request_id = ?",
                                     [request_id]).fetchall()
    db.close()
    assert (label, reviewer) == ("TV0", "Ana")

    # 3. The disputed case becomes a dataset.
    reviewed = tmp_path / "reviewed.jsonl"
    code, _out, err = cli(["audit", "export", "--reviewed", "--policy", "violence", "--db", db_path, "--out",
                           str(reviewed)], capsys)
    assert code == 0, err
    [row] = [json.loads(line) for line in reviewed.read_text().splitlines()]
    assert (row["text"], row["label"], row["reviewer"]) == (TEXT, "TV0", "Ana")

    # 4. The edit, compared on exactly that case: it fixes it.
    old, new = tmp_path / "policies" / "violence.md", tmp_path / "violence-v2.md"
    new.write_text(textwrap.dedent(VIOLENCE_POLICY) + MARKER + "\n")
    results = tmp_path / "compare"
    code, _out, err = cli(["eval", "--compare", str(old), str(new), "--dataset", str(reviewed), "--config",
                           str(tmp_path / "proxy.yaml"), "--cache-dir", str(tmp_path / "cache"), "--out",
                           str(results), "--quiet"], capsys)
    assert code == 0, err
    summary = json.loads((results / "summary.json").read_text())
    assert (summary["mcnemar"]["fixed"], summary["mcnemar"]["broke"]) == (1, 0)

    # 5. Run as a shadow on live traffic: the reply is unchanged, the candidate's verdict is stored.
    route_file = tmp_path / "routes" / "main.yaml"
    route = yaml.safe_load(route_file.read_text())
    route_file.write_text(yaml.safe_dump({**route, "shadow": [{"policy": "violence", "candidate": "violence-v2.md",
                                                               "sample": 1.0}]}))
    assert reload(proxy.url)["reloaded"] is True
    shadowed_id = blocked_id(proxy.client)
    rows = wait_shadow_rows(db_path, shadowed_id)
    assert [(r[0], r[1], r[2]) for r in rows] == [("TV2", "TV0", 0)]

    # 6. Promote: the candidate's text becomes the policy, the shadow entry goes, a reload applies it.
    old.write_text(new.read_text())
    route_file.write_text(yaml.safe_dump(route))
    assert reload(proxy.url)["reloaded"] is True
    reply = proxy.client.chat.completions.create(model="test-model", messages=user(TEXT))
    assert reply.choices[0].finish_reason == "stop"


def wait_shadow_rows(db_path: str, request_id: str) -> list[tuple]:
    """The shadow rows of one request, once the writer has stored them (shadow rows never hold up a reply)."""
    deadline = time.monotonic() + 20
    while True:
        db = connect(db_path)
        rows = db.execute("SELECT enforced_label, label, agree FROM shadow_checks WHERE request_id = ? AND phase = "
                          "'input'", [request_id]).fetchall()
        db.close()
        if rows or time.monotonic() > deadline:
            return [tuple(r) for r in rows]
        time.sleep(0.05)
