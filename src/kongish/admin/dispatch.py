"""A small path-template dispatcher: the Admin API's endpoint table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

Handler = Callable[..., Awaitable[tuple[int, Any]]]


@attrs.frozen
class Endpoint:
    """One path template, e.g. ``/services/{service}/routes``, and its handlers by method."""

    template: str
    methods: Mapping[str, Handler]

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.template.split("/") if s)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        pattern = self.segments
        if len(pattern) != len(segments):
            return None
        params: dict[str, str] = {}
        for expected, actual in zip(pattern, segments):
            if expected.startswith("{"):
                params[expected[1:-1]] = actual
            elif expected != actual:
                return None
        return params


@attrs.frozen
class EndpointTable:
    """Finds the endpoint for a path; literal segments win over parameters."""

    endpoints: tuple[Endpoint, ...]

    def find(self, segments: Sequence[str]) -> tuple[Endpoint, dict[str, str]] | None:
        candidates = []
        for endpoint in self.endpoints:
            params = endpoint.match(segments)
            if params is not None:
                candidates.append((len(params), endpoint, params))
        if not candidates:
            return None
        _, endpoint, params = min(candidates, key=lambda c: c[0])
        return endpoint, params

    def templates(self) -> list[str]:
        return sorted(e.template for e in self.endpoints)
