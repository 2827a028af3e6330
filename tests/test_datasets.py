"""Dataset reading: JSONL, CSV with column mapping, the official pack's CSV; every bad row names its line."""

from __future__ import annotations

import gzip
import json
import textwrap
from pathlib import Path

import pytest
from conftest import VIOLENCE_POLICY

from guardrail_proxy.dataset_rows import (
    Columns,
    Example,
    Label,
    LabelRule,
    RowError,
    parse_label,
    parse_label_map,
)
from guardrail_proxy.datasets import ReadOptions, load_dataset, read_dataset
from guardrail_proxy.errors import ConfigError
from guardrail_proxy.official_csv import read_official_csv
from guardrail_proxy.policies import load_policy_file, parse_policy
from guardrail_proxy.subjects import Turn

PACK = Path(__file__).resolve().parent.parent / "teen_safety_policies"
TV = parse_policy(textwrap.dedent(VIOLENCE_POLICY), "violence.md")

OFFICIAL_CSV = (
    'Synthetic prompts for dangerous roleplay, written for testing, with a "quoted" word, and commas.\n'
    "example,classification,Responses,Response Label\n"
    '"Pretend you are my\n'
    'boyfriend",DR2,"Sure, I\'ll be your\n'
    'boyfriend, ""babe""",DR2\n'
    "Let's play a dungeon game,DR0,,\n"
    ",,,\n"
    '"Multi\n'
    "line\n"
    'prompt",DR1,ok,DR0\n'
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*rows: object) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


@pytest.mark.parametrize(("raw", "expected"), [
    (0, Label("0", False, None)),
    (1, Label("1", True, None)),
    (True, Label("1", True, None)),
    (False, Label("0", False, None)),
    ("0", Label("0", False, None)),
    (" 1 ", Label("1", True, None)),
    ("true", Label("1", True, None)),
    ("False", Label("0", False, None)),
    ("DR0", Label("DR0", False, 0)),
    ("DR2", Label("DR2", True, 2)),
    ("HBI3", Label("HBI3", True, 3)),
])
def test_parse_label_accepts_binary_and_codes(raw, expected):
    assert parse_label(raw) == expected


@pytest.mark.parametrize("raw", [2, -1, 0.5, None, "", "yes", "dr2", "DR", "2DR", "DR-1", [1]])
def test_parse_label_rejects_anything_else(raw):
    with pytest.raises(RowError, match="label"):
        parse_label(raw)


@pytest.mark.parametrize(("raw", "reason"), [
    ("GV2", "does not belong to policy 'violence'"),
    ("TV7", "not one of policy 'violence' codes"),
])
def test_label_codes_must_be_the_policys(raw, reason):
    with pytest.raises(RowError, match=reason):
        parse_label(raw, TV)
    assert parse_label("TV2", TV) == Label("TV2", True, 2)


def test_jsonl_fields_defaults_and_ignored_fields(tmp_path):
    path = write(tmp_path, "set.jsonl", jsonl(
        {"id": "a", "text": "hello", "label": "TV0", "note": "ignored", "hard_negative": True},
        "",
        {"text": "a reply", "label": 1, "role": "assistant", "context": "the question",  # the teen pack's fields
         "hard_positive": True, "framing": "for_a_friend", "refusal": False},
        {"id": 7, "text": "x", "label": False},
    ))
    assert load_dataset(path) == [
        Example("a", "hello", "TV0", False, 0, "user", (), 1),
        Example("line-3", "a reply", "1", True, None, "assistant", (Turn("user", "the question"),), 3),
        Example("7", "x", "0", False, None, "user", (), 4),
    ]


@pytest.mark.parametrize("slug", sorted(p.name for p in PACK.iterdir() if (p / "examples.jsonl").exists()))
def test_our_packs_example_sets_load_with_their_policy(slug):
    policy = load_policy_file(PACK / slug / "policy.md")
    examples = load_dataset(PACK / slug / "examples.jsonl", policy=policy)
    assert examples and all(e.label in policy.labels for e in examples)
    assert len({e.id for e in examples}) == len(examples)


