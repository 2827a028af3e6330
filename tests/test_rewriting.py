from __future__ import annotations

import pytest

from guardrail_proxy.config import Action
from guardrail_proxy.decisions import Decision, Outcome, Triggered, Verdict
from guardrail_proxy.protocol import ChatRequest
from guardrail_proxy.rewriting import rewrite_input


def decision(*subjects: int, action: Action = Action.REWRITE) -> Decision:
    triggered = tuple(Triggered(Verdict("p", "d", "input", True, 2, "X2", subject=s), action, "no", "safe")
                      for s in subjects)
    return Decision("input", Outcome.REWRITE, triggered=triggered)


CHAT = ChatRequest.model_validate({"model": "m", "temperature": 0.1, "messages": [
    {"role": "system", "content": "s"}, {"role": "user", "content": "bad"}, {"role": "user", "content": "ok"}]})


@pytest.mark.parametrize(("mode", "subjects", "expected"), [
    ("replace", (1,), ["s", "safe", "ok"]),
    ("drop", (1,), ["s", "ok"]),
    ("replace", (1, 2), ["s", "safe", "safe"]),
    ("drop", (0, 1, 2), ["safe", "safe", "safe"]),
])
def test_rewrite(mode, subjects, expected):
    out = rewrite_input(CHAT, decision(*subjects), mode)
    assert [m.content for m in out.messages] == expected
    assert out.forwarded("up")["temperature"] == 0.1


def test_annotate_triggers_do_not_rewrite():
    assert rewrite_input(CHAT, decision(1, action=Action.ANNOTATE), "replace") is CHAT
