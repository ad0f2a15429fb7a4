"""Routes compiled by the last router build, so the next one does only what a write changed.

Entities are replaced, never changed in place, when they are written, and a table
keeps its insertion order (an update keeps its place, an insert comes last). So a
route whose dict and service dict are those of the last build compiles to the same
entries, and the index can be patched with the entries of the routes that changed:
a write to one route of 10,000 costs a few index lists, not compiling every route and
indexing every entry again. Told which routes a write touched (``RouteChanges``), a
build looks at those alone; otherwise it finds them in a pass over the table.

A route's ``order`` (the last tie-breaker of Kong's priorities) only has to rise
with its place in the table: a changed route keeps its order, a new one gets one
above all others. When that no longer holds (a declarative configuration that
reorders routes), the build starts afresh, numbering routes by their place.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.logger import Logger

from kongish import pcre
from kongish.router.entries import RouteEntry, compile_route, is_http_route
from kongish.router.index import RouteIndex

log = Logger()

#: Past this many changed entries (beyond a quarter of the table), index everything again.
_PATCH_LIMIT = 16


@attrs.frozen
class _Compiled:
    """One route's entries (none for a route left out), and what they were compiled from."""

    route: dict[str, Any]
    service: dict[str, Any] | None
    order: int
    entries: list[RouteEntry]

    @property
    def reads_headers(self) -> bool:
        return any(entry.headers for entry in self.entries)