def test_official_csv_note_line_multiline_cells_and_response_items(tmp_path):
    path = write(tmp_path, "dangerous-roleplay.csv", OFFICIAL_CSV)
    examples = load_dataset(path)
    assert examples == read_official_csv(path)
    assert [(e.id, e.role, e.label, e.violation, e.source_line) for e in examples] == [
        ("line-3", "user", "DR2", True, 3),
        ("line-3-response", "assistant", "DR2", True, 3),
        ("line-6", "user", "DR0", False, 6),
        ("line-8", "user", "DR1", True, 8),
        ("line-8-response", "assistant", "DR0", False, 8),
    ]
    assert examples[0].text == "Pretend you are my\nboyfriend"
    assert examples[1].text == 'Sure, I\'ll be your\nboyfriend, "babe"'
    assert examples[1].context == (Turn("user", "Pretend you are my\nboyfriend"),)
    assert examples[3].text == "Multi\nline\nprompt"


def test_official_csv_with_a_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(("\ufeff" + OFFICIAL_CSV.replace("\n", "\r\n")).encode("utf-8"))
    examples = load_dataset(path)
    assert [e.source_line for e in examples] == [3, 3, 6, 8, 8]
    # Universal newlines: the same text (and cache key) whichever OS wrote the file.
    assert examples[0].text == "Pretend you are my\nboyfriend"


def test_read_official_csv_rejects_another_layout(tmp_path):
    path = write(tmp_path, "plain.csv", "text,label\nhi,0\n")
    with pytest.raises(ConfigError, match=r"plain\.csv: line 2: expected an official header"):
        read_official_csv(path)


def test_csv_column_mapping(tmp_path):
    path = write(tmp_path, "mapped.csv", 'key,prompt,gold,role\nk1,"hello, there",0,user\nk2,"a\nb",TV2,assistant\n')
    options = ReadOptions(Columns(text="prompt", label="gold", id="key"))
    examples = load_dataset(path, options=options, policy=TV)
    assert examples == [
        Example("k1", "hello, there", "0", False, None, "user", (), 2),
        Example("k2", "a\nb", "TV2", True, 2, "assistant", (), 3),
    ]
    default_names = write(tmp_path, "plain.csv", "text,label\nhi,1\n")
    assert load_dataset(default_names)[0] == Example("line-2", "hi", "1", True, None, "user", (), 2)


@pytest.mark.parametrize(("name", "text", "where", "reason"), [
    ("a.jsonl", jsonl({"text": "a", "label": 0}, "{not json"), "line 2", "not valid JSON"),
    ("a.jsonl", jsonl({"text": "a", "label": 0}, "[1]"), "line 2", "expected a JSON object"),
    ("a.jsonl", jsonl({"text": "a", "label": 0}, "", {"text": "b"}), "line 3", "missing 'label'"),
    ("a.jsonl", jsonl({"text": "a", "label": "maybe"}), "line 1", "label must be"),
    ("a.jsonl", jsonl({"text": "  ", "label": 0}), "line 1", "'text' must be a non-empty string"),
    ("a.jsonl", jsonl({"text": "a", "label": 0, "role": "system"}), "line 1", "role must be one of"),
    ("a.jsonl", jsonl({"text": "a", "label": 0, "context": 5}), "line 1", "'context' must be a string"),
    ("a.jsonl", jsonl({"id": "x", "text": "a", "label": 0}, {"id": "x", "text": "b", "label": 1}), "line 2",
     "id 'x' is also on line 1"),
    ("a.jsonl", jsonl({"text": "a", "label": "DR0"}, {"text": "b", "label": "GV2"}), "line 2",
     "mixes prefix GV with DR"),
    ("a.csv", "text,label\nhi,0\nthere,1,extra\n", "line 3", "3 cells but the header has 2"),
    ("a.csv", "text,label\nhi,0\n\n\"multi\nline\",nope\n", "line 4", "label must be"),
    ("a.csv", OFFICIAL_CSV + ",DR1,,\n", "line 11", "'text' must be a non-empty string"),
])
def test_bad_rows_name_file_and_line(tmp_path, name, text, where, reason):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_dataset(path)
    assert info.value.file == str(path) and info.value.field == where
    assert reason in info.value.reason


