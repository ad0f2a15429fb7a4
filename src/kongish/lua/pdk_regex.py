"""The matcher behind ``ngx.re.*``: PCRE patterns and option letters on Python's ``re``.

OpenResty compiles ``ngx.re`` patterns with PCRE.  Python's ``re`` understands
nearly the same dialect; :func:`translate` rewrites the constructs it spells
differently (``(?<name>``, ``\\k<name>``, ``\\z``, POSIX classes, ...).
Subjects are byte strings, so offsets are byte offsets as in nginx; the ``u``
option matches on decoded UTF-8 and converts offsets back to bytes.
"""
from __future__ import annotations

import functools
import re
import time
from typing import Callable

import attrs
from lupa.luajit21 import LuaRuntime

from kongish.lua.cpu_alarm import CpuTimeExceeded, with_cpu_limit
from kongish.lua.current import CurrentRequest
from kongish.lua.pdk_codec import as_bytes

_OPTION_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
#: Options that change PCRE's speed or nginx's caching, not what matches.
_IGNORED_OPTIONS = frozenset("jodDJ")

_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
    "lower": "a-z", "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "xdigit": "0-9A-Fa-f",
    "word": "\\w", "punct": "!-/:-@\\[-`{-~", "cntrl": "\\x00-\\x1f\\x7f",
    "print": " -~", "graph": "!-~", "ascii": "\\x00-\\x7f",
}
_NAMED_REFERENCE = re.compile(r"\\[kg](?:<(\w+)>|'(\w+)'|\{(\w+)\})")
_NAMED_GROUP = re.compile(r"\(\?(?:<(\w+)>|'(\w+)')")
_HEX_BRACED = re.compile(r"\\x\{([0-9A-Fa-f]+)\}")
#: PCRE escapes Python spells differently, outside and inside a character class.
_ESCAPES = {
    "\\z": "\\Z", "\\Z": "(?=\\n?\\Z)", "\\h": "[ \\t]", "\\H": "[^ \\t]",
    "\\R": "(?:\\r\\n|\\n|\\r)", "\\e": "\\x1b",
}
_CLASS_ESCAPES = {"\\h": " \\t", "\\e": "\\x1b"}
#: OpenResty's error when PCRE gives up (PCRE_ERROR_MATCHLIMIT).
_PCRE_MATCH_LIMIT = b"pcre_exec() failed: -8"


class RegexOptionError(ValueError):
    """An option letter that PCRE does not know: a Lua error, as in OpenResty."""


