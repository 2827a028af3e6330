"""`guardrail-proxy demo` works on a bare machine and shows an allow, an annotation and a block."""

from __future__ import annotations

from guardrail_proxy.cli import main


def test_demo_shows_the_three_outcomes(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "STAND-IN" in out
    assert "--- allowed ---\n" in out and "finish_reason='stop'" in out
    assert "x-guardrail-decision: annotate" in out
    assert "HTTP 400 openai.BadRequestError: code='content_policy_violation'" in out
    assert "decision='block'" in out and "reasoning:" in out