def test_wrong_prefix_for_the_policy_names_the_line(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"text": "a", "label": "TV0"}, {"text": "b", "label": "GV2"}))
    with pytest.raises(ConfigError, match=r"a\.jsonl: line 2: label GV2 does not belong to policy 'violence'"):
        load_dataset(path, policy=TV)


@pytest.mark.parametrize(("name", "text", "kwargs", "reason"), [
    ("a.jsonl", "\n\n", {}, "the dataset has no examples"),
    ("a.csv", "text,label\n", {}, "the dataset has no examples"),
    ("a.txt", "hi\n", {}, "unknown dataset format"),
    ("a.csv", "prompt,label\nhi,0\n", {}, "no column 'text'"),
    ("a.csv", "text,gold\nhi,0\n", {"options": ReadOptions(Columns(label="label"))}, "no column 'label'"),
    ("a.json", '{"text": "a"}', {}, "expected a JSON array"),
    ("a.json", "[{", {}, "not valid JSON"),
])
def test_whole_file_errors(tmp_path, name, text, kwargs, reason):
    with pytest.raises(ConfigError, match=reason):
        load_dataset(write(tmp_path, name, text), **kwargs)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read dataset"):
        load_dataset(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("row", ["a prompt with no label,,,", "prompt,DR0,a reply,"])
def test_official_rows_without_a_usable_label_are_left_out_with_a_warning(tmp_path, row):
    path = write(tmp_path, "a.csv", OFFICIAL_CSV + row + "\n")
    warnings: list[str] = []
    examples = load_dataset(path, warnings=warnings)
    assert [w.split(": ")[1] for w in warnings] == ["line 11"] and warnings[0].startswith(str(path))
    assert all(e.source_line != 11 or e.label.startswith("DR") for e in examples)


# --- adapters: gzip, JSON arrays, chat-turn context, lines split on \n only ------------------------------

def test_jsonl_lines_split_on_newline_only(tmp_path):
    text = "tab\u0085next line\u2028and a separator"
    path = write(tmp_path, "a.jsonl", json.dumps({"id": "x", "text": text, "label": 1}, ensure_ascii=False) + "\n")
    [example] = load_dataset(path)
    assert example.text == text


def test_a_gzipped_file_reads_as_its_inner_layout(tmp_path):
    rows = "".join(json.dumps({"id": i, "text": f"item {i}", "label": i % 2}) + "\n" for i in range(3))
    path = tmp_path / "set.jsonl.gz"
    path.write_bytes(gzip.compress(rows.encode()))
    assert [e.text for e in load_dataset(path)] == ["item 0", "item 1", "item 2"]
    broken = tmp_path / "bad.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match="cannot read dataset"):
        load_dataset(broken)


def test_a_json_array_file(tmp_path):
    path = write(tmp_path, "set.json", json.dumps([{"text": "a", "label": 0}, {"text": "b", "label": "1"}]))
    examples = load_dataset(path)
    assert [(e.text, e.violation, e.source_line) for e in examples] == [("a", False, 1), ("b", True, 2)]
    with pytest.raises(ConfigError, match="line 2: item 2 is not a JSON object"):
        load_dataset(write(tmp_path, "bad.json", json.dumps([{"text": "a", "label": 0}, "b"])))


def test_context_as_a_list_of_chat_turns(tmp_path):
    row = {"text": "sure, here is how", "label": 1, "role": "assistant",
           "context": [{"role": "user", "content": "how do I do it?"}, {"role": "assistant", "content": "why?"},
                       {"role": "user", "content": "just tell me"}]}
    [example] = load_dataset(write(tmp_path, "a.jsonl", json.dumps(row) + "\n"))
    assert example.context == (Turn("user", "how do I do it?"), Turn("assistant", "why?"), Turn("user", "just tell me"))
    bad = {**row, "context": [{"role": "user"}]}
    with pytest.raises(ConfigError, match="chat turns"):
        load_dataset(write(tmp_path, "b.jsonl", json.dumps(bad) + "\n"))


# --- label words and constant labels ---------------------------------------------------------------------

def test_a_label_map_turns_a_sets_words_into_labels(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\nhi,SAFE\nawful,unsafe\n")
    examples = load_dataset(path, options=ReadOptions(labels=LabelRule(mapping=parse_label_map("safe=0,unsafe=1"))))
    assert [(e.text, e.violation) for e in examples] == [("hi", False), ("awful", True)]
    with pytest.raises(ConfigError, match="line 3: label 'unsure' is not in the label map"):
        load_dataset(write(tmp_path, "b.csv", "text,label\nhi,safe\nhm,unsure\n"),
                     options=ReadOptions(labels=LabelRule(mapping=parse_label_map("safe=0,unsafe=1"))))


def test_a_constant_label_needs_no_label_column(tmp_path):
    path = write(tmp_path, "a.csv", "text\nsomething harmful\nsomething worse\n")
    examples = load_dataset(path, options=ReadOptions(labels=LabelRule(constant="1")))
    assert [e.violation for e in examples] == [True, True]
    jsonl = write(tmp_path, "b.jsonl", json.dumps({"text": "x", "label": 0}) + "\n")
    assert load_dataset(jsonl, options=ReadOptions(labels=LabelRule(constant="1")))[0].violation is True


@pytest.mark.parametrize("text", ["safe", "safe=", "=0", "safe=0,,unsafe=1"])
def test_a_malformed_label_map_says_how_to_write_it(text):
    with pytest.raises(ValueError, match="word=label pairs"):
        parse_label_map(text)


# --- reading a whole set: every bad row at once -------------------------------------------------------

def test_every_bad_row_is_reported_and_the_good_ones_kept(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl(
        {"id": "x", "text": "fine", "label": 0}, "{broken", {"text": "b", "label": "maybe"},
        {"id": "x", "text": "twin", "label": 1}, {"text": "also fine", "label": 1}))
    read = read_dataset(path)
    assert [e.text for e in read.examples] == ["fine", "also fine"]
    assert [(p.line, p.reason.split(" (")[0]) for p in read.problems] == [
        (2, "not valid JSON"), (3, "label must be 0, 1, true, false or a label code such as DR2; got 'maybe'"),
        (4, "id 'x' is also on line 1")]
    assert str(read.problems[0]).startswith(f"{path}: line 2: not valid JSON")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"categories": "violence; weapons,violence"}, ("violence", "weapons")),
    ({"categories": ["self-harm", " ", "eating"]}, ("self-harm", "eating")),
    ({}, ()),
])
def test_categories_as_a_list_or_a_separated_string(tmp_path, fields, expected):
    [example] = load_dataset(write(tmp_path, "a.jsonl", jsonl({"text": "t", "label": 1, **fields})))
    assert example.categories == expected


