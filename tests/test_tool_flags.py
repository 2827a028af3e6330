"""`guarded`: each expected failure of a command becomes one line on stderr and its exit code, never a
traceback."""

from __future__ import annotations

import pytest

from guardrail_proxy.dataset_rows import RowError, parse_label
from guardrail_proxy.errors import ClassifierError, ConfigError
from guardrail_proxy.tool_flags import guarded


def unreadable_label() -> int:
    parse_label("violent content")  # a JSON policy's free-text category
    return 0


def fail(exc: BaseException) -> int:
    raise exc


@pytest.mark.parametrize(("action", "code", "message"), [
    (lambda: 0, 0, None),
    (unreadable_label, 2, "error: label must be 0, 1, true, false or a label code such as DR2; got 'violent content'"),
    (lambda: fail(RowError("'text' must be a non-empty string")), 2, "error: 'text' must be a non-empty string"),
    (lambda: fail(ConfigError("proxy.yaml", "routes", "bad")), 2, "error: "),
    (lambda: fail(FileNotFoundError(2, "No such file", "x.jsonl")), 2, "x.jsonl"),
    (lambda: fail(ClassifierError("down", kind="transport")), 1, "error: down"),
    (lambda: fail(KeyboardInterrupt()), 130, "interrupted"),
])
def test_expected_failures_are_one_line_and_an_exit_code(action, code, message, capsys):
    assert guarded(action) == code
    err = capsys.readouterr().err
    assert (message is None and err == "") or (message is not None and message in err and len(err.splitlines()) == 1)
