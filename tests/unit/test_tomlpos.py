"""Line numbers of TOML keys: the `file:line` in configuration errors."""

from __future__ import annotations

import json
import tomllib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controller.settings.tomlpos import key_lines, line_of

TEXT = '''\
# comment [not] = 1
[a]
x = """
[not_a_table]
y = 1
"""
z = [
  1, # [ in a comment
  "]",
]
w = 'lit [' # trailing
[[b]]
k = 1
[[b]]
k = 2
[b.c]
m = { n = 1, o = [2] }
"quoted.key" = 1
dotted.key = 2
  [ "d" . e ]
p = 1
'''


def test_positions_in_a_tricky_document() -> None:
    tomllib.loads(TEXT)  # the scanner only runs on valid TOML
    lines = key_lines(TEXT)
    assert lines[("a",)] == 2
    assert lines[("a", "x")] == 3
    assert ("not_a_table",) not in lines
    assert ("a", "y") not in lines
    assert lines[("a", "z")] == 7
    assert lines[("a", "w")] == 11
    assert lines[("b", 0)] == 12
    assert lines[("b", 0, "k")] == 13
    assert lines[("b", 1, "k")] == 15
    assert lines[("b", 1, "c", "m")] == 17
    assert lines[("b", 1, "c", "quoted.key")] == 18
    assert lines[("b", 1, "c", "dotted", "key")] == 19
    assert lines[("d", "e", "p")] == 21


def test_line_of_falls_back_to_the_enclosing_key() -> None:
    lines = key_lines(TEXT)
    assert line_of(lines, ("b", 1, "c", "m", "n")) == 17
    assert line_of(lines, ("b", 1, "nothing")) == 14
    assert line_of(lines, ("nowhere",)) is None


KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
SCALARS = st.one_of(
    st.integers(-1000, 1000),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
TABLE = st.dictionaries(KEYS, VALUES, max_size=4)
DOCUMENT = st.tuples(
    st.dictionaries(KEYS, TABLE, max_size=3),
    st.dictionaries(KEYS, st.lists(TABLE, min_size=1, max_size=3), max_size=2),
    st.booleans(),
)


def _value(value: Any, multiline: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if multiline and "'" not in value and "\n" not in value and "\r" not in value:
            return "'''\n" + value + "'''"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        items = [_value(v, multiline) for v in value]
        if multiline and items:
            return "[\n  " + ",\n  ".join(items) + ",\n]"
        return "[" + ", ".join(items) + "]"
    return str(value)


@given(DOCUMENT)
def test_every_key_is_found_on_its_own_line(document: tuple[dict[str, Any], dict[str, Any], bool]) -> None:
    tables, arrays, multiline = document
    arrays = {k: v for k, v in arrays.items() if k not in tables}
    out: list[str] = []
    expected: dict[tuple[str | int, ...], str] = {}

    def emit_table(path: tuple[str | int, ...], header: str, body: dict[str, Any]) -> None:
        out.append(header)
        for key, value in body.items():
            expected[(*path, key)] = key
            out.extend(f"{key} = {_value(value, multiline)}".split("\n"))

    for name, body in tables.items():
        emit_table((name,), f"[{name}]", body)
    for name, entries in arrays.items():
        for index, body in enumerate(entries):
            emit_table((name, index), f"[[{name}]]", body)
    text = "\n".join(out) + "\n"
    assert tomllib.loads(text) == {**tables, **arrays}

    lines = key_lines(text)
    source = text.splitlines()
    for path, key in expected.items():
        assert source[lines[path] - 1].startswith(f"{key} = "), path
