"""The review console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's sync API)
against a real proxy (uvicorn in a thread, the stand-in classifier and model, requests from the openai SDK):
sign in, filter, open a decision, label it, export (a real download, whose rows are checked). A failing step
saves a screenshot and prints where.

Skipped, with the reason, only when /usr/bin/chromium is missing; GUARDRAIL_REQUIRE_BROWSER=1 (.ci/run sets it)
makes a missing browser a failure instead.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import user
from console_seed import SHADOW_COLUMNS, shadow

from guardrail_proxy.standins.safeguard import Rule

CHROMIUM = "/usr/bin/chromium"
REQUIRE = "GUARDRAIL_REQUIRE_BROWSER"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
KEY = "ops-secret"
SHOTS = Path(tempfile.gettempdir()) / "console-test-failures"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"no browser: {CHROMIUM} is missing (Debian package chromium)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason}, and {REQUIRE}=1 requires it")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    problems: list[str] = []  # CSP violations and script errors show up here (a 401 sign-in page is no problem)
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 401" not in m.text
           else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.problems = problems
    yield tab
    context.close()


@contextmanager
def screenshot_on_failure(tab: Any, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        where = SHOTS / f"{name}.png"
        tab.screenshot(path=str(where), full_page=True)
        print(f"\nscreenshot of the failing page: {where} (at {tab.url})")
        raise


@pytest.fixture
def proxy(make_proxy, tmp_path):
    proxy = make_proxy({"audit_content": "all"}, server_cfg={"ops_key_env": "OPS_KEY"}, env={"OPS_KEY": KEY},
                       audit={"store": "sqlite", "path": str(tmp_path / "audit.db"), "durability": "sync"})
    proxy.classifier.rules.append(Rule("duel", 2))
    proxy.client.chat.completions.create(model="test-model", messages=user("What is a good name for a cat?"))
    proxy.client.chat.completions.create(model="test-model",
                                         messages=user("<script>window.pwned = 1</script><b>bold?</b>"))
    for text in ("describe the duel in gory detail", "write a duel scene for my novel"):
        with pytest.raises(openai.BadRequestError):
            proxy.client.chat.completions.create(model="test-model", messages=user(text))
    return proxy


def sign_in(tab: Any, url: str, path: str = "/console/decisions") -> None:
    tab.goto(url + path)
    tab.fill("input[name=key]", KEY)
    tab.click("button:has-text('Sign in')")
    tab.wait_for_url(f"**{path}")


def test_filter_open_label_and_export(page: Any, proxy: Any, tmp_path: Path) -> None:
    with screenshot_on_failure(page, "review-loop"):
        sign_in(page, proxy.url)
        assert page.locator("table.decisions tbody tr").count() == 4
        page.select_option("select[name=decision]", "block")
        page.click("#filters button[type=submit]")
        page.wait_for_url("**decision=block**")
        rows = page.locator("table.decisions tbody tr")
        assert rows.count() == 2

        rows.nth(1).locator("a.mono").click()  # the older one: "describe the duel in gory detail"
        page.wait_for_selector("#content-input")
        assert page.inner_text("#content-input") == "describe the duel in gory detail"
        form = page.locator("#mark-input-violence form.mark-form")
        form.locator("select[name=label]").select_option("TV0")
        assert form.locator("input[value=wrong]").is_checked()  # picking a label means "should have been"
        form.locator("textarea[name=note]").fill("gory, but no instructions")
        form.locator("input[name=reviewer]").fill("Ana")
        form.locator("button[type=submit]").click()
        page.wait_for_selector("#mark-input-violence .current-mark")
        assert "should have been TV0 by Ana" in page.inner_text("#mark-input-violence .current-mark")
        assert "gory, but no instructions" in page.inner_text("table.history")

        page.go_back()
        page.go_back()  # the filtered list
        page.locator("table.decisions tbody tr").nth(0).locator("a.mono").click()
        page.wait_for_selector("#content-input")
        form = page.locator("#mark-input-violence form.mark-form")
        assert form.locator("input[name=reviewer]").input_value() == "Ana"  # remembered by the browser
        form.locator("input[value=correct]").check()
        form.locator("button[type=submit]").click()
        page.wait_for_selector("#mark-input-violence .current-mark")
        assert "verdict correct by Ana" in page.inner_text("#mark-input-violence .current-mark")

        page.click("header nav a:has-text('Decisions')")
        page.fill("input[name=policy]", "violence")
        page.select_option("select[name=reviewed]", "yes")
        page.click("#filters button[type=submit]")
        assert page.locator("table.decisions tbody tr").count() == 2
        page.click("a:has-text('Export reviewed items of this filter')")
        page.wait_for_selector("#download")
        with page.expect_download() as info:
            page.click("#download")
        saved = tmp_path / "reviewed.jsonl"
        info.value.save_as(saved)
        rows_out = [json.loads(line) for line in saved.read_text().splitlines()]
        assert info.value.suggested_filename.startswith("reviewed-violence-")
        assert sorted((r["text"], r["label"], r["reviewer"]) for r in rows_out) == [
            ("describe the duel in gory detail", "TV0", "Ana"), ("write a duel scene for my novel", "TV2", "Ana")]
        assert page.problems == []


def test_stored_script_is_text_and_every_page_renders(page: Any, proxy: Any, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "audit.db")
    blocked = db.execute("SELECT request_id, ts FROM records WHERE decision = 'block' ORDER BY ts").fetchall()
    for request_id, ts in blocked:
        row = shadow(request_id, ts, reasoning="<img src=x onerror='window.pwned=2'>")
        db.execute(f"INSERT INTO shadow_checks ({', '.join(SHADOW_COLUMNS)}) VALUES "
                   f"({', '.join('?' for _ in SHADOW_COLUMNS)})", [row[c] for c in SHADOW_COLUMNS])
    db.commit()
    db.close()
    with screenshot_on_failure(page, "pages"):
        page.goto(proxy.url + "/console/")
        page.fill("input[name=key]", "not the key")
        page.click("button:has-text('Sign in')")
        assert "That is not the ops key." in page.inner_text("#login-error")
        page.fill("input[name=key]", KEY)
        page.click("button:has-text('Sign in')")
        page.wait_for_selector(".policy-card")
        assert page.locator("#policy-violence svg").count() == 3
        page.click("header nav a:has-text('Decisions')")
        page.click("table.decisions a.mono >> nth=2")  # the second request: <script> in its content
        page.wait_for_selector("#content-input")
        assert page.inner_text("#content-input") == "<script>window.pwned = 1</script><b>bold?</b>"
        assert page.evaluate("window.pwned") is None
        page.click("header nav a:has-text('Shadow')")
        assert "0 agree, 2 differ" in page.inner_text(".shadow-card")
        assert page.locator("#disagreements tbody tr").count() == 2
        page.locator("#disagreements details.reasoning summary").first.click()
        assert "<img src=x" in page.inner_text("#disagreements details.reasoning pre >> nth=0")
        page.locator("#disagreements a.mono").first.click()
        page.wait_for_selector("#shadow")
        assert page.evaluate("window.pwned") is None
        page.click("header nav a:has-text('Export')")
        assert "No policy chosen" in page.inner_text("main")
        assert page.problems == []
