"""Compiled forms of the route attributes a request is matched against.

Each class answers one question of Kong reference 4.2 for one route.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import regex
from twisted.logger import Logger

from kongish.pcre import compile_pcre

log = Logger()

#: Wall-clock seconds one route regex may spend on one path or header value.
#: Matching backtracks, so a pathological regex could hold the reactor for
#: hours; Kong's PCRE gives up at its match limit, and past this bound the
#: regex counts as not matching, as it does in Kong.
REGEX_TIMEOUT = 0.1


def bounded_search(pattern: regex.Pattern[str], text: str) -> regex.Match[str] | None:
    """``pattern.search(text)``, or ``None`` (logged) past :data:`REGEX_TIMEOUT`."""
    try:
        return pattern.search(text, timeout=REGEX_TIMEOUT)
    except TimeoutError:
        log.error("route regex {pattern!r} gave up after {timeout}s on a {length}-character "
                  "subject; counted as not matching",
                  pattern=pattern.pattern, timeout=REGEX_TIMEOUT, length=len(text))
        return None


def split_host_port(value: str) -> tuple[str, int | None]:
    """Split ``name:port`` at the first colon when a number follows, as Kong does."""
    name, colon, port = value.partition(":")
    if colon and port.isdigit():
        return name, int(port)
    return value, None


@attrs.frozen
class HostPattern:
    """One entry of a route's ``hosts``: plain, ``*.suffix`` or ``prefix.*``."""

    name: str
    port: int | None
    wildcard: str | None = None  # "left", "right" or None

    @classmethod
    def parse(cls, value: str) -> HostPattern:
        name, port = split_host_port(value)
        if name.startswith("*"):
            return cls(name[1:], port, "left")
        if name.endswith("*"):
            return cls(name[:-1], port, "right")
        return cls(name, port)

    def matches(self, host: str | None, port: int) -> bool:
        """Test the Host name (port removed) and, if set, Kong's listening port."""
        if host is None or (self.port is not None and self.port != port):
            return False
        if self.wildcard == "left":
            return host.endswith(self.name)
        if self.wildcard == "right":
            return host.startswith(self.name)
        return host == self.name


@attrs.frozen
class HeaderCondition:
    """One header name of a route's ``headers``; any listed value may match."""

    name: str
    values: frozenset[str]
    patterns: tuple[regex.Pattern[str], ...]

    @classmethod
    def parse(cls, name: str, listed: list[str]) -> HeaderCondition:
        """Lower-case everything, ``~*`` regexes included, as Kong does."""
        values = []
        patterns = []
        for value in listed:
            if value.startswith("~*"):
                patterns.append(compile_pcre(value[2:].lower()))
            else:
                values.append(value.lower())
        return cls(name.lower(), frozenset(values), tuple(patterns))

    def matches(self, headers: Mapping[str, list[str]]) -> bool:
        for value in headers.get(self.name, ()):
            value = value.lower()
            if value in self.values or any(bounded_search(p, value) for p in self.patterns):
                return True
        return False


@attrs.frozen
class PathMatch:
    """What a route's paths matched: the prefix ``strip_path`` removes, and captures.

    ``prefix`` is ``None`` for routes without paths.  ``captures`` is
    ``{"unnamed": [...], "named": {...}}`` where ``unnamed[0]`` is the whole
    match (Lua's index 0) and groups that did not take part are ``None``.
    """

    prefix: str | None
    captures: dict[str, Any] = attrs.field(factory=dict)


#: The result for routes that have no ``paths``.
NO_PATH = PathMatch(None)


@attrs.frozen
class PrefixPaths:
    """Plain route paths of one length; a plain ``startswith`` test (``/test`` matches ``/testing``)."""

    prefixes: frozenset[str]

    def match(self, path: str) -> PathMatch | None:
        for prefix in self.prefixes:
            if path.startswith(prefix):
                return PathMatch(prefix)
        return None


@attrs.frozen
class RegexPaths:
    """A route's ``~`` paths, tried in order, each anchored at the path's start."""

    patterns: tuple[regex.Pattern[str], ...]

    @classmethod
    def parse(cls, paths: list[str]) -> RegexPaths:
        # "^" is prepended, not a full-match call, so "~/a|/b" behaves as in Kong.
        return cls(tuple(compile_pcre("^" + path[1:]) for path in paths))

    def match(self, path: str) -> PathMatch | None:
        for pattern in self.patterns:
            found = bounded_search(pattern, path)
            if found is not None:
                return PathMatch(found.group(0), _captures(found))
        return None


def _captures(found: regex.Match[str]) -> dict[str, Any]:
    """Captures for plugins; like Kong, only when group 1 took part in the match.

    A group that did not take part is ``None`` here and ``false`` in Lua, as in ``ngx.re.match``.
    """
    if found.re.groups == 0 or found.group(1) is None:
        return {}
    return {"unnamed": [found.group(0), *found.groups()], "named": found.groupdict()}
