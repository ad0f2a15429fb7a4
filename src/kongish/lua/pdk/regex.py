"""The matcher behind ``ngx.re.*``: PCRE patterns and option letters on the ``regex`` package.

OpenResty compiles ``ngx.re`` patterns with PCRE; :mod:`kongish.pcre`
compiles them with ``regex``, which reads PCRE's syntax (named groups
``(?<name>...)``, possessive quantifiers, atomic groups, ...).
Subjects are byte strings, so offsets are byte offsets as in nginx; the ``u``
option matches on decoded UTF-8 and converts offsets back to bytes.
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import regex
from lupa.luajit21 import LuaRuntime

from kongish import pcre
from kongish.lua.cpu_alarm import CpuTimeExceeded, with_cpu_limit
from kongish.lua.current import CurrentRequest
from kongish.lua.pdk.codec import as_bytes

_OPTION_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}
#: Options that change PCRE's speed or nginx's caching, not what matches.
_IGNORED_OPTIONS = frozenset("jodDJ")
#: OpenResty's error when PCRE gives up (PCRE_ERROR_MATCHLIMIT).
_PCRE_MATCH_LIMIT = b"pcre_exec() failed: -8"


class RegexOptionError(ValueError):
    """An option letter that PCRE does not know: a Lua error, as in OpenResty."""


@attrs.frozen
class CompiledRegex:
    pattern: regex.Pattern
    anchored: bool
    unicode: bool


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: bytes, options: bytes) -> CompiledRegex:
    """Compile once per (pattern, options); raises RegexOptionError or :data:`kongish.pcre.error`."""
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
    compiled: regex.Pattern[Any]
    if unicode:
        # UTF-8 without PCRE_UCP: \w, \d and POSIX classes stay ASCII, as in OpenResty.
        compiled = pcre.compile_pcre(pattern.decode("utf-8"), flags | regex.ASCII)
    else:
        compiled = pcre.compile_pcre(pattern, flags)
    return CompiledRegex(compiled, anchored, unicode)


@attrs.frozen
class Match:
    """One match: its groups and their byte spans (0-based, end exclusive)."""

    #: Group 0 then each group; ``None`` for a group that did not take part.
    groups: tuple[bytes | None, ...]
    spans: tuple[tuple[int, int] | None, ...]
    names: dict[str, int]


def search(subject: bytes | str, pattern: bytes | str, options: bytes | str,
           start: int, timeout: float | None = None) -> Match | None:
    """Find the first match at or after byte offset ``start``.

    Past ``timeout`` seconds (wall clock) the match raises ``TimeoutError``.
    """
    compiled = compile_regex(as_bytes(pattern), as_bytes(options))
    data = as_bytes(subject)
    if start > len(data):
        return None
    count = compiled.pattern.groups + 1
    names = dict(compiled.pattern.groupindex)
    if not compiled.unicode:
        found = (compiled.pattern.match if compiled.anchored else compiled.pattern.search)(
            data, start, timeout=timeout)
        if found is None:
            return None
        groups = tuple(found.group(i) for i in range(count))
        spans = tuple(None if groups[i] is None else found.span(i) for i in range(count))
        return Match(groups, spans, names)
    text = data.decode("utf-8")
    char_start = len(data[:start].decode("utf-8", "ignore"))
    found_text = (compiled.pattern.match if compiled.anchored else compiled.pattern.search)(
        text, char_start, timeout=timeout)
    if found_text is None:
        return None

    def byte_offset(index: int) -> int:
        return len(text[:index].encode("utf-8"))

    texts = [found_text.group(i) for i in range(count)]
    groups = tuple(None if group is None else group.encode("utf-8") for group in texts)
    spans = tuple(None if groups[i] is None
                  else (byte_offset(found_text.start(i)), byte_offset(found_text.end(i)))
                  for i in range(count))
    return Match(groups, spans, names)


def lua_search(lua: LuaRuntime, current: CurrentRequest,
               reserve: Callable[[int], None]) -> Callable[..., object]:
    """``search`` shaped for Lua: a table {captures, spans, names}, nil, or an error string.

    ``captures`` holds group 0 first; ``spans`` holds a 1-based inclusive
    (from, to) pair per group, as ngx.re.find returns them.  Unmatched
    groups are ``false`` in both.  A bad pattern is returned as a message, as
    OpenResty does; bad options come back as ``{raise = message}`` for the Lua
    side to raise, as OpenResty raises them.  A match may use half of what is
    left of the running code's CPU budget; past that it fails as PCRE fails at its
    match limit (and the budget hook ends the run at its next check).  The
    CPU-time alarm enforces the budget; ``regex``'s own ``timeout``, set to
    the same number of (wall-clock) seconds, bounds the match even where the
    alarm cannot be armed (off the main thread, or under a profiler).
    ``reserve(size)`` refuses captures the Lua VM has no room for.
    """
    def lua_search_primitive(subject, pattern, options, start):
        remaining = (current.deadline - time.process_time()) / 2  # the code can go on after a failure
        timeout = None if remaining == math.inf else max(remaining, 0.0)
        try:
            found = with_cpu_limit(
                remaining,
                lambda: search(subject, pattern, options or b"", int(start) - 1, timeout))
        except (CpuTimeExceeded, TimeoutError):
            return _PCRE_MATCH_LIMIT
        except RegexOptionError as error:
            return lua.table_from({b"raise": str(error).encode("latin-1", "replace")})
        except pcre.error as error:
            return f'pcre_compile() failed: {error} in "{as_bytes(pattern).decode("latin-1")}"'.encode(
                "latin-1", "replace")
        except UnicodeDecodeError:
            return b"bad UTF-8 string"
        if found is None:
            return None
        reserve(sum(len(group) for group in found.groups if group is not None))
        captures = lua.table_from([False if group is None else group for group in found.groups])
        spans = lua.table_from([position for span in found.spans
                                for position in ((False, False) if span is None
                                                 else (span[0] + 1, span[1]))])
        names = lua.table_from({name.encode(): index for name, index in found.names.items()})
        return lua.table_from([captures, spans, names])
    return lua_search_primitive
