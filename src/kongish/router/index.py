"""Indexes that find the few routes worth testing for a request.

Matching every route would make routing cost grow with the configuration.
Instead, plain route paths are looked up by the request path's prefixes (one
dict lookup per distinct route path length), routes with only plain hosts and
no paths by the request host, and only the rest (regex paths, wildcard hosts,
routes matching on methods/headers/snis alone) are scanned linearly.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

from kongish.router.conditions import PrefixPaths
from kongish.router.entries import RouteEntry, RouteRequest


@attrs.frozen
class RouteIndex:
    """Candidate lookup over compiled entries; a superset of what can match."""

    by_prefix: dict[str, list[RouteEntry]]
    #: Distinct lengths of the keys of ``by_prefix``, longest first.
    prefix_lengths: tuple[int, ...]
    by_host: dict[str, list[RouteEntry]]
    scanned: tuple[RouteEntry, ...]

    @classmethod
    def build(cls, entries: Iterable[RouteEntry]) -> RouteIndex:
        by_prefix: dict[str, list[RouteEntry]] = {}
        by_host: dict[str, list[RouteEntry]] = {}
        scanned: list[RouteEntry] = []
        for entry in entries:
            if isinstance(entry.paths, PrefixPaths):
                for prefix in entry.paths.prefixes:
                    by_prefix.setdefault(prefix, []).append(entry)
            elif entry.paths is None and entry.hosts and all(
                h.wildcard is None for h in entry.hosts
            ):
                for name in {h.name for h in entry.hosts}:
                    by_host.setdefault(name, []).append(entry)
            else:
                scanned.append(entry)
        lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))
        return cls(by_prefix, lengths, by_host, tuple(scanned))

    def candidates(self, request: RouteRequest) -> Iterator[RouteEntry]:
        path = request.path
        for length in self.prefix_lengths:
            if length <= len(path):
                yield from self.by_prefix.get(path[:length], ())
        if request.host is not None:
            yield from self.by_host.get(request.host, ())
        yield from self.scanned