def _service_for(route: Mapping[str, Any], services: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    reference = route.get("service")
    return services.get(reference["id"]) if reference else None


@attrs.frozen
class RouteChanges:
    """The routes a write touched, each as it is now (None: deleted), in the order the write
    first touched them, and how many routes the table holds after it.

    A write that deleted a route and stored it again moved it to the table's end, and one
    that changed a service changed its routes: neither is told as ``RouteChanges``.
    """

    routes: dict[str, dict[str, Any] | None]
    total: int


@attrs.define
class _Patch:
    """The entries a patch takes out of the last index and puts in, and the counts after it."""

    reading_headers: int
    next_order: int
    added: list[RouteEntry] = attrs.Factory(list)
    removed: list[RouteEntry] = attrs.Factory(list)

    def drop(self, previous: _Compiled) -> None:
        self.removed.extend(previous.entries)
        self.reading_headers -= previous.reads_headers


@attrs.define(eq=False)
class CompiledRoutes:
    """What the last build compiled and indexed; ``compiled`` counts routes compiled so far."""

    _last: dict[str, _Compiled] = attrs.Factory(dict)
    _index: RouteIndex | None = None
    #: Routes of the last build whose entries match on headers (the router then remembers nothing).
    _reading_headers: int = 0
    #: The order a new route gets: above every route's so far.
    _next_order: int = 0
    compiled: int = 0

    def index(self, routes: Iterable[dict[str, Any]], services: Mapping[str, dict[str, Any]],
              changes: RouteChanges | None = None) -> tuple[RouteIndex, bool]:
        """The index of ``routes``, and whether any of them matches on request headers.

        With ``changes`` (those since the last build), only the routes they name are looked
        at, so a write's cost does not grow with the table."""
        if changes is not None:
            patched = self._patch_changes(changes, services)
            if patched is not None:
                return patched
        table = list(routes)
        patched = self._patch(table, services)
        return patched if patched is not None else self._rebuild(table, services)

    def _patch_changes(self, changes: RouteChanges,
                       services: Mapping[str, dict[str, Any]]) -> tuple[RouteIndex, bool] | None:
        """The last index with the entries of the routes ``changes`` names swapped; None when
        that cannot be (no last index, or tables that no longer agree on their size)."""
        last = self._last
        if self._index is None:
            return None
        patch = _Patch(self._reading_headers, self._next_order)
        replaced: dict[str, _Compiled | None] = {}
        size = len(last)
        for route_id, route in changes.routes.items():
            previous = last.get(route_id)
            if route is not None:
                # a new route is the table's last (it was appended), so it gets the next order
                replaced[route_id] = self._current(patch, route, _service_for(route, services), previous)
                size += previous is None
            elif previous is not None:
                patch.drop(previous)
                replaced[route_id] = None
                size -= 1
        if size != changes.total:
            return None
        patched = self._commit(patch, size)
        if patched is not None:
            for route_id, compiled in replaced.items():
                if compiled is None:
                    del last[route_id]
                else:
                    last[route_id] = compiled
        return patched

    def _patch(self, table: list[dict[str, Any]],
               services: Mapping[str, dict[str, Any]]) -> tuple[RouteIndex, bool] | None:
        """The last index with the changed routes' entries swapped; None when that cannot be."""
        last = self._last
        if self._index is None:
            return None
        kept: dict[str, _Compiled] = {}
        patch = _Patch(self._reading_headers, self._next_order)
        previous_order = -1
        for route in table:
            reference = route.get("service")
            service = services.get(reference["id"]) if reference else None
            compiled = self._current(patch, route, service, last.get(route["id"]))
            if compiled.order <= previous_order:  # the table was reordered
                return None
            previous_order = compiled.order
            kept[route["id"]] = compiled
        for route_id, previous in last.items():
            if route_id not in kept:
                patch.drop(previous)
        patched = self._commit(patch, len(table))
        if patched is not None:
            self._last = kept
        return patched

    def _current(self, patch: _Patch, route: dict[str, Any], service: dict[str, Any] | None,
                 previous: _Compiled | None) -> _Compiled:
        """The route's compiled entries: the last build's unless it or its service changed."""
        if previous is not None and previous.route is route and previous.service is service:
            return previous
        if previous is None:
            order, patch.next_order = patch.next_order, patch.next_order + 1
        else:
            order = previous.order
            patch.drop(previous)
        compiled = self._compile(route, service, order)
        patch.added.extend(compiled.entries)
        patch.reading_headers += compiled.reads_headers
        return compiled

    def _commit(self, patch: _Patch, size: int) -> tuple[RouteIndex, bool] | None:
        """The last index patched, or None when so much changed that indexing afresh is cheaper."""
        assert self._index is not None
        if len(patch.added) + len(patch.removed) > _PATCH_LIMIT + size // 4:
            return None
        self._reading_headers, self._next_order = patch.reading_headers, patch.next_order
        self._index = patched = self._index.changed(patch.removed, patch.added)
        return patched, patch.reading_headers > 0

    def _rebuild(self, table: list[dict[str, Any]],
                 services: Mapping[str, dict[str, Any]]) -> tuple[RouteIndex, bool]:
        """Every route numbered by its place; compiled again unless it is as it was."""
        last = self._last
        kept: dict[str, _Compiled] = {}
        entries: list[RouteEntry] = []
        for order, route in enumerate(table):
            service = _service_for(route, services)
            previous = last.get(route["id"])
            if previous is not None and previous.route is route and previous.service is service \
                    and previous.order == order:
                compiled = previous
            else:
                compiled = self._compile(route, service, order)
            kept[route["id"]] = compiled
            entries.extend(compiled.entries)
        self._last, self._next_order = kept, len(table)
        self._reading_headers = sum(compiled.reads_headers for compiled in kept.values())
        self._index = index = RouteIndex.build(entries)
        return index, self._reading_headers > 0

    def _compile(self, route: dict[str, Any], service: dict[str, Any] | None, order: int) -> _Compiled:
        """Routes of disabled services are left out, as in Kong, and so is a route whose
        regex does not compile (logged): one bad route never takes the router down."""
        self.compiled += 1
        entries: list[RouteEntry] = []
        if is_http_route(route) and not (service and service.get("enabled") is False):
            try:
                entries = compile_route(route, service, order)
            except pcre.error as error:
                log.error("route {route_id} left out of the router: invalid regex: {error}",
                          route_id=route.get("id"), error=str(error))
        return _Compiled(route, service, order, entries)