def translate(pattern: str) -> str:
    """Rewrite PCRE-only syntax into Python ``re`` syntax."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if pattern.startswith("\\Q", index):
                end = pattern.find("\\E", index + 2)
                end = len(pattern) if end == -1 else end
                out.append(re.escape(pattern[index + 2:end]))
                index = end + 2
                continue
            reference = _NAMED_REFERENCE.match(pattern, index)
            hex_braced = _HEX_BRACED.match(pattern, index)
            if reference and not in_class:
                out.append(f"(?P={next(filter(None, reference.groups()))})")
                index = reference.end()
                continue
            if hex_braced:
                code = int(hex_braced.group(1), 16)
                out.append(f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}")
                index = hex_braced.end()
                continue
            escape = pattern[index:index + 2]
            out.append((_CLASS_ESCAPES if in_class else _ESCAPES).get(escape, escape))
            index += 2
            continue
        if in_class:
            if pattern.startswith("[:", index):
                end = pattern.find(":]", index + 2)
                name = pattern[index + 2:end] if end != -1 else ""
                if name in _POSIX_CLASSES:
                    out.append(_POSIX_CLASSES[name])
                    index = end + 2
                    continue
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            out.append(char)
            index += 1
            # A "]" right after "[" or "[^" is a literal member, not the end.
            for prefix in ("^", "]"):
                if pattern.startswith(prefix, index):
                    out.append(prefix)
                    index += 1
            continue
        elif char == "(":
            group = _NAMED_GROUP.match(pattern, index)
            if group:
                out.append(f"(?P<{next(filter(None, group.groups()))}>")
                index = group.end()
                continue
        out.append(char)
        index += 1
    return "".join(out)


@attrs.frozen
class CompiledRegex:
    pattern: re.Pattern
    anchored: bool
    unicode: bool


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: bytes, options: bytes) -> CompiledRegex:
    """Compile once per (pattern, options); raises RegexOptionError or re.error."""
    flags, anchored, unicode = 0, False, False
    for letter in options.decode("latin-1"):
        if letter in _OPTION_FLAGS:
            flags |= _OPTION_FLAGS[letter]
        elif letter == "a":
            anchored = True
        elif letter in "uU":
            unicode = True
        elif letter not in _IGNORED_OPTIONS:
            raise RegexOptionError(
                f'unknown flag "{letter}" (flags "{options.decode("latin-1")}")')
    if unicode:
        compiled = re.compile(translate(pattern.decode("utf-8")), flags | re.ASCII)
    else:
        translated = translate(pattern.decode("latin-1")).encode("latin-1")
        compiled = re.compile(translated, flags)
    return CompiledRegex(compiled, anchored, unicode)


@attrs.frozen
class Match:
    """One match: its groups and their byte spans (0-based, end exclusive)."""

    #: Group 0 then each group; ``None`` for a group that did not take part.
    groups: tuple[bytes | None, ...]
    spans: tuple[tuple[int, int] | None, ...]
    names: dict[str, int]


def search(subject: bytes | str, pattern: bytes | str, options: bytes | str,
           start: int) -> Match | None:
    """Find the first match at or after byte offset ``start``."""
    regex = compile_regex(as_bytes(pattern), as_bytes(options))
    data = as_bytes(subject)
    if start > len(data):
        return None
    count = regex.pattern.groups + 1
    names = dict(regex.pattern.groupindex)
    if not regex.unicode:
        found = (regex.pattern.match if regex.anchored else regex.pattern.search)(data, start)
        if found is None:
            return None
        groups = tuple(found.group(i) for i in range(count))
        spans = tuple(None if groups[i] is None else found.span(i) for i in range(count))
        return Match(groups, spans, names)
    text = data.decode("utf-8")
    char_start = len(data[:start].decode("utf-8", "ignore"))
    found = (regex.pattern.match if regex.anchored else regex.pattern.search)(text, char_start)
    if found is None:
        return None

    def byte_offset(index: int) -> int:
        return len(text[:index].encode("utf-8"))

    groups = tuple(None if found.group(i) is None else found.group(i).encode("utf-8")
                   for i in range(count))
    spans = tuple(None if groups[i] is None
                  else (byte_offset(found.start(i)), byte_offset(found.end(i)))
                  for i in range(count))
    return Match(groups, spans, names)


def lua_search(lua: LuaRuntime, current: CurrentRequest) -> Callable[..., object]:
    """``search`` shaped for Lua: a table {captures, spans, names}, nil, or an error string.

    ``captures`` holds group 0 first; ``spans`` holds a 1-based inclusive
    (from, to) pair per group, as ngx.re.find returns them.  Unmatched
    groups are ``false`` in both.  A bad pattern is returned as a message, as
    OpenResty does; bad options come back as ``{raise = message}`` for the Lua
    side to raise, as OpenResty raises them.  A match may use what is left of
    the running code's CPU budget; past that it fails as PCRE fails at its
    match limit (and the budget hook ends the run at its next check).
    """
    def lua_search_primitive(subject, pattern, options, start):
        try:
            found = with_cpu_limit(
                current.deadline - time.process_time(),
                lambda: search(subject, pattern, options or b"", int(start) - 1))
        except CpuTimeExceeded:
            return _PCRE_MATCH_LIMIT
        except RegexOptionError as error:
            return lua.table_from({b"raise": str(error).encode("latin-1", "replace")})
        except re.error as error:
            return f'pcre_compile() failed: {error} in "{as_bytes(pattern).decode("latin-1")}"'.encode(
                "latin-1", "replace")
        except UnicodeDecodeError:
            return b"bad UTF-8 string"
        if found is None:
            return None
        captures = lua.table_from([False if group is None else group for group in found.groups])
        spans = lua.table_from([position for span in found.spans
                                for position in ((False, False) if span is None
                                                 else (span[0] + 1, span[1]))])
        names = lua.table_from({name.encode(): index for name, index in found.names.items()})
        return lua.table_from([captures, spans, names])
    return lua_search_primitive
