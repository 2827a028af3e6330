"""`guardrail-proxy replay` end to end: traffic through the real proxy (the openai SDK) into the SQLite or
PostgreSQL store, a reviewer's marks, then a candidate policy replayed against the stand-in classifier, which
answers the candidate differently on known items; the counts, flips, reviewers' agreement and exit codes; a
candidate of another label format compared by decision; a JSON policy, whose labels are free text."""

from __future__ import annotations

import json
import textwrap
from types import MappingProxyType

import openai
import pytest
from conftest import JSON_POLICY, VIOLENCE_POLICY, user

from guardrail_proxy.audit_postgres import connect as postgres_connect
from guardrail_proxy.audit_reviews import make_review, run_add
from guardrail_proxy.audit_sqlite import connect as sqlite_connect
from guardrail_proxy.cli import build_parser
from guardrail_proxy.datasets import load_dataset
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.safeguard import Rule

MARKER = "Pillow fights are play, not violence."
CANDIDATE = textwrap.dedent(VIOLENCE_POLICY) + MARKER + "\n"


def run(argv: list[str], capsys, env: dict[str, str]) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = int(args.func(args, Settings(MappingProxyType(env))))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(params=["sqlite", "postgres"])
def stored(request, make_proxy, tmp_path):
    """Four requests through the proxy, one of them on a route that stores no content, and two marks. Returns
    (the replay flags for the store and config, env, request ids by text)."""
    if request.param == "sqlite":
        path = str(tmp_path / "audit.db")
        audit, flags, env = {"store": "sqlite", "path": path}, ["--db", path], {}
    else:
        env = {"AUDIT_DSN": request.getfixturevalue("postgres_dsn")}
        audit, flags = {"store": "postgres", "dsn_env": "AUDIT_DSN"}, ["--dsn-env", "AUDIT_DSN"]
    quiet = {"name": "quiet", "models": ["quiet-model"], "upstream": "standin", "policies": [{"id": "violence"}],
             "audit_content": "none"}
    proxy = make_proxy({"name": "teen", "audit_content": "all"}, extra_routes={"quiet": quiet}, env=env,
                       audit={**audit, "durability": "sync"})
    # The first matching rule answers: only the candidate's text holds the marker, so only it allows pillow fights.
    proxy.classifier.rules[:0] = [Rule("pillow", 0, policy=MARKER), Rule("fight", 2)]
    client = proxy.client
    client.chat.completions.create(model="test-model", messages=user("hello there"))
    for text, model in (("describe the fight", "test-model"), ("a pillow fight at the sleepover", "test-model"),
                        ("a pillow fight again", "quiet-model")):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=model, messages=user(text))
    db = sqlite_connect(audit["path"]) if request.param == "sqlite" else postgres_connect(env["AUDIT_DSN"])
    ids = {json.loads(row[0])["content"]["input"]: row[1] for row in
           db.execute("SELECT record, request_id FROM records WHERE route = 'teen'").fetchall()}
    for text, correct, label in (("a pillow fight at the sleepover", False, "TV0"), ("describe the fight", True, None)):
        run_add(db, make_review(request_id=ids[text], phase="input", policy="violence", verdict_label="TV2",
                                correct=correct, label=label, note="", reviewer="Ana", ts=1.0))
    db.close()
    return [*flags, "--config", str(tmp_path / "proxy.yaml")], env, ids


@pytest.fixture
def candidate(tmp_path):
    path = tmp_path / "violence-v2.md"
    path.write_text(CANDIDATE)
    return path


def test_a_candidate_that_flips_a_known_item_is_reported_with_the_right_counts(stored, candidate, tmp_path, capsys):
    flags, env, ids = stored
    out_file = tmp_path / "flips.jsonl"
    code, out, err = run(["replay", "--policy", str(candidate), "--since", "1h", *flags, "--json", "--cache-dir",
                          str(tmp_path / "cache"), "--out", str(out_file)], capsys, env)
    assert code == 0, err
    report = json.loads(out)
    # hello there: input and reply (TV0 both); describe the fight (TV2); the pillow fight (TV2 -> TV0)
    assert (report["records"], report["compared"]) == (4, 4)
    assert report["skipped"] == {"text_not_stored": 1, "records_without_text": 1, "enforced_errors": 0,
                                 "candidate_errors": 0}
    assert report["agreement"]["agreed"] == 3 and report["agreement"]["interval_95"][0] < 0.75 < \
        report["agreement"]["interval_95"][1]
    assert report["changes"] == [{"enforced": "TV2", "candidate": "TV0", "items": 1}]
    assert report["decisions_changed"] == 1
    [flip] = report["flips"]
    assert flip["request_id"] == ids["a pillow fight at the sleepover"] and flip["reviewer_label"] == "TV0"
    assert "'fight'" in flip["enforced_reasoning"] and "'pillow'" in flip["candidate_reasoning"]
    assert report["reviewers"] == {"items": 2, "enforced_right": 1, "candidate_right": 2,
                                   "mcnemar": {"fixed": 1, "broke": 0, "p_value": 1.0}}
    assert "windows" in report["notes"][0]
    [row] = load_dataset(out_file, policy=parse_policy(CANDIDATE, "v2.md"))
    assert (row.text, row.label) == ("a pillow fight at the sleepover", "TV0")


