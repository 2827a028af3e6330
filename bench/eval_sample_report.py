"""Write docs/sample-report.html and docs/sample-compare.md: what `eval` produces, from a stand-in classifier.

    PYTHONPATH=. python bench/eval_sample_report.py

The teen pack's own example sets (290 items, 0/1 "any violation" labels, each item's pack as its category) go
through `eval --route teen` against the keyword stand-in; then one policy is compared with an edited copy on
its own example set.
The stand-in is not a classifier: its numbers only show what the report looks like, never how good a policy is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from guardrail_proxy.cli import main
from guardrail_proxy.standins.safeguard import Rule, SafeguardBehaviour, build_safeguard_app
from guardrail_proxy.standins.server import ServerThread

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "teen_safety_policies"
# Keyword rules per policy (matched on its heading): crude on purpose, so the sample shows both kinds of mistake.
KEYWORDS = {
    "# Graphic violent content": (("knife", 2), ("blood", 2), ("gun", 2), ("fight", 1)),
    "# Harmful body ideals": (("starv", 3), ("skip", 2), ("weight", 1), ("diet", 1)),
    "# Age-restricted goods": (("vape", 2), ("beer", 2), ("fake id", 2), ("pills", 1)),
    "# Graphic sexual content": (("explicit", 3), ("nude", 3), ("kiss", 1)),
    "# Dangerous activities": (("challenge", 2), ("dare", 1)),
    "# Dangerous roleplay": (("pretend", 1), ("roleplay", 2)),
}
RULES = [Rule(word, level, policy=heading) for heading, words in KEYWORDS.items() for word, level in words]
EDIT = "Questions about skipping a meal before sport are allowed."


def combined_set(out: Path) -> Path:
    rows = []
    for examples in sorted(PACK.glob("*/examples.jsonl")):
        for line in examples.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            level = int(row["label"].lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
            rows.append({**row, "label": int(level > 0), "categories": [examples.parent.name]})
    path = out / "teen-pack.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def main_sample() -> None:
    behaviour = SafeguardBehaviour(rules=[Rule("skip", 0, policy=EDIT), *RULES])
    os.chdir(ROOT)  # relative paths in the reports
    with tempfile.TemporaryDirectory(dir=".", prefix="eval-sample-") as tmp, \
            ServerThread(build_safeguard_app(behaviour)) as server:
        work = Path(tmp).relative_to(Path.cwd()) if Path(tmp).is_absolute() else Path(tmp)
        dataset = combined_set(work)
        flags = ["--base-url", f"{server.url}/v1", "--cache-dir", str(work / "cache"), "--quiet"]
        main(["eval", "--route", "teen", "--config", "config/proxy.yaml", "--dataset", str(dataset),
              "--out", str(work / "route"), *flags])
        shutil.copy(work / "route" / "report.html", ROOT / "docs" / "sample-report.html")
        policy = Path("teen_safety_policies/harmful-body-ideals/policy.md")
        edited = work / "harmful-body-ideals-v2.md"
        edited.write_text(policy.read_text(encoding="utf-8") + f"\n{EDIT}\n", encoding="utf-8")
        main(["eval", "--compare", str(policy), str(edited), "--dataset", str(policy.parent / "examples.jsonl"),
              "--out", str(work / "cmp"), "--report-max", "5", *flags])
        shutil.copy(work / "cmp" / "report.md", ROOT / "docs" / "sample-compare.md")


if __name__ == "__main__":
    main_sample()
