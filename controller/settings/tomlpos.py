"""Line numbers of TOML keys and tables, so a configuration error can say `site.toml:42`.

`tomllib` does not report positions. This scanner is deliberately small: it runs only after
`tomllib` has accepted the text, recognises table headers and `key =` lines at bracket depth 0,
and steps over strings, comments, multi-line strings and multi-line arrays. A path it does not
find (a key inside an inline table, say) falls back to the nearest enclosing key or table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Loc = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(slots=True)
class _Scan:
    depth: int = 0
    multiline: str | None = None  # the closing delimiter of an open multi-line string
    table: Loc = ()
    arrays: dict[Loc, int] = field(default_factory=dict)
    lines: dict[Loc, int] = field(default_factory=dict)


def key_lines(text: str) -> dict[Loc, int]:
    """Map each table, array-of-tables entry and key path in `text` to its 1-based line."""
    scan = _Scan()
    for number, line in enumerate(text.splitlines(), start=1):
        pos = 0
        if scan.multiline is not None:
            end = line.find(scan.multiline)
            if end < 0:
                continue
            pos = end + 3
            scan.multiline = None
        elif scan.depth == 0:
            pos = _statement(line, number, scan)
        _skip_value(line, pos, scan)
    return scan.lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """Line of `loc` or of the nearest enclosing path that has one."""
    for end in range(len(loc), 0, -1):
        found = lines.get(loc[:end])
        if found is not None:
            return found
    return None


def _statement(line: str, number: int, scan: _Scan) -> int:
    """Record a header or key that starts this line; return where its value starts."""
    stripped = line.lstrip()
    start = len(line) - len(stripped)
    if stripped.startswith("[["):
        parts, end = _parse_key(line, start + 2)
        if parts is None:
            return len(line)
        array = (*_resolve(parts[:-1], scan), parts[-1])
        index = scan.arrays.get(array, 0)
        scan.arrays[array] = index + 1
        scan.table = (*array, index)
        scan.lines.setdefault(scan.table, number)
        return len(line)
    if stripped.startswith("["):
        parts, end = _parse_key(line, start + 1)
        if parts is None:
            return len(line)
        scan.table = _resolve(parts, scan)
        scan.lines.setdefault(scan.table, number)
        return len(line)
    parts, end = _parse_key(line, start)
    if parts is None or not line[end:].lstrip().startswith("="):
        return len(line)
    key: Loc = scan.table
    for part in parts:
        key = (*key, part)
        scan.lines.setdefault(key, number)
    return line.index("=", end) + 1


def _resolve(parts: list[str], scan: _Scan) -> Loc:
    """A header's dotted key as a path, with array-of-tables names followed by their current index."""
    path: Loc = ()
    for part in parts:
        path = (*path, part)
        count = scan.arrays.get(path)
        if count:
            path = (*path, count - 1)
    return path


def _parse_key(line: str, pos: int) -> tuple[list[str] | None, int]:
    parts: list[str] = []
    while True:
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos >= len(line):
            return None, pos
        char = line[pos]
        if char == '"':
            end = pos + 1
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            parts.append(line[pos + 1 : end])
            pos = end + 1
        elif char == "'":
            end = line.find("'", pos + 1)
            if end < 0:
                return None, pos
            parts.append(line[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE_KEY.match(line, pos)
            if match is None:
                return None, pos
            parts.append(match.group())
            pos = match.end()
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos < len(line) and line[pos] == ".":
            pos += 1
            continue
        return parts, pos


def _skip_value(line: str, pos: int, scan: _Scan) -> None:
    """Track brackets and strings from `pos` to the end of the line."""
    while pos < len(line):
        char = line[pos]
        if char == "#":
            return
        if line.startswith(('"""', "'''"), pos):
            delimiter = line[pos : pos + 3]
            end = line.find(delimiter, pos + 3)
            if end < 0:
                scan.multiline = delimiter
                return
            pos = end + 3
            continue
        if char == '"':
            pos += 1
            while pos < len(line) and line[pos] != '"':
                pos += 2 if line[pos] == "\\" else 1
        elif char == "'":
            end = line.find("'", pos + 1)
            pos = len(line) if end < 0 else end
        elif char in "[{":
            scan.depth += 1
        elif char in "]}":
            scan.depth = max(0, scan.depth - 1)
        pos += 1
