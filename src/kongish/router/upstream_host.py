"""The ``Host`` header sent upstream (Kong reference 4.6)."""
from __future__ import annotations

from typing import Any

#: Ports that Kong leaves out of the upstream ``Host`` header, per service protocol.
DEFAULT_PORTS = {"http": 80, "grpc": 80, "https": 443, "grpcs": 443}


def upstream_host(
    route: dict[str, Any], service: dict[str, Any] | None, client_host: str | None
) -> str:
    """Pick the upstream ``Host``: the client's as sent, or the service's.

    ``preserve_host`` keeps the client's header byte for byte, port included.
    Otherwise the service host is used, with ``:port`` unless the port is the
    protocol's default.  A route without a service (answered with 503 later)
    gets an empty value.
    """
    if route.get("preserve_host") and client_host is not None:
        return client_host
    if service is None or not service.get("host"):
        return ""
    protocol = service.get("protocol") or "http"
    port = service.get("port")
    if port is None or port == DEFAULT_PORTS.get(protocol):
        return service["host"]
    return f"{service['host']}:{port}"
