"""Host and IP address checks, ported from Kong's ``kong.tools.ip``.

Kong decides the address type by exclusion (two colons or more: IPv6; only
digits and dots: IPv4; otherwise a name) and then validates that type.
"""
from __future__ import annotations

import re

import attrs

_IPV4 = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)(?::([0-9]+))?\Z")
_IPV6_GROUPS = re.compile(r"(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\Z")
_NAME = re.compile(r"[0-9A-Za-z._-]+\Z")
_TRAILING_PORT = re.compile(r":([0-9]+)\Z")
_MAX_PORT = 65535


class InvalidAddress(ValueError):
    """``str(error)`` is Kong's message (``invalid hostname: x``, ``invalid port number``...)."""


@attrs.frozen
class Address:
    type: str
    host: str
    port: int | None


def _port(digits: str) -> int:
    port = int(digits)
    if port > _MAX_PORT:
        raise InvalidAddress("invalid port number")
    return port


def hostname_type(name: str) -> str:
    if name.count(":") > 1:
        return "ipv6"
    if re.fullmatch(r"[0-9.]+", name.replace(":", "")):
        return "ipv4"
    return "name"


def _ipv4(address: str) -> Address:
    match = _IPV4.match(address)
    if not match or ((":" in address) != (match.group(5) is not None)):
        raise InvalidAddress(f"invalid ipv4 address: {address}")
    octets = [int(octet) for octet in match.group(1, 2, 3, 4)]
    if any(octet > 255 for octet in octets):
        raise InvalidAddress(f"invalid ipv4 address: {address}")
    port = _port(match.group(5)) if match.group(5) is not None else None
    return Address("ipv4", ".".join(map(str, octets)), port)


def _ipv6(address: str) -> Address:
    check, port = address, None
    if address.startswith("["):
        close = address.find("]")
        if close == -1:
            raise InvalidAddress(f"invalid ipv6 address: {address}")
        check, rest = address[1:close], address[close + 1:]
        if rest:
            if not re.fullmatch(r":[0-9]+", rest):
                raise InvalidAddress("invalid ipv6 address")
            port = _port(rest[1:])
    if check.startswith(":"):
        check = "0" + check
    if check.endswith(":"):
        check += "0"
    if "::" in check:
        check = check.replace("::", ":" + "0:" * max(0, 8 - check.count(":")), 1)
    if not _IPV6_GROUPS.match(check):
        raise InvalidAddress(f"invalid ipv6 address: {address}")
    return Address("ipv6", ":".join(group.zfill(4) for group in check.lower().split(":")), port)


def _name(address: str) -> Address:
    name, port = address, None
    if trailing := _TRAILING_PORT.search(address):
        name = address[:trailing.start()]
        port = _port(trailing.group(1))
    if not _NAME.match(name):
        raise InvalidAddress(f"invalid hostname: {address}")
    segments = name.split(".")
    for index, segment in enumerate(segments, 1):
        if segment.endswith("-") or (segment == "" and index != len(segments)):
            raise InvalidAddress(f"invalid hostname: {address}")
    return Address("name", name, port)


def normalize_ip(address: str) -> Address:
    """Parse ``ipv4[:port]``, ``ipv6``, ``[ipv6][:port]`` or ``name[:port]``."""
    return {"ipv4": _ipv4, "ipv6": _ipv6, "name": _name}[hostname_type(address)](address)


def host_error(host: str) -> str | None:
    """A service ``host``: a name or IP address without a port."""
    try:
        address = normalize_ip(host)
    except InvalidAddress as error:
        return "must not have a port" if str(error) == "invalid port number" else f"invalid value: {host}"
    return "must not have a port" if address.port is not None else None


def host_with_port_error(host: str) -> str | None:
    """A name or IP address, with an optional port."""
    try:
        normalize_ip(host)
    except InvalidAddress as error:
        return str(error)
    return None


def wildcard_host_error(host: str) -> str | None:
    """An SNI name: at most one ``*``, at either end; not an IP; no port."""
    if "*" in host:
        index = host.index("*")
        if index not in (0, len(host) - 1):
            return "wildcard must be leftmost or rightmost character"
        if host.count("*") > 1:
            return "only one wildcard must be specified"
        host = host.replace("*", "wildcard")
    try:
        address = normalize_ip(host)
    except InvalidAddress as error:
        return "must not have a port" if str(error) == "invalid port number" else f"invalid value: {host}"
    if address.type != "name":
        return "must not be an IP"
    return "must not have a port" if address.port is not None else None
