"""Routes compiled into match entries, each with its Kong 3.x priority.

A route with several paths is split like Kong's ``traditional_compatible``
router does: one entry per distinct prefix length and one for all its regex
paths, so each group competes with its own priority (Kong reference 4.3).

An entry names its service by id: what a match leads to upstream (protocol, host,
port, path, timeouts) is read from the router's services when the route is chosen,
so a write to a service compiles none of its routes again.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kongish.router.conditions import (
    NO_PATH,
    HeaderCondition,
    HostPattern,
    PathMatch,
    PrefixPaths,
    RegexPaths,
)
from kongish.router.normalize import wire_bytes

#: Kong caps the header count used for ordering at 255.
MAX_HEADER_COUNT = 255

#: Schemes on which Kong checks a route's ``snis``.
TLS_SCHEMES = frozenset({"https", "grpcs", "tls"})

#: Route protocols served by the HTTP router.
HTTP_PROTOCOLS = frozenset({"http", "https", "grpc", "grpcs"})


@attrs.frozen
class RouteRequest:
    """The request facts routing looks at, already normalised."""

    method: str
    path: str
    #: Host header without its port; ``None`` when absent.
    host: str | None
    #: The port kongish accepted the connection on.
    port: int
    #: Lower-cased header name -> values.
    headers: Mapping[str, list[str]]
    scheme: str
    #: TLS server name without a trailing dot.
    sni: str | None


def strip_trailing_dot(name: str) -> str:
    """FQDNs may end with a dot that routing ignores."""
    return name[:-1] if len(name) > 1 and name.endswith(".") else name


@attrs.frozen
class RouteEntry:
    """One matchable unit: a route (or one path group of it) and its priority.

    ``priority`` compares as a tuple, highest wins: attribute count, plain
    hosts only, header count, has regex path, regex_priority, prefix length,
    then older ``created_at`` and earlier position in the configuration.
    """

    route: dict[str, Any]
    #: The id the route's ``service`` names (None: no service), looked up in the router's services.
    service_id: str | None
    priority: tuple[int, ...]
    paths: PrefixPaths | RegexPaths | None
    hosts: tuple[HostPattern, ...]
    methods: frozenset[str]
    headers: tuple[HeaderCondition, ...]
    snis: frozenset[str]

    def match(self, request: RouteRequest) -> PathMatch | None:
        """Return the path match when every non-empty attribute matches."""
        if self.methods and request.method not in self.methods:
            return None
        if self.hosts and not any(h.matches(request.host, request.port) for h in self.hosts):
            return None
        if self.snis and request.scheme in TLS_SCHEMES and request.sni not in self.snis:
            return None
        if not all(h.matches(request.headers) for h in self.headers):
            return None
        if self.paths is None:
            return NO_PATH
        return self.paths.match(request.path)


def is_http_route(route: Mapping[str, Any]) -> bool:
    """Stream-only routes (tcp, tls, udp, ...) belong to another router."""
    return bool(HTTP_PROTOCOLS.intersection(route.get("protocols") or ("http", "https")))


def _path_groups(paths: list[str]) -> list[PrefixPaths | RegexPaths | None]:
    if not paths:
        return [None]
    regexes = [p for p in paths if p.startswith("~")]
    by_length: dict[int, set[str]] = {}
    for path in paths:
        if not path.startswith("~"):
            by_length.setdefault(len(wire_bytes(path)), set()).add(path)
    groups: list[PrefixPaths | RegexPaths | None] = [
        PrefixPaths(frozenset(same_length)) for same_length in by_length.values()
    ]
    if regexes:
        groups.append(RegexPaths.parse(regexes))
    return groups


def _priority(
    route: Mapping[str, Any], paths: PrefixPaths | RegexPaths | None, order: int
) -> tuple[int, ...]:
    hosts = route.get("hosts") or []
    header_count = len(route.get("headers") or {})
    attribute_count = sum(
        1 for field in ("methods", "hosts", "headers", "paths", "snis") if route.get(field)
    )
    is_regex = isinstance(paths, RegexPaths)
    prefix_length = (
        len(wire_bytes(next(iter(paths.prefixes)))) if isinstance(paths, PrefixPaths) else 0
    )
    return (
        attribute_count,
        int(bool(hosts) and not any("*" in h for h in hosts)),
        min(header_count, MAX_HEADER_COUNT),
        int(is_regex),
        (route.get("regex_priority") or 0) if is_regex else 0,
        prefix_length,
        -(route.get("created_at") or 0),
        -order,
    )


def service_id_of(route: Mapping[str, Any]) -> str | None:
    """The id of the service a route names, or None."""
    reference = route.get("service")
    return reference["id"] if reference else None


def compile_route(route: dict[str, Any], order: int) -> list[RouteEntry]:
    """Compile one route; ``order`` is its position, the last tie-breaker. Nothing of its
    service goes into the entries but the service's id.

    Raises :data:`kongish.pcre.error` when a regex path or header does not compile.
    """
    service_id = service_id_of(route)
    hosts = tuple(HostPattern.parse(h) for h in route.get("hosts") or ())
    methods = frozenset(route.get("methods") or ())
    headers = tuple(
        HeaderCondition.parse(name, values)
        for name, values in (route.get("headers") or {}).items()
    )
    snis = frozenset(strip_trailing_dot(s) for s in route.get("snis") or ())
    return [
        RouteEntry(
            route=route,
            service_id=service_id,
            priority=_priority(route, paths, order),
            paths=paths,
            hosts=hosts,
            methods=methods,
            headers=headers,
            snis=snis,
        )
        for paths in _path_groups(route.get("paths") or [])
    ]
