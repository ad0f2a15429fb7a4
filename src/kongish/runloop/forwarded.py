"""The client's side of a request, for X-Forwarded-* headers and HTTPS-only routes.

Behind a proxy listed in ``trusted_ips``, that proxy's ``X-Forwarded-Proto``,
``-Host``, ``-Port``, ``-Path`` and ``-Prefix`` describe what the client asked
for (a TLS-terminating load balancer says ``https``); otherwise kongish's own
connection does. Kong's runloop decides it the same way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

import attrs

from kongish.http.headers import host_without_port
from kongish.http.interfaces import IProxiedRequest

if TYPE_CHECKING:
    from twisted.internet.address import IPv4Address, IPv6Address


#: nginx's ``$host`` when the request has no Host header: Kong's ``server_name``.
SERVER_NAME = b"kong"


@attrs.frozen
class Forwarded:
    """X-Forwarded-* values as kongish sends them upstream."""

    proto: bytes
    host: bytes
    port: bytes
    path: bytes
    #: None when nothing was stripped (and a trusted proxy sent none).
    prefix: bytes | None


def client_side(request: IProxiedRequest, *, trusted: bool, raw_target: bytes,
                stripped_prefix: str | None) -> Forwarded:
    """``request``'s X-Forwarded-* values; a ``trusted`` client's own headers win."""
    own = Forwarded(
        proto=b"https" if request.isSecure() else b"http",
        host=host_without_port(request.getHeader(b"host") or SERVER_NAME).lower(),
        # Requests arrive over TCP, whose local address has a port (Twisted types it IAddress).
        port=b"%d" % cast("IPv4Address | IPv6Address", request.getHost()).port,
        path=raw_target.partition(b"?")[0],
        prefix=stripped_prefix.encode("latin-1") if stripped_prefix and stripped_prefix != "/" else None)
    if not trusted:
        return own

    def sent(name: bytes) -> bytes | None:  # repeated lines joined, as nginx's $http_* variables
        values = request.requestHeaders.getRawHeaders(name)
        return None if values is None else b", ".join(values)
    return Forwarded(
        proto=_either(sent(b"x-forwarded-proto"), own.proto),
        host=_either(sent(b"x-forwarded-host"), own.host),
        port=_either(sent(b"x-forwarded-port"), own.port),
        path=_either(sent(b"x-forwarded-path"), own.path),
        prefix=_either(sent(b"x-forwarded-prefix"), own.prefix))


_Own = TypeVar("_Own", bound=bytes | None)


def _either(sent: bytes | None, own: _Own) -> bytes | _Own:
    """The trusted proxy's value, even empty (as Kong's Lua ``or`` keeps ``""``), else ours."""
    return own if sent is None else sent
