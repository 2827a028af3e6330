"""Fail in a second, not after a whole set, when the endpoint is not the classifier the user meant.

`eval` first pings the endpoint (refused connection, wrong host), then classifies its first item for real
(the answer is cached and used). That answer tells the rest: a 404 names a model the endpoint does not
serve; an answer with no reasoning comes from a model that does not reason (a plain chat model) or from a
server that drops the reasoning (vLLM without its gpt-oss reasoning parser), and every verdict of such a
run would be noise. `--no-reasoning-ok` accepts such an endpoint knowingly.
"""

from __future__ import annotations

from ..classifier import Classification
from ..errors import ClassifierError


def preflight_problem(result: Classification | ClassifierError, model: str, base_url: str,
                      reasoning_required: bool = True) -> str | None:
    """Pure: why the run should stop before it starts, or None."""
    if isinstance(result, ClassifierError):
        if result.kind == "http" and "HTTP 404" in result.message:
            return f"the endpoint {base_url} does not serve model '{model}' ({result.message})"
        if result.kind in ("transport", "timeout", "http", "malformed"):
            return f"the first classification failed: {result.message} ({base_url})"
        return None  # rejected, unparseable, overload: a fact about one item, scored as an error
    if reasoning_required and not result.reasoning:
        return (f"'{model}' at {base_url} answered without reasoning: it is not a reasoning model, or the server "
                "drops the reasoning (serve gpt-oss-safeguard with its reasoning parser); pass --no-reasoning-ok "
                "to evaluate it anyway")
    return None
