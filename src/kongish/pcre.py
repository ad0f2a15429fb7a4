"""PCRE patterns on the ``regex`` package, for route paths, route headers and ``ngx.re``.

Kong's regexes are PCRE.  The ``regex`` package reads nearly all of PCRE's
syntax itself: named groups ``(?<name>...)`` and ``(?P<name>...)``,
possessive quantifiers, atomic groups, subroutine calls ``(?1)`` and
``(?&name)``, ``\\h``, ``\\R``, ``\\z``, ``\\K``, ``\\G``, POSIX classes.
:func:`translate` rewrites the few constructs it spells differently or not
at all: ``(?'name'...)``, ``\\k<name>`` (and ``\\k'name'``, ``\\k{name}``,
``\\g{name}``), ``\\g<name>`` (a subroutine call in PCRE), ``\\Q...\\E``,
``\\x{hh...}``, ``\\o{ooo...}``, ``\\cX``, ``\\e``, ``\\H`` and PCRE's ``\\Z``
(which, unlike Python's, allows a final newline).

Matching with ``regex`` can backtrack for a very long time, as PCRE's can;
callers bound it (``timeout=`` on each match, or a CPU-time alarm).
"""
from __future__ import annotations

import re
from typing import AnyStr

import regex

#: What a pattern that does not compile raises (not a subclass of ``re.error``).
error = regex.error

_REFERENCE = re.compile(r"\\(?:k(?:<(\w+)>|'(\w+)'|\{(\w+)\})|g\{(\w+)\})")
_SUBROUTINE = re.compile(r"\\g(?:<([+-]?\w+)>|'([+-]?\w+)')")
_QUOTED_NAME_GROUP = re.compile(r"\(\?'(\w+)'")
#: A character by code: ``\\x{hh...}``, ``\\o{ooo...}`` or ``\\cX`` (control-X).
_CODE = re.compile(r"\\(?:x\{([0-9A-Fa-f]+)\}|o\{([0-7]+)\}|c([\x20-\x7e]))")
#: PCRE escapes ``regex`` spells differently, outside and inside a character class.
_ESCAPES = {"\\Z": "(?=\\n?\\z)", "\\H": "[^\\h]", "\\e": "\\x1b"}
_CLASS_ESCAPES = {"\\e": "\\x1b"}


def translate(pattern: str) -> str:
    """Rewrite the PCRE syntax ``regex`` does not read into syntax it does."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if pattern.startswith("\\Q", index):
                end = pattern.find("\\E", index + 2)
                end = len(pattern) if end == -1 else end
                out.append(regex.escape(pattern[index + 2:end]))
                index = end + 2
                continue
            if not in_class:
                reference = _REFERENCE.match(pattern, index)
                if reference:
                    out.append(f"(?P={next(filter(None, reference.groups()))})")
                    index = reference.end()
                    continue
                subroutine = _SUBROUTINE.match(pattern, index)
                if subroutine:
                    target = next(filter(None, subroutine.groups()))
                    out.append(f"(?{target})" if target.lstrip("+-").isdigit() else f"(?&{target})")
                    index = subroutine.end()
                    continue
            by_code = _CODE.match(pattern, index)
            if by_code:
                hexadecimal, octal, control = by_code.groups()
                code = (int(hexadecimal, 16) if hexadecimal else int(octal, 8) if octal
                        else ord(control.upper()) ^ 0x40)
                out.append(f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}")
                index = by_code.end()
                continue
            escape = pattern[index:index + 2]
            out.append((_CLASS_ESCAPES if in_class else _ESCAPES).get(escape, escape))
            index += 2
            continue
        if in_class:
            # A POSIX class "[:name:]" ends with "]" without ending the set.
            if pattern.startswith("[:", index):
                end = pattern.find(":]", index + 2)
                if end != -1:
                    out.append(pattern[index:end + 2])
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
            group = _QUOTED_NAME_GROUP.match(pattern, index)
            if group:
                out.append(f"(?P<{group.group(1)}>")
                index = group.end()
                continue
        out.append(char)
        index += 1
    return "".join(out)


def compile_pcre(pattern: AnyStr, flags: int = 0) -> regex.Pattern[AnyStr]:
    """Compile a PCRE pattern (text, or bytes read as Latin-1); raises :data:`error`.

    ``flags`` are ``regex`` flags; the version is always ``regex.V0``, whose
    rules (flags, ``\\w``, splitting) are those of Python's ``re``.
    """
    if isinstance(pattern, bytes):
        return regex.compile(translate(pattern.decode("latin-1")).encode("latin-1"), flags | regex.V0)
    return regex.compile(translate(pattern), flags | regex.V0)
