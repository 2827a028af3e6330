"""`POST /v1/moderations`, OpenAI's moderation API answered with a route's own policies. Pure.

An app that calls OpenAI's moderation endpoint switches to the operator's policies by changing `base_url`.
Each input item (a string; a list of strings, one item each; or a list of content parts, one item together)
is judged by every policy the route applies to input. In the answer the categories are those policies:
`categories[policy]` says whether it found a violation, `category_scores[policy]` is the level found divided
by the policy's highest level (0 for allowed, 1 for the worst; a 0/1 policy gives 0 or 1), and `labels` adds
the codes the classifier answered. A media part cannot be read by the classifier: it is refused unless the
route allows unchecked media, as for chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import RouteConfig
from .decisions import CheckFailure, Decision, Verdict, worst
from .errors import RequestError
from .extract import text_of
from .policies import Policy
from .protocol import READABLE_PARTS
from .subjects import Subject, Turn

SHAPE = "input must be a string, a list of strings, or a list of content parts ({\"type\": \"text\", ...})"


@dataclass(frozen=True)
class ModerationInput:
    texts: tuple[str, ...]  # one per result
    media: tuple[str, ...]  # part types the classifier cannot read


def parse_moderation(body: dict[str, Any]) -> ModerationInput:
    """The items to judge; RequestError for any other shape."""
    value = body.get("input")
    if isinstance(value, str):
        return ModerationInput((value,), ())
    if not isinstance(value, list) or not value:
        raise RequestError(SHAPE, param="input")
    if all(isinstance(v, str) for v in value):
        return ModerationInput(tuple(value), ())
    if not all(isinstance(v, dict) and isinstance(v.get("type"), str) for v in value):
        raise RequestError(SHAPE, param="input")
    media = tuple(dict.fromkeys(v["type"] for v in value if v["type"] not in READABLE_PARTS))
    # Every part is read as a chat message's parts are: a media part's other fields are text too; only the
    # media payload itself is skipped (extract.py).
    text = "\n".join(t for v in value if (t := text_of(v, structure={"type"})))
    return ModerationInput((text,), media)


def moderation_subjects(texts: tuple[str, ...]) -> list[Subject]:
    """Each non-blank item as a user message of its own, numbered by its place."""
    return [Subject(Turn("user", text), index=i) for i, text in enumerate(texts) if text.strip()]


def input_policies(route: RouteConfig, policies: dict[str, Policy]) -> list[Policy]:
    return [policies[rule.id] for rule in route.policies if "input" in rule.phases]


def score(verdict: Verdict | None, policy: Policy) -> float:
    if verdict is None or not verdict.violation:
        return 0.0
    return round(min(1.0, verdict.severity / max(1, policy.max_level)), 4)


def moderation_result(decision: Decision, index: int, applied: list[Policy]) -> dict[str, Any]:
    mine = [o for o in decision.outcomes if o.subject == index]
    verdicts = [o for o in mine if isinstance(o, Verdict)]
    found = {p.id: v for p in applied if (v := worst(o for o in verdicts if o.policy_id == p.id))}
    unchecked = sorted({o.policy_id for o in mine if isinstance(o, CheckFailure)} - {
        pid for pid, v in found.items() if v.violation})
    categories = {p.id: bool(found.get(p.id) and found[p.id].violation) for p in applied}
    result: dict[str, Any] = {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": {p.id: score(found.get(p.id), p) for p in applied},
        "category_applied_input_types": {p.id: ["text"] for p in applied},
        "labels": {p.id: found[p.id].label for p in applied if p.id in found},
    }
    if unchecked:
        result["unchecked"] = unchecked  # fail-open: these policies could not run on this item
    return result


def moderation_body(request_id: str, model: str, texts: tuple[str, ...], decision: Decision,
                    applied: list[Policy]) -> dict[str, Any]:
    return {"id": f"modr-{request_id}", "model": model,
            "results": [moderation_result(decision, i, applied) for i in range(len(texts))]}
