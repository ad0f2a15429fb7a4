"""Kong 3.8+ decoding of form argument names into nested arguments.

Form and multipart bodies are flat ``name=value`` pairs; Kong turns names such
as ``config.access[1]`` or ``headers[x-version]`` into nested tables and then
deep-merges the pairs. This module reproduces that, including Kong's quirks
(``a[].b`` writes ``b`` into the array ``a`` itself, a path written twice
collects its values into an array), so that curl commands written for Kong give
the same structures.

Lua tables are modelled as dicts whose keys are strings (map keys) or ints
(array positions); :func:`merge` turns them into lists and dicts at the end.
Every step is linear in the length of the name, because names come from
untrusted bodies of up to several megabytes.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

#: A decoded key: a map key, a 1-based array position, or ``None`` for a final
#: ``[]`` ("append to the array").
Key = str | int | None
#: A Lua table under construction, and the values it holds.
Table = dict[str | int, "Node"]
Node = str | Table

#: Names Kong does not decode: a leading or a trailing dot.
_UNDECODED = re.compile(r"^\.|\.$")
_ENCODED_BRACKETS = re.compile(r"%5B(.*?)%5D", re.IGNORECASE | re.DOTALL)
#: One dotted segment, where every "[" has a "]" after it: any first character,
#: then plain runs and bracket groups, whose dots do not split (Kong's pattern is
#: ``([^.](?:\[[^\]]*\])*)+``; possessive quantifiers keep this one fast).
_SEGMENT = re.compile(r"[^.](?:[^.\[]++|\[[^\]]*+\])*+")
_BRACKET_KEY = re.compile(r"\[([^\]]*)\]")
#: Kong's ``tonumber`` test for array positions, limited to integers that a Lua
#: number holds exactly; longer digit strings are map keys.
_POSITION = re.compile(r"[0-9]{1,15}")


def key_path(name: str) -> list[Key]:
    """The keys one form name stands for, outermost first."""
    if _UNDECODED.search(name):
        # Kong files such a value under the literal key "name" (a bug);
        # kongish keeps the name the client sent.
        return [name]
    decoded = _decode_brackets(name)
    segments = _dotted_segments(decoded) or [decoded]
    path: list[Key] = []
    for segment in segments[:-1]:
        keys = _segment_keys(segment)
        if keys[-1] is None:
            # "a[].b": Kong nests b inside the array a itself.
            keys.pop()
        path.extend(keys)
    path.extend(_segment_keys(segments[-1]))
    # "[]" before the end means the first element.
    return [1 if key is None else key for key in path[:-1]] + path[-1:]


def nest(path: list[Key], value: str | list[str]) -> Table:
    """The table one ``name=value`` pair decodes to; a list value is a repeated name."""
    *outer, last = path
    node: Node = ({position: item for position, item in enumerate(value, 1)} if isinstance(value, list)
                  else value)
    if last is None:
        node = node if isinstance(node, dict) else {1: node}
    else:
        node = {last: node}
    for key in reversed(outer):
        # key_path leaves None ("[]") only as the last key.
        node = {cast("str | int", key): node}
    return node


def merge(tables: Iterable[Table]) -> dict[str, Any]:
    """Deep-merge decoded pairs in order, the way Kong combines them."""
    combined: Table = {}
    for table in tables:
        _combine(combined, table)
    return {str(key): _plain(value) for key, value in combined.items()}


def _decode_brackets(name: str) -> str:
    """Turn ``%5B…%5D`` into ``[…]``, pairing each opening with the next closing."""
    last_closing = max(name.rfind("%5D"), name.rfind("%5d"))
    if last_closing == -1:
        return name
    # Searching only up to the last "%5D" keeps the lazy pattern linear.
    end = last_closing + 3
    return _ENCODED_BRACKETS.sub(r"[\1]", name[:end]) + name[end:]


def _dotted_segments(name: str) -> list[str]:
    """Split on dots outside closed brackets: ``a.b[c.d].e`` → ``a``, ``b[c.d]``, ``e``."""
    # Past the last "]" no bracket closes, so dots there always split; the
    # bracket-aware pattern only runs before it, where it is linear.
    end = name.rfind("]") + 1
    segments = _SEGMENT.findall(name, 0, end)
    head, *tail = name[end:].split(".")
    if segments:
        segments[-1] += head
    elif head:
        segments.append(head)
    return segments + [piece for piece in tail if piece]


def _segment_keys(segment: str) -> list[Key]:
    """``p[k1][k2]`` → ``p``, ``k1``, ``k2``; a segment without bracket keys is one literal key."""
    # Kong looks for the first "[" or "." after the first character; in a
    # segment, dots only occur inside brackets.
    opening = segment.find("[", 1)
    if opening == -1:
        return [segment]
    # Only brackets that close can hold a key; stopping at the last "]" keeps
    # the scan linear.
    keys = _BRACKET_KEY.findall(segment, opening, segment.rfind("]") + 1)
    if not keys:
        return [segment]
    return [_key(segment[:opening])] + [_key(key) for key in keys]


def _key(text: str) -> Key:
    if text == "":
        return None
    return int(text) if _POSITION.fullmatch(text) else text


def _combine(target: Table, node: Node) -> None:
    """Kong's ``combine_arg``: scalars append, tables merge key by key."""
    if isinstance(node, str):
        target[_length(target) + 1] = node
        return
    for key, value in node.items():
        existing = target.get(key)
        if existing is None:
            target[key] = value
        elif isinstance(existing, dict):
            _combine(existing, value)
        else:
            collected: Table = {1: existing}
            target[key] = collected
            _combine(collected, value)


def _length(table: Table) -> int:
    """Lua's ``#``: the count of consecutive array positions from 1."""
    length = 0
    while length + 1 in table:
        length += 1
    return length


def _plain(node: Node) -> Any:
    """A table holding exactly positions 1…n is a list; any other table a dict."""
    if isinstance(node, str):
        return node
    length = _length(node)
    if length and length == len(node):
        return [_plain(node[position]) for position in range(1, length + 1)]
    return {str(key): _plain(value) for key, value in node.items()}
