"""The Admin API site's open connections, closed gracefully when the node stops."""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

from kongish.http.connection_cap import ConnectionCap
from kongish.http.draining import Draining


class _StoppableChannel(HTTPChannel):
    """HTTP/1.1's channel, which a stopping node has close after its answers."""

    stopping = False

    def checkPersistence(self, request: Request, version: bytes) -> bool:
        if self.stopping:  # a request whose head was still arriving when the node began to stop
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return super().checkPersistence(request, version)


class _CountedConnection(ProtocolWrapper):
    """An Admin API connection whose state ``/status`` counts."""

    # AdminConnections builds its site's channels as _StoppableChannel, over the listener's
    # TCP (or TCP-like: TLS, UNIX) transport.
    wrappedProtocol: _StoppableChannel
    transport: ITCPTransport

    @property
    def connection_state(self) -> str:
        return "writing" if self.wrappedProtocol.requests else "waiting"


class AdminConnections(WrappingFactory[_CountedConnection]):
    """An Admin API ``Site`` whose connections are known, so that a stopping node closes
    them before its store: idle ones at once, busy ones once they have answered.

    It sets the site's protocol to HTTP/1.1's channel itself rather than twisted.web's
    HTTP/2-negotiating wrapper of it, which hides the requests in flight (kongish's
    listeners speak HTTP/1.1 only).
    """

    protocol = _CountedConnection

    def __init__(self, site: Site, reactor: IReactorTime, cap: ConnectionCap | None = None) -> None:
        # Twisted types HTTPFactory.protocol as its HTTP/2-negotiating factory function (a method,
        # to mypy); any factory of HTTPChannels serves, and HTTPFactory's own assignment is ignored too.
        site.protocol = _StoppableChannel  # type: ignore[method-assign, assignment]
        super().__init__(site)
        self.connections: Draining[_CountedConnection] = Draining(reactor)
        self.cap = cap
        if cap is not None:
            cap.listeners.append(self.connections.open)

    def buildProtocol(self, addr: Any) -> _CountedConnection | None:  # type: ignore[override]
        """A connection, or None past the process's cap (the Admin API's share included)."""
        if self.cap is not None and not self.cap.admits(admin=True):
            return None
        return super().buildProtocol(addr)

    def registerProtocol(self, protocol: _CountedConnection) -> None:
        super().registerProtocol(protocol)
        self.connections.opened(protocol)

    def unregisterProtocol(self, protocol: _CountedConnection) -> None:
        super().unregisterProtocol(protocol)
        self.connections.closed(protocol)

    def close(self, timeout: float) -> Deferred[None]:
        return self.connections.stop(timeout, _wind_down,
                                     lambda protocol: protocol.transport.abortConnection())


def _wind_down(protocol: _CountedConnection) -> None:
    channel = protocol.wrappedProtocol
    channel.stopping = True
    if not channel.requests:
        protocol.loseConnection()
        return
    channel.persistent = False  # it closes once its answer is written
    for request in channel.requests:
        if not request.startedWriting:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
