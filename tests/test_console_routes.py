"""The console through the real proxy (uvicorn, the stand-in classifier and model, requests from the openai SDK),
on SQLite and on a real PostgreSQL: who gets in and how (the ops key's login form and cookie, Bearer, the ops
port and the Host it answers to), the Origin check on POSTs, a mark stored and refused (a label that is not the
policy's), the export, the pages' security headers, and odd input (a "²" where a number goes, NUL characters,
a large sign-in body) answered with a clear page, never a 500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import free_port, user, write_config

from guardrail_proxy.datasets import load_dataset
from guardrail_proxy.loader import load_config
from guardrail_proxy.standins.safeguard import Rule

KEY = "ops-secret"


@pytest.fixture(params=["sqlite", "postgres"])
def audit(request, tmp_path) -> tuple[dict[str, str], dict[str, str]]:
    """(the config's audit section, the environment it needs)."""
    if request.param == "sqlite":
        return {"store": "sqlite", "path": str(tmp_path / "audit.db"), "durability": "sync"}, {}
    dsn = request.getfixturevalue("postgres_dsn")
    return {"store": "postgres", "dsn_env": "AUDIT_DSN", "durability": "sync"}, {"AUDIT_DSN": dsn}


def traffic(proxy) -> None:
    proxy.classifier.rules.append(Rule("duel", 2))
    proxy.client.chat.completions.create(model="test-model", messages=user("hello <script>alert(1)</script>"))
    with pytest.raises(openai.BadRequestError):
        proxy.client.chat.completions.create(model="test-model", messages=user("describe the duel in detail"))


def signed_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=20)
    answer = client.post("/console/login", data={"key": KEY, "next": "/console/decisions"},
                         headers={"origin": url})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/decisions"
    return client


