"""Kong's ``traditional_compatible`` HTTP router: request in, route and upstream URL out."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.logger import Logger

from kongish.router.compiled import CompiledRoutes, RouteChanges
from kongish.router.conditions import PathMatch, split_host_port
from kongish.router.entries import RouteEntry, RouteRequest, strip_trailing_dot
from kongish.router.index import RouteIndex
from kongish.router.normalize import normalize_path, wire_text
from kongish.router.upstream_host import upstream_host
from kongish.router.upstream_path import build_upstream_path, escape_path

log = Logger()


@attrs.define
class Match:
    """A routing decision, with everything the proxy needs to build the upstream request.

    One is made per request, so it is not frozen: a frozen attrs class costs twice
    as much to create.

    Text fields that come from the request (``upstream_query``,
    ``stripped_prefix``) are wire text: ``wire_bytes()`` gives back the exact
    bytes the client sent.
    """

    route: dict[str, Any]
    service: dict[str, Any] | None
    #: Percent-escaped path for the upstream request line (Kong reference 4.5).
    upstream_path: str
    #: Raw query string; ``None`` without ``?``, ``""`` when the target ended with ``?``.
    upstream_query: str | None
    #: ``Host`` header for the upstream request (Kong reference 4.6).
    upstream_host: str
    #: Prefix removed by ``strip_path``, for ``X-Forwarded-Prefix``; ``None`` unless not ``/``.
    stripped_prefix: str | None
    #: ``{"unnamed": [...], "named": {...}}`` from a regex path, else ``{}``.
    uri_captures: dict[str, Any]


#: Routing decisions remembered per router snapshot; past this many, start afresh.
DECISION_CACHE_SIZE = 10_000


@attrs.frozen
class _Decision:
    """Everything about a match that depends only on the cache key, not on the query."""

    route: dict[str, Any]
    service: dict[str, Any] | None
    upstream_path: str
    upstream_host: str
    stripped_prefix: str | None
    uri_captures: dict[str, Any]


@attrs.frozen
class Router:
    """An immutable snapshot of the routing table; rebuild it when routes or services change.

    Decisions are remembered by (method, path, Host, port, scheme, SNI) unless
    some route reads request headers, so repeated requests skip normalising,
    selecting and building the upstream path. A match's service is read from
    ``_services`` (the services its routes name, by id), not from the index.
    """

    _index: RouteIndex
    _services: Mapping[str, dict[str, Any]]
    _remember: bool = True
    _decisions: dict[tuple[Any, ...], _Decision | None] = attrs.field(factory=dict, eq=False)

    @classmethod
    def build(
        cls, routes: Iterable[dict[str, Any]], services: Mapping[str, dict[str, Any]],
        compiled: CompiledRoutes | None = None, changes: RouteChanges | None = None,
        previous: Router | None = None,
    ) -> Router:
        """Compile HTTP routes; routes of disabled services are left out, as in Kong.

        A route whose regex does not compile is logged and skipped, so
        one bad route never takes the whole router down. With ``compiled`` (kept
        from the previous build), only routes that changed are compiled again; with
        ``changes`` too, only the routes and services they name are looked at. When
        the build changed neither the index nor the services of ``previous`` (one built
        with the same ``compiled``: say a service no route names was written), it is
        ``previous``, with the decisions it remembers.
        """
        compiled = compiled if compiled is not None else CompiledRoutes()
        index, reads_headers = compiled.index(routes, services, changes)
        view = compiled.services
        if previous is not None and previous._index is index and previous._services is view:
            return previous
        return cls(index, view, remember=not reads_headers)

    def _select(self, request: RouteRequest) -> tuple[RouteEntry, PathMatch] | None:
        """Test candidates that could beat the best so far; the highest priority wins."""
        best: tuple[RouteEntry, PathMatch] | None = None
        for entry in self._index.candidates(request):
            if best is not None and entry.priority <= best[0].priority:
                continue
            path_match = entry.match(request)
            if path_match is not None:
                best = (entry, path_match)
        return best

    def match(
        self,
        method: str,
        target: bytes,
        host: str | None,
        headers: Mapping[str, list[str]],
        port: int,
        scheme: str = "http",
        sni: str | None = None,
    ) -> Match | None:
        """Find the highest-priority route matching the request, or ``None`` (404).

        ``target`` is the raw request target; one not starting with ``/``
        (absolute or asterisk form) matches nothing.
        """
        if not target.startswith(b"/"):
            return None
        raw_path, question_mark, query = wire_text(target).partition("?")
        key = (method, raw_path, host, port, scheme, sni)
        try:
            decision = self._decisions[key] if self._remember else self._decide(
                method, raw_path, host, headers, port, scheme, sni)
        except KeyError:
            decision = self._decide(method, raw_path, host, headers, port, scheme, sni)
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                self._decisions.clear()
            self._decisions[key] = decision
        if decision is None:
            return None
        return Match(
            route=decision.route,
            service=decision.service,
            upstream_path=decision.upstream_path,
            upstream_query=query if question_mark else None,
            upstream_host=decision.upstream_host,
            stripped_prefix=decision.stripped_prefix,
            # A copy: callers may hand it to plugins, which must not alter the router.
            uri_captures={name: part.copy() for name, part in decision.uri_captures.items()}
            if decision.uri_captures else {},
        )

    def _decide(self, method: str, raw_path: str, host: str | None,
                headers: Mapping[str, list[str]], port: int, scheme: str,
                sni: str | None) -> _Decision | None:
        request = RouteRequest(
            method=method,
            path=normalize_path(raw_path),
            host=split_host_port(host)[0] if host is not None else None,
            port=port,
            headers=headers,
            scheme=scheme,
            sni=strip_trailing_dot(sni) if sni is not None else None,
        )
        selected = self._select(request)
        if selected is None:
            return None
        entry, path_match = selected
        route = entry.route
        service = self._services.get(entry.service_id) if entry.service_id is not None else None
        strip_path = route.get("strip_path", True) is not False
        upstream_path = build_upstream_path(
            service.get("path") if service else None,
            request.path,
            path_match.prefix,
            strip_path,
            route.get("path_handling") or "v0",
        )
        stripped = path_match.prefix if strip_path and path_match.prefix != "/" else None
        return _Decision(
            route=route,
            service=service,
            upstream_path=escape_path(upstream_path),
            upstream_host=upstream_host(route, service, host),
            stripped_prefix=stripped,
            uri_captures=path_match.captures,
        )
