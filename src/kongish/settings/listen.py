"""Listen addresses: Kong's ``host:port [flags]`` lists and Twisted endpoint strings.

Kong's ``proxy_protocol`` flag becomes Twisted's ``haproxy:`` endpoint: a
connection starts with a PROXY line (v1 or v2), whose source address is the
client's from then on. An entry without ``backlog=N`` listens with nginx's
default backlog on Linux, 511 (Twisted's own is 50: a burst of connections
then waits for SYN retries); the kernel caps it at ``net.core.somaxconn``.
"""
from __future__ import annotations

import re

_KONG_ADDRESS = re.compile(r"^(?:\[(?P<ipv6>[0-9a-fA-F:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>\d{1,5})$")
_ENDPOINT = re.compile(r"^(tcp|tcp6|unix|ssl|systemd|tls|haproxy):")
_IGNORED_FLAGS = ("reuseport", "deferred", "bind", "http2")
#: nginx's ``NGX_LISTEN_BACKLOG`` on Linux.
DEFAULT_BACKLOG = 511


class ListenError(ValueError):
    """A listen value that is neither Kong's form nor a Twisted endpoint string."""


def _kong_to_endpoint(entry: str) -> str:
    address, *flags = entry.split()
    match = _KONG_ADDRESS.match(address)
    if match is None:
        raise ListenError(f"invalid listen address '{address}' (expected host:port)")
    port = int(match["port"])
    if port > 65535:
        raise ListenError(f"invalid port in '{address}'")
    host = match["ipv6"] or match["host"]
    options = [f"interface={host.replace(':', chr(92) + ':')}"]
    prefix = ["haproxy"] if "proxy_protocol" in flags else []
    if not any(flag.startswith("backlog=") for flag in flags):
        options.append(f"backlog={DEFAULT_BACKLOG}")
    for flag in flags:
        if flag == "ssl":
            raise ListenError("the 'ssl' flag needs a certificate: use a Twisted 'ssl:' endpoint string")
        if flag.startswith("backlog="):
            options.append(flag)
        elif (flag != "proxy_protocol" and not flag.startswith(_IGNORED_FLAGS)
              and not flag.startswith(("ipv6only=", "so_keepalive="))):
            raise ListenError(f"unknown listen flag '{flag}'")
    return ":".join([*prefix, "tcp", str(port), *options])


def parse_listen(value: str) -> list[str]:
    """Turn a listen setting into Twisted server endpoint strings; ``off`` gives none."""
    value = value.strip()
    if value == "off":
        return []
    if _ENDPOINT.match(value):
        return [value]
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if not entries:
        raise ListenError("empty listen value")
    return [entry if _ENDPOINT.match(entry) else _kong_to_endpoint(entry) for entry in entries]
