"""The client's side of a request, for X-Forwarded-* headers and HTTPS-only routes.

Behind a proxy listed in ``trusted_ips``, that proxy's ``X-Forwarded-Proto``,
``-Host``, ``-Port``, ``-Path`` and ``-Prefix`` describe what the client asked
for (a TLS-terminating load balancer says ``https``); otherwise kongish's own
connection does. Kong's runloop decides it the same way.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar, cast

import attrs

from kongish.http.headers import host_without_port
from kongish.http.interfaces import IProxiedRequest

if TYPE_CHECKING:
    from twisted.internet.address import IPv4Address, IPv6Address


@attrs.define
class TrustedNetworks:
    """``trusted_ips``: whose ``X-Forwarded-*`` and ``X-Real-IP`` headers count."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, setting: str | Iterable[str] | None) -> TrustedNetworks:
        if isinstance(setting, str):
            setting = setting.split(",")
        networks = []
        for entry in setting or ():
            entry = entry.strip()
            if entry == "unix:":
                continue
            if entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
        return cls(tuple(networks))

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == network.version and ip in network for network in self.networks)


@attrs.frozen
class RealIp:
    """The client address behind trusted proxies, as nginx's realip module finds it.

    kong.conf's ``real_ip_header`` names the header a proxy in ``trusted_ips``
    reports the address in; the rightmost address of its list counts, and with
    ``real_ip_recursive`` the walk goes on leftwards past addresses that are
    trusted too. Anyone else's header is ignored. ``header`` None is
    ``proxy_protocol``: a trusted balancer's PROXY line names the client.
    """

    trusted: TrustedNetworks
    header: bytes | None = b"x-real-ip"
    recursive: bool = False

    def client_ip(self, peer: str, request: IProxiedRequest) -> str:
        """The address ``peer``, the socket's other end, speaks for."""
        if not self.trusted.networks or peer not in self.trusted:
            return peer
        if self.header is None:  # the PROXY line's source, which the listener reports
            return getattr(request.getClientAddress(), "host", peer)
        lines = request.requestHeaders.getRawHeaders(self.header)
        if not lines:
            return peer
        # nginx walks every X-Forwarded-For line, but reads only the first of any other header
        reported = b",".join(lines) if self.header == b"x-forwarded-for" else lines[0]
        addresses = [item for item in _SEPARATORS.split(reported) if item]
        address = peer
        while addresses and address in self.trusted:
            candidate = _ip(addresses.pop())
            if candidate is None:
                break
            address = candidate
            if not self.recursive:
                break
        return address


#: What separates the addresses of a realip header, for nginx.
_SEPARATORS = re.compile(rb"[ ,]+")


def _ip(text: bytes) -> str | None:
    """An address as nginx's ngx_parse_addr_port reads one: bare, ``a.b.c.d:port`` or ``[v6]:port``."""
    host = text.decode("latin-1")
    if (bare := _address(host)) is not None:
        return bare
    if host.startswith("["):
        host, bracket, port = host[1:].partition("]")
        if not bracket or not port.startswith(":"):
            return None
        port = port[1:]
    else:
        host, colon, port = host.partition(":")
        if not colon:
            return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return _address(host)


def _address(text: str) -> str | None:
    """An IP address in nginx's notation; no zone ids, which nginx does not read."""
    if "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


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
