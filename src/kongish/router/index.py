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
    #: How many keys of ``by_prefix`` have each length: a change need not measure every key.
    _length_counts: dict[int, int]

    @classmethod
    def build(cls, entries: Iterable[RouteEntry]) -> RouteIndex:
        by_prefix: dict[str, list[RouteEntry]] = {}
        by_host: dict[str, list[RouteEntry]] = {}
        scanned: list[RouteEntry] = []
        for entry in entries:
            place, keys = _place(entry)
            if place is None:
                scanned.append(entry)
                continue
            table = by_prefix if place == "prefix" else by_host
            for key in keys:
                table.setdefault(key, []).append(entry)
        counts: dict[int, int] = {}
        for prefix in by_prefix:
            counts[len(prefix)] = counts.get(len(prefix), 0) + 1
        return cls(by_prefix, _lengths(counts), by_host, tuple(scanned), counts)

    def changed(self, removed: Iterable[RouteEntry], added: Iterable[RouteEntry]) -> RouteIndex:
        """This index without ``removed`` (these very entries) and with ``added``; only the
        lists they are in are copied, so a change costs what it touches."""
        tables = {"prefix": dict(self.by_prefix), "host": dict(self.by_host)}
        copied: set[tuple[str, str]] = set()
        scanned: list[RouteEntry] = list(self.scanned)
        counts = dict(self._length_counts)

        def entries_at(place: str, key: str) -> list[RouteEntry]:
            table = tables[place]
            if (place, key) not in copied:
                copied.add((place, key))
                if place == "prefix" and key not in table:
                    counts[len(key)] = counts.get(len(key), 0) + 1
                table[key] = list(table.get(key, ()))
            return table[key]

        gone = {id(entry) for entry in removed}
        for entry in removed:
            place, keys = _place(entry)
            if place is None:
                continue
            for key in keys:
                remaining = [kept for kept in entries_at(place, key) if id(kept) not in gone]
                if remaining:
                    tables[place][key] = remaining
                else:
                    del tables[place][key]
                    copied.discard((place, key))
                    if place == "prefix":
                        counts[len(key)] -= 1
        scanned = [kept for kept in scanned if id(kept) not in gone]
        for entry in added:
            place, keys = _place(entry)
            if place is None:
                scanned.append(entry)
                continue
            for key in keys:
                entries_at(place, key).append(entry)
        return RouteIndex(tables["prefix"], _lengths(counts), tables["host"], tuple(scanned), counts)

    def candidates(self, request: RouteRequest) -> Iterator[RouteEntry]:
        path = request.path
        for length in self.prefix_lengths:
            if length <= len(path):
                yield from self.by_prefix.get(path[:length], ())
        if request.host is not None:
            yield from self.by_host.get(request.host, ())
        yield from self.scanned


def _place(entry: RouteEntry) -> tuple[str | None, frozenset[str]]:
    """Where an entry is indexed: under its plain path prefixes, under its plain host
    names (a route with hosts and no paths), or (None) among those scanned."""
    if isinstance(entry.paths, PrefixPaths):
        return "prefix", frozenset(entry.paths.prefixes)
    if entry.paths is None and entry.hosts and all(h.wildcard is None for h in entry.hosts):
        return "host", frozenset(h.name for h in entry.hosts)
    return None, frozenset()


def _lengths(counts: dict[int, int]) -> tuple[int, ...]:
    """The lengths some prefix has, longest first."""
    return tuple(sorted((length for length, count in counts.items() if count), reverse=True))
