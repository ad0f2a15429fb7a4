"""Who is on the other end of a client connection, as the socket says."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from twisted.protocols.policies import ProtocolWrapper

from kongish.http.interfaces import IProxiedRequest

if TYPE_CHECKING:
    from twisted.internet.interfaces import ITransport


def socket_peer(request: IProxiedRequest) -> str:
    """The socket's other end, beneath PROXY protocol readers and TLS: never what a PROXY
    line claims, which only counts from a trusted balancer."""
    transport = getattr(request.channel, "transport", None)
    if transport is None:  # an HTTP/2 stream of a mounted site: its connection's address
        return getattr(request.getClientAddress(), "host", "")
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    # A connected wrapper has its transport (ProtocolWrapper types it Optional).
    return getattr(cast("ITransport", transport).getPeer(), "host", "")
