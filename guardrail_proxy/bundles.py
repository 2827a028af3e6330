"""Several policies judged in one classifier call (a route's `combine_policies`, opt-in). Pure.

One call per text instead of one per policy: the classifier reads every policy of the phase and answers one
line per policy, `<policy id>: <that policy's own answer>`. It cuts calls by the number of policies and the
content's prompt tokens by as much, at some accuracy cost (SAFEGUARD.md: one policy per call is the most
accurate); `guardrail-proxy eval --combine` measures that cost on a labelled set before a route turns it on.

The bundle is sent as a `Policy` of format "bundle": its text is the combined prompt, byte-identical for the
same policies in the same order (so vLLM's prefix cache serves it), and its answer key covers every member's
digest, so an edit of any member misses the answer cache. The answer is read strictly (answers.parse_bundle):
exactly one line per member, in order, each with that member's own parser; anything else is a
ClassifierError for the whole call (never cached), and follows the route's fail mode like any failed check.
Nothing turns an odd answer into an allow.
"""

from __future__ import annotations

from collections.abc import Sequence

from .policies import Policy, digest_of


def bundle_prompt(policies: Sequence[Policy]) -> str:
    ids = ", ".join(p.id for p in policies)
    parts = [
        "# Several policies, one answer line each",
        "",
        "Judge the content in the user message against each policy below, on its own terms: content can be "
        "allowed by one policy and violate another. Each policy's own output format says what its answer is.",
        "",
        "## Output format",
        "Answer with exactly one line per policy, in this order, and nothing else:",
        "`<policy id>: <that policy's answer>`",
        f"Policies, in order: {ids}",
        "",
    ]
    for policy in policies:
        parts += [f"=== POLICY {policy.id} ===", policy.text.strip(), f"=== END POLICY {policy.id} ===", ""]
    parts += ["## Output format reminder",
              f"One line per policy, `<policy id>: <answer>`, in this order: {ids}. Nothing else."]
    return "\n".join(parts)


def bundle_policy(policies: Sequence[Policy]) -> Policy:
    text = bundle_prompt(policies)
    return Policy(
        id="+".join(p.id for p in policies), title="combined policies", format="bundle", label_prefix=None,
        labels={}, default_action=policies[0].default_action, refusal=None, safe_text=None, text=text,
        digest=digest_of("|".join(p.answer_key for p in policies) + "|" + digest_of(text)), source="(combined)",
        members=tuple(policies),
    )


class Bundles:
    """Combined prompts built once per set of policies (members in order, by answer key) and reused."""

    def __init__(self) -> None:
        self.built: dict[tuple[str, ...], Policy] = {}

    def __call__(self, members: tuple[Policy, ...]) -> Policy:
        key = tuple(m.answer_key for m in members)
        if key not in self.built:
            self.built[key] = bundle_policy(members)
        return self.built[key]