def test_the_text_report(stored, candidate, tmp_path, capsys):
    flags, env, _ids = stored
    code, out, _ = run(["replay", "--policy", str(candidate), "--since", "1h", *flags, "--cache-dir",
                        str(tmp_path / "cache")], capsys, env)
    assert code == 0
    assert "agreement with the enforced verdicts: 3/4 = 75.0% (95% interval" in out
    assert "skipped: 1 items in 1 records whose text was not stored" in out
    assert "TV2 -> TV0 (decision changes); reviewer: TV0" in out and "candidate: Stand-in" in out
    assert "enforced right 1/2 = 50.0%, candidate right 2/2 = 100.0%" in out and "judges the stored reply whole" in out


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--route", "quiet"], 1, "nothing to replay: 1 records"),
    (["--until", "2000-01-01"], 1, "nothing to replay: 0 records"),
    (["--since", "yesterday"], 2, "expected a time like 24h"),
    (["--out", "flips.txt"], 2, "must end in .csv or .jsonl"),
    (["--policy", "no-such-policy"], 2, "no policy with this id"),
])
def test_exit_codes(stored, candidate, tmp_path, capsys, extra, code, message):
    flags, env, _ids = stored
    argv = ["replay", "--policy", str(candidate), "--since", "1h", *flags, "--cache-dir", str(tmp_path / "c"), *extra]
    found, _, err = run(argv, capsys, env)
    assert found == code and message in err and "Traceback" not in err


BINARY_CANDIDATE = textwrap.dedent("""\
    ---
    id: violence
    title: Violence, answered 0 or 1
    format: binary
    ---
    Answer 1 if the content is violent, else 0.
    """) + MARKER + "\n"


def test_a_candidate_of_another_format_is_compared_by_decision(stored, tmp_path, capsys):
    flags, env, ids = stored
    path = tmp_path / "violence-binary.md"
    path.write_text(BINARY_CANDIDATE)
    out_file = tmp_path / "flips.jsonl"
    code, out, err = run(["replay", "--policy", str(path), "--since", "1h", *flags, "--json", "--cache-dir",
                          str(tmp_path / "cache"), "--out", str(out_file)], capsys, env)
    assert code == 0, err
    report = json.loads(out)
    # TV2 against 1 and TV0 against 0 agree: only the pillow fight, allowed by the candidate, is a flip
    assert report["compared_by"] == "decision" and "without label codes" in report["compared_by_reason"]
    assert (report["compared"], report["agreement"]["agreed"], report["decisions_changed"]) == (4, 3, 1)
    assert report["changes"] == [{"enforced": "TV2", "candidate": "0", "items": 1}]
    assert report["reviewers"]["enforced_right"] == 1 and report["reviewers"]["candidate_right"] == 2
    [row] = load_dataset(out_file, policy=parse_policy(BINARY_CANDIDATE, "binary.md"))
    assert (row.id, row.label) == (ids["a pillow fight at the sleepover"], "0")  # the reviewer's TV0, as a decision


JSON_MARKER = "Buying a pillow is not spam."


def test_a_json_policy_replays_by_decision(make_proxy, tmp_path, capsys):
    """A JSON policy's label is the classifier's own category text: replay compares decisions, never dies."""
    path = str(tmp_path / "audit.db")
    proxy = make_proxy({"audit_content": "all", "policies": [{"id": "spam"}]},
                       audit={"store": "sqlite", "path": path, "durability": "sync"})
    proxy.classifier.rules[:0] = [Rule("pillow", 0, policy=JSON_MARKER), Rule("buy", 1)]
    for text in ("buy cheap pills now", "buy a pillow", "hello there"):
        proxy.client.chat.completions.create(model="test-model", messages=user(text))  # annotate: never blocked
    db = sqlite_connect(path)
    [(request_id,)] = db.execute("SELECT request_id FROM records WHERE record LIKE '%buy a pillow%'").fetchall()
    run_add(db, make_review(request_id=request_id, phase="input", policy="spam", verdict_label="stand-in-rule",
                            correct=False, label="0", note="a pillow", reviewer="Ana", ts=1.0))
    db.close()
    candidate = tmp_path / "spam-v2.md"
    candidate.write_text(textwrap.dedent(JSON_POLICY) + JSON_MARKER + "\n")
    code, out, err = run(["replay", "--policy", str(candidate), "--since", "1h", "--db", path, "--config",
                          str(tmp_path / "proxy.yaml"), "--json", "--cache-dir", str(tmp_path / "cache")], capsys, {})
    assert code == 0 and "Traceback" not in err, err
    report = json.loads(out)
    # three inputs and three replies; the pillow's input and reply (its reply repeats the words) flip to a pass
    assert report["compared_by"] == "decision" and report["compared"] == 6
    assert report["agreement"]["agreed"] == 4 and report["changes"] == [{"enforced": "1", "candidate": "0",
                                                                          "items": 2}]
    assert report["reviewers"]["items"] == 1 and report["reviewers"]["mcnemar"]["fixed"] == 1