def test_the_review_loop_over_http(make_proxy, audit) -> None:
    section, env = audit
    proxy = make_proxy({"audit_content": "all"}, server_cfg={"ops_key_env": "OPS_KEY"}, audit=section,
                       env={"OPS_KEY": KEY, **env})
    traffic(proxy)
    url = proxy.url
    login = httpx.get(f"{url}/console/decisions?decision=block")
    assert login.status_code == 401 and 'name="key"' in login.text
    assert 'value="/console/decisions?decision=block"' in login.text  # back to the filtered list after signing in
    wrong = httpx.post(f"{url}/console/login", data={"key": "guess"}, headers={"origin": url})
    assert wrong.status_code == 401 and "That is not the ops key." in wrong.text
    assert httpx.post(f"{url}/console/login", data={"key": KEY}).status_code == 403  # no Origin: refused
    client = signed_in(url)
    cookie = client.cookies.jar
    assert [(c.name, c.path) for c in cookie] == [("guardrail_console", "/console")]

    listing = client.get("/console/decisions", params={"decision": "block"})
    assert listing.status_code == 200 and listing.text.count('href="/console/decisions/') == 1
    assert listing.headers["content-security-policy"].startswith("default-src 'none'")
    request_id = client.get("/console/decisions", params={"decision": "block"}).text.split(
        'href="/console/decisions/')[1].split('"')[0]
    page = client.get(f"/console/decisions/{request_id}")
    assert page.status_code == 200 and "describe the duel in detail" in page.text and "TV2" in page.text
    allowed_id = client.get("/console/decisions", params={"decision": "allow"}).text.split(
        'href="/console/decisions/')[1].split('"')[0]
    assert "hello &lt;script&gt;alert(1)&lt;/script&gt;" in client.get(f"/console/decisions/{allowed_id}").text

    mark = {"phase": "input", "policy": "violence", "verdict": "wrong", "label": "TV0", "note": "a story",
            "reviewer": "Ana"}
    forged = client.post(f"/console/decisions/{request_id}/review", data=mark, headers={"origin": "http://evil.test"})
    assert forged.status_code == 403
    refused = client.post(f"/console/decisions/{request_id}/review", data={**mark, "label": ""},
                          headers={"origin": url})
    assert refused.status_code == 400 and 'id="error-label"' in refused.text
    not_a_code = client.post(f"/console/decisions/{request_id}/review", data={**mark, "label": "ZZ9"},
                             headers={"origin": url})  # would poison the export: violence's codes are TV0..TV3
    assert not_a_code.status_code == 400 and "expected one of TV0, TV1, TV2, TV3" in not_a_code.text
    assert "Not reviewed yet" in not_a_code.text
    # NUL characters (PostgreSQL refuses them in text) are a 400 page, not a store error
    assert client.get("/console/decisions", params={"route": "a\x00b"}).status_code == 400
    assert client.get("/console/decisions/a%00b").status_code == 400
    nul = client.post(f"/console/decisions/{request_id}/review", data={**mark, "note": "a\x00b"},
                      headers={"origin": url})
    assert nul.status_code == 400 and "NUL" in nul.text
    assert client.get("/console/decisions", params={"route": "main"}).status_code == 200  # the store still answers
    stored = client.post(f"/console/decisions/{request_id}/review", data=mark, headers={"origin": url})
    assert stored.status_code == 303 and stored.headers["location"].endswith("#mark-input-violence")
    page = client.get(f"/console/decisions/{request_id}")
    assert "should have been <b>TV0</b> by Ana" in page.text
    reviewed = client.get("/console/decisions", params={"reviewed": "yes"}).text
    assert reviewed.count('href="/console/decisions/') == 1

    export = client.get("/console/export.jsonl", params={"policy": "violence"})
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert "-first-" not in export.headers["content-disposition"]
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert [(r["text"], r["label"], r["reviewer"]) for r in rows] == [("describe the duel in detail", "TV0", "Ana")]
    path = Path(proxy.audit_path).parent / "reviewed.jsonl"
    path.write_text(export.text)
    config = load_config(Path(proxy.audit_path).parent / "proxy.yaml")
    assert [e.label for e in load_dataset(path, policy=config.policies["violence"])] == ["TV0"]

    assert client.get("/console/decisions/nope").status_code == 404
    assert client.get("/console/").status_code == 200
    bearer = httpx.get(f"{url}/console/shadow", headers={"authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200
    # a Bearer POST needs no Origin: no browser adds that header by itself
    again = httpx.post(f"{url}/console/decisions/{request_id}/review", data={**mark, "verdict": "correct"},
                       headers={"authorization": f"Bearer {KEY}"})
    assert again.status_code == 303
    out = client.post("/console/logout", headers={"origin": url})
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    client.close()


def test_odd_input_gets_a_clear_page_never_a_500(make_proxy, tmp_path) -> None:
    proxy = make_proxy({"audit_content": "all"}, server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": KEY},
                       audit={"store": "sqlite", "path": str(tmp_path / "audit.db"), "durability": "sync"})
    traffic(proxy)
    url = proxy.url
    # "²" passes str.isdigit() and makes int() raise: an unauthenticated visitor once got a 500 and a stack trace
    odd_cookie = httpx.get(f"{url}/console/", headers={"cookie": "guardrail_console=\u00b2.x".encode("latin-1")})
    assert odd_cookie.status_code == 401 and 'name="key"' in odd_cookie.text
    client = signed_in(url)
    assert client.get("/console/decisions?page=%C2%B2").status_code == 200
    assert client.get("/console/decisions?page=%D9%A3").status_code == 200  # an Arabic-Indic three

    request_id = client.get("/console/decisions", params={"decision": "block"}).text.split(
        'href="/console/decisions/')[1].split('"')[0]
    mark = {"phase": "input", "policy": "violence", "verdict": "wrong", "label": "TV0", "reviewer": "Ana"}
    review = f"/console/decisions/{request_id}/review"
    assert client.post(review, data=mark, headers={"origin": "null"}).status_code == 403
    cross = client.post(review, data=mark, headers={"origin": url, "sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    gone = client.post("/console/decisions/nope/review", data=mark, headers={"origin": url})
    assert gone.status_code == 404 and "Sign out" in gone.text  # still signed in on the error page
    big = client.post(review, content=b"note=" + b"x" * 70_000, headers={
        "origin": url, "content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413 and "Sign out" in big.text
    too_big = httpx.post(f"{url}/console/login", data={"key": "x" * 70_000}, headers={"origin": url})
    assert too_big.status_code == 413 and "at most" in too_big.text
    back = httpx.post(f"{url}/console/login", data={"key": KEY, "next": "/console/../metrics"},
                      headers={"origin": url})
    assert back.status_code == 303 and back.headers["location"] == "/console/"
    assert client.post(review, data=mark, headers={"origin": url}).status_code == 303  # the genuine form works
    client.close()


def test_no_ops_port_and_no_ops_key_means_no_console(make_proxy, tmp_path) -> None:
    proxy = make_proxy(audit={"store": "sqlite", "path": str(tmp_path / "audit.db")})
    answer = httpx.get(f"{proxy.url}/console/")
    assert answer.status_code == 403 and "neither is configured" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{proxy.url}/console/assets/console.css").status_code == 200  # the refusal page is styled


def test_a_file_or_log_store_gets_a_page_saying_so(make_proxy) -> None:
    proxy = make_proxy(server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": KEY})  # the fixture's jsonl store
    answer = httpx.get(f"{proxy.url}/console/", headers={"authorization": f"Bearer {KEY}"})
    assert answer.status_code == 501 and "reads the sqlite or postgres audit store" in answer.text


def test_the_assets_are_served_and_nothing_is_fetched_elsewhere(make_proxy, tmp_path) -> None:
    proxy = make_proxy(server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": KEY},
                       audit={"store": "sqlite", "path": str(tmp_path / "audit.db")})
    page = httpx.get(f"{proxy.url}/console/", headers={"authorization": f"Bearer {KEY}"}).text
    assert "http://" not in page.replace(proxy.url, "") and "https://" not in page
    css = httpx.get(f"{proxy.url}/console/assets/console.css")
    js = httpx.get(f"{proxy.url}/console/assets/console.js")
    assert css.headers["content-type"].startswith("text/css") and js.headers["content-type"].startswith(
        "text/javascript")
    assert "url(" not in css.text and "fetch(" not in js.text and "XMLHttpRequest" not in js.text


def test_the_console_lives_on_the_ops_port_only(tmp_path, safeguard, upstream) -> None:
    port, ops_port = free_port(), free_port()
    path = write_config(tmp_path, {}, safeguard[1].url, upstream[1].url,
                        server_cfg={"port": port, "ops_port": ops_port, "drain_s": 0},
                        audit={"store": "sqlite", "path": str(tmp_path / "audit.db")})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "guardrail_proxy", "serve", "--config", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        main, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{ops}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "the proxy did not start"
                time.sleep(0.05)
        assert httpx.get(f"{main}/console/").status_code == 404
        assert httpx.get(f"{main}/console/assets/console.css").status_code == 404
        overview = httpx.get(f"{ops}/console/")
        assert overview.status_code == 200 and "Overview" in overview.text  # the ops port without a key: open
        assert httpx.get(f"{ops}/console", follow_redirects=True).status_code == 200
        assert httpx.get(f"http://localhost:{ops_port}/console/").status_code == 200
        # a DNS-rebinding page: its own name, pointed at this port; the browser thinks it is same-origin
        rebound = httpx.get(f"{ops}/console/decisions", headers={"host": f"rebind.evil.test:{ops_port}"})
        assert rebound.status_code == 421 and "ops_key_env" in rebound.text
        assert httpx.get(f"{ops}/console/login", headers={"host": f"rebind.evil.test:{ops_port}"}).status_code == 421
        assert "text/html" in rebound.headers["content-type"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
