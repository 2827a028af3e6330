"""Fail in a second, not after a whole set, when the endpoint is not the classifier the user meant.

`eval` first pings the endpoint (refused connection, wrong host), then classifies its first item for real
(the answer is cached and used). That answer tells the rest: a 404 names a model the endpoint does not
serve; an answer with no reasoning comes from a model that does not reason (a plain chat model) or from a
server that drops the reasoning (vLLM without its gpt-oss reasoning parser), and every verdict of such a
run would be noise. `--no-reasoning-ok` accepts such an endpoint knowingly.
"""

from __future__ import annotations

import re

from ..classifier import Classification
from ..errors import ClassifierError

STATUS = re.compile(r"HTTP (\d{3})")
# Statuses that describe the endpoint, not the item: a wrong key or a model it does not serve. A 5xx may be
# one item's failure (vLLM answers 500 when its harmony parser fails on one answer), so it is scored instead.
ENDPOINT_STATUSES = frozenset({"401", "403", "404"})


def preflight_problem(result: Classification | ClassifierError, model: str, base_url: str,
                      reasoning_required: bool = True) -> str | None:
    """Pure: why the run should stop before it starts, or None."""
    if isinstance(result, ClassifierError):
        status = match.group(1) if (match := STATUS.search(result.message)) else None
        if result.kind == "http" and status == "404":
            return f"the endpoint {base_url} does not serve model '{model}' ({result.message})"
        if result.kind in ("transport", "timeout", "malformed") or status in ENDPOINT_STATUSES:
            return f"the first classification failed: {result.message} ({base_url})"
        return None  # a 5xx, rejected, unparseable, overload: a fact about one item, scored as an error
    if reasoning_required and not result.reasoning:
        return (f"'{model}' at {base_url} answered without reasoning: it is not a reasoning model, or the server "
                "drops the reasoning (serve gpt-oss-safeguard with its reasoning parser); pass --no-reasoning-ok "
                "to evaluate it anyway")
    return None
