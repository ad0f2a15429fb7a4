"""Who the client is behind trusted proxies, as nginx's realip module finds it
(``trusted_ips``, ``real_ip_header``, ``real_ip_recursive``)."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import attrs

from kongish.http.interfaces import IProxiedRequest


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
        if not self.networks:  # the default (trusted_ips = NONE): nothing to parse per request
            return False
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
