"""Routes compiled by the last router build, so the next one does only what a write changed.

Entities are replaced, never changed in place, when they are written, and a table
keeps its insertion order (an update keeps its place, an insert comes last). So a
route whose dict is that of the last build, and whose service is still enabled (or
still disabled), compiles to the same entries, and the index can be patched with the
entries of the routes that changed: a write to one route of 10,000 costs a few index
lists, not compiling every route and indexing every entry again. Told which routes and
services a write touched (``RouteChanges``), a build looks at those alone; otherwise it
finds them in a pass over the table.

Matching reads one thing of a service: whether it is disabled (its routes are left out,
as in Kong). Everything else a match leads to (protocol, host, port, path, timeouts) is
read from ``CompiledRoutes.services`` when a route is chosen, so a write to a service that
leaves ``enabled`` as it was compiles nothing and leaves the index as it was: the router
gets the new service alone. One that turns ``enabled`` over compiles that service's
routes again (found through the routes kept by service), and no others.

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
from kongish.router.entries import RouteEntry, compile_route, is_http_route, service_id_of
from kongish.router.index import RouteIndex

log = Logger()

#: Past this many changed entries (beyond a quarter of the table), index everything again.
_PATCH_LIMIT = 16


def _disables(service: Mapping[str, Any] | None) -> bool:
    """Whether a service leaves its routes out of the router (``enabled: false``, as in Kong)."""
    return service is not None and service.get("enabled") is False


@attrs.frozen
class _Compiled:
    """One route's entries (none for a route left out), what they were compiled from, and
    whether its service was disabled then."""

    route: dict[str, Any]
    disabled: bool
    order: int
    entries: list[RouteEntry]

    @property
    def reads_headers(self) -> bool:
        return any(entry.headers for entry in self.entries)

    @property
    def service_id(self) -> str | None:
        return service_id_of(self.route)


@attrs.frozen
class RouteChanges:
    """What a write touched: the routes, each as it is now (None: deleted), in the order the
    write first touched them; how many routes the table holds after it; and the ids of the
    services it stored or deleted.

    A write that deleted a route and stored it again moved it to the table's end: it is not
    told as ``RouteChanges``.
    """

    routes: dict[str, dict[str, Any] | None]
    total: int
    services: frozenset[str] = frozenset()


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
    #: The ids of the last build's routes, by the id of the service they name.
    _by_service: dict[str, set[str]] = attrs.Factory(dict)
    #: See ``services``.
    _services: dict[str, dict[str, Any]] = attrs.Factory(dict)
    compiled: int = 0

    @property
    def services(self) -> Mapping[str, dict[str, Any]]:
        """The services the last build's routes name (those that exist), as the tables held
        them then: what its router reads a match's service from. A build that changes them
        makes a new mapping, so one handed out never changes."""
        return self._services

    def index(self, routes: Iterable[dict[str, Any]], services: Mapping[str, dict[str, Any]],
              changes: RouteChanges | None = None) -> tuple[RouteIndex, bool]:
        """The index of ``routes``, and whether any of them matches on request headers.

        With ``changes`` (those since the last build), only the routes and services they
        name are looked at, so a write's cost does not grow with the table."""
        if changes is not None:
            patched = self._patch_changes(changes, routes, services)
            if patched is not None:
                return patched
        table = list(routes)
        patched = self._patch(table, services)
        return patched if patched is not None else self._rebuild(table, services)

    def _patch_changes(self, changes: RouteChanges, routes: Iterable[dict[str, Any]],
                       services: Mapping[str, dict[str, Any]]) -> tuple[RouteIndex, bool] | None:
        """The last index with the entries of the routes ``changes`` names swapped, and of the
        routes of the services it names that were enabled or disabled; None when that cannot
        be (no last index, or tables that no longer agree on their size)."""
        last = self._last
        if self._index is None:
            return None
        turned = self._turned_over(changes, services)
        if len(turned) > _PATCH_LIMIT + changes.total // 4:
            return self._rebuild(list(routes), services)
        patch = _Patch(self._reading_headers, self._next_order)
        replaced: dict[str, _Compiled | None] = {}
        named = set(changes.services)  # the services whose routes may have come or gone
        for route_id in turned:
            kept = last[route_id]
            replaced[route_id] = self._current(patch, kept.route, services, kept)
        size = len(last)
        for route_id, route in changes.routes.items():
            previous = last.get(route_id)
            if previous is not None and (service_id := previous.service_id) is not None:
                named.add(service_id)
            if route is not None:
                # a new route is the table's last (it was appended), so it gets the next order
                replaced[route_id] = self._current(patch, route, services, previous)
                size += previous is None
                if (service_id := service_id_of(route)) is not None:
                    named.add(service_id)
            elif previous is not None:
                patch.drop(previous)
                replaced[route_id] = None
                size -= 1
        if size != changes.total:
            return None
        patched = self._commit(patch, size)
        if patched is None:
            return self._rebuild(list(routes), services)
        for route_id, compiled in replaced.items():
            if (was := last.get(route_id)) is not None:
                self._unlist(route_id, was)
            if compiled is None:
                del last[route_id]
            else:
                last[route_id] = compiled
                self._list(route_id, compiled)
        self._services = self._services_after(named, services)
        return patched

    def _turned_over(self, changes: RouteChanges, services: Mapping[str, dict[str, Any]]) -> list[str]:
        """The routes ``changes`` does not name whose service it enabled or disabled.

        A build leaves every route compiled as its service was, so one route tells for all
        of its service's: a service that still disables as it did costs one look."""
        turned: list[str] = []
        for service_id in changes.services:
            route_ids = self._by_service.get(service_id)
            if not route_ids:
                continue
            if self._last[next(iter(route_ids))].disabled != _disables(services.get(service_id)):
                turned.extend(route_id for route_id in route_ids if route_id not in changes.routes)
        return turned

    def _list(self, route_id: str, compiled: _Compiled) -> None:
        if (service_id := compiled.service_id) is not None:
            self._by_service.setdefault(service_id, set()).add(route_id)

    def _unlist(self, route_id: str, compiled: _Compiled) -> None:
        if (service_id := compiled.service_id) is not None:
            route_ids = self._by_service[service_id]
            route_ids.discard(route_id)
            if not route_ids:
                del self._by_service[service_id]

    def _services_after(self, named: Iterable[str],
                        services: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``services`` with the ``named`` services as the tables hold them now (those the
        routes still name); the same mapping when none of them changed, else a new one."""
        view = self._services
        updated: dict[str, dict[str, Any]] | None = None
        for service_id in named:
            service = services.get(service_id) if service_id in self._by_service else None
            if view.get(service_id) is not service:
                if updated is None:
                    updated = dict(view)
                if service is None:
                    del updated[service_id]
                else:
                    updated[service_id] = service
        return updated if updated is not None else view

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
            compiled = self._current(patch, route, services, last.get(route["id"]))
            if compiled.order <= previous_order:  # the table was reordered
                return None
            previous_order = compiled.order
            kept[route["id"]] = compiled
        for route_id, previous in last.items():
            if route_id not in kept:
                patch.drop(previous)
        patched = self._commit(patch, len(table))
        if patched is not None:
            self._keep(kept, services)
        return patched

    def _current(self, patch: _Patch, route: dict[str, Any], services: Mapping[str, dict[str, Any]],
                 previous: _Compiled | None) -> _Compiled:
        """The route's compiled entries: the last build's unless it changed, or its service was
        enabled or disabled."""
        service_id = service_id_of(route)
        disabled = service_id is not None and _disables(services.get(service_id))
        if previous is not None and previous.route is route and previous.disabled == disabled:
            return previous
        if previous is None:
            order, patch.next_order = patch.next_order, patch.next_order + 1
        else:
            order = previous.order
            patch.drop(previous)
        compiled = self._compile(route, disabled, order)
        patch.added.extend(compiled.entries)
        patch.reading_headers += compiled.reads_headers
        return compiled

    def _commit(self, patch: _Patch, size: int) -> tuple[RouteIndex, bool] | None:
        """The last index patched (itself when no entry changed), or None when so much changed
        that indexing afresh is cheaper."""
        assert self._index is not None
        if len(patch.added) + len(patch.removed) > _PATCH_LIMIT + size // 4:
            return None
        self._reading_headers, self._next_order = patch.reading_headers, patch.next_order
        if patch.added or patch.removed:
            self._index = self._index.changed(patch.removed, patch.added)
        return self._index, patch.reading_headers > 0

    def _rebuild(self, table: list[dict[str, Any]],
                 services: Mapping[str, dict[str, Any]]) -> tuple[RouteIndex, bool]:
        """Every route numbered by its place; compiled again unless it is as it was."""
        last = self._last
        kept: dict[str, _Compiled] = {}
        entries: list[RouteEntry] = []
        for order, route in enumerate(table):
            service_id = service_id_of(route)
            disabled = service_id is not None and _disables(services.get(service_id))
            previous = last.get(route["id"])
            if previous is not None and previous.route is route and previous.disabled == disabled \
                    and previous.order == order:
                compiled = previous
            else:
                compiled = self._compile(route, disabled, order)
            kept[route["id"]] = compiled
            entries.extend(compiled.entries)
        self._keep(kept, services)
        self._next_order = len(table)
        self._reading_headers = sum(compiled.reads_headers for compiled in kept.values())
        self._index = index = RouteIndex.build(entries)
        return index, self._reading_headers > 0

    def _keep(self, kept: dict[str, _Compiled], services: Mapping[str, dict[str, Any]]) -> None:
        """``kept`` as the last build's routes, their services found afresh (the same mapping
        when they are those it had)."""
        self._last = kept
        by_service: dict[str, set[str]] = {}
        for route_id, compiled in kept.items():
            if (service_id := compiled.service_id) is not None:
                by_service.setdefault(service_id, set()).add(route_id)
        self._by_service = by_service
        view = {service_id: services[service_id] for service_id in by_service if service_id in services}
        old = self._services
        if len(view) != len(old) or any(old.get(service_id) is not service
                                        for service_id, service in view.items()):
            self._services = view

    def _compile(self, route: dict[str, Any], disabled: bool, order: int) -> _Compiled:
        """Routes of disabled services are left out, as in Kong, and so is a route whose
        regex does not compile (logged): one bad route never takes the router down."""
        self.compiled += 1
        entries: list[RouteEntry] = []
        if is_http_route(route) and not disabled:
            try:
                entries = compile_route(route, order)
            except pcre.error as error:
                log.error("route {route_id} left out of the router: invalid regex: {error}",
                          route_id=route.get("id"), error=str(error))
        return _Compiled(route, disabled, order, entries)