def test_jsonl_field_mapping_for_a_public_sets_shape(tmp_path):
    row = {"uid": "q-1", "prompt": "how do I?", "harmful": "unsafe", "speaker": "Assistant",
           "history": [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "hello"}],
           "harm_category": "weapons", "dataset": "public-set"}
    options = ReadOptions(Columns(text="prompt", label="harmful", id="uid", role="speaker", context="history",
                                  categories="harm_category", source="dataset"),
                          LabelRule(mapping=parse_label_map("safe=0,unsafe=1")))
    [example] = load_dataset(write(tmp_path, "a.jsonl.gz.jsonl", jsonl(row)), options=options)
    assert (example.id, example.violation, example.role, example.categories, example.source) == (
        "q-1", True, "assistant", ("weapons",), "public-set")
    assert example.context == (Turn("user", "hi"), Turn("assistant", "hello"))


def test_csv_role_and_context_columns_with_a_json_turn_list(tmp_path):
    context = json.dumps([{"role": "user", "content": "a, b"}]).replace('"', '""')
    path = write(tmp_path, "a.csv", f'text,label,role,context\nreply,1,assistant,"{context}"\nq,0,user,plain words\n')
    first, second = load_dataset(path)
    assert first.context == (Turn("user", "a, b"),) and first.role == "assistant"
    assert second.context == (Turn("user", "plain words"),)
