"""TCP_NODELAY on proxied connections, as nginx's ``tcp_nodelay on`` (its default).

A response goes out as a head and then its body, a request as a head and then its
body: with Nagle's algorithm the second write waits for the peer's ACK of the first,
which the peer delays (up to 40 ms on Linux) waiting for more. Both sides of the
proxy turn it off.
"""
from __future__ import annotations

from typing import Any


def no_delay(transport: Any) -> None:
    """Turn off Nagle's algorithm on the TCP connection under ``transport`` (TLS included)."""
    while transport is not None:
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
            return
        transport = getattr(transport, "transport", None)
