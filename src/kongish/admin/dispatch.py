"""A small path-template dispatcher: the Admin API's endpoint table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

Handler = Callable[..., Awaitable[tuple[int, Any]]]


def _is_parameter(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


@attrs.frozen
class Endpoint:
    """One path template in Kong's notation (``/services/{services}/routes``) and its handlers."""

    template: str
    methods: Mapping[str, Handler]

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.template.split("/") if s)

    @property
    def allowed(self) -> list[str]:
        """The methods an OPTIONS answer lists: HEAD wherever GET is, and OPTIONS itself."""
        methods = set(self.methods) | {"OPTIONS"}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        pattern = self.segments
        if len(pattern) != len(segments):
            return None
        params: dict[str, str] = {}
        for expected, actual in zip(pattern, segments, strict=True):
            if _is_parameter(expected):
                params[expected[1:-1]] = actual
            elif expected != actual:
                return None
        return params

    def precedence(self) -> tuple[int, ...]:
        """Sorts literal segments before parameters, leftmost first (``/plugins/enabled`` wins)."""
        return tuple(int(_is_parameter(s)) for s in self.segments)


@attrs.frozen
class EndpointTable:
    """Finds the endpoint for a path; literal segments win over parameters."""

    endpoints: tuple[Endpoint, ...]

    def find(self, segments: Sequence[str]) -> tuple[Endpoint, dict[str, str]] | None:
        matches = [(endpoint, params) for endpoint in self.endpoints
                   if (params := endpoint.match(segments)) is not None]
        if not matches:
            return None
        return min(matches, key=lambda match: match[0].precedence())

    def templates(self) -> list[str]:
        """Every template, sorted segment by segment the way Kong's ``/endpoints`` sorts them."""
        return sorted({e.template for e in self.endpoints}, key=lambda t: t.replace("/", "\x00"))
