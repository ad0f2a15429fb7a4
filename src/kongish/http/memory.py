"""One client connection served in memory, with no socket, and the HTTP response it got.

``MemoryConnection`` hands a protocol factory's connection a ``StringTransport``: what the
client sends goes to ``dataReceived``, what the server writes collects in the transport.
The proxy's test harness (``kongish.testing.ProxyHarness``) and the Admin API's dry run
(``kongish.runloop.dry_run``) drive kongish's own HTTP server this way.
"""
from __future__ import annotations

from typing import Any

import attrs
import httptools
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

#: The addresses a memory connection reports unless told others.
CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)
SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 8000)


@attrs.define(eq=False)
class MemoryConnection:
    """A connection of ``protocol`` (built by a factory) over an in-memory transport."""

    protocol: Any
    transport: StringTransport
    closed: bool = False

    @classmethod
    def open(cls, factory: IProtocolFactory, client: IPv4Address = CLIENT_ADDRESS,
             server: IPv4Address = SERVER_ADDRESS) -> MemoryConnection:
        protocol = factory.buildProtocol(client)
        if protocol is None:
            raise RuntimeError("the factory refused the connection")
        transport = StringTransport(hostAddress=server, peerAddress=client)
        protocol.makeConnection(transport)
        return cls(protocol, transport)

    def send(self, data: bytes) -> bytes:
        """Feed raw client bytes; return everything sent back so far."""
        self.protocol.dataReceived(data)
        return self.transport.value()

    def close(self) -> None:
        """The connection ends (the client left, or the exchange is over)."""
        if not self.closed:
            self.closed = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


@attrs.frozen
class WireResponse:
    """A response as it came over the wire: header names spelled as sent, the body unframed."""

    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


@attrs.define(eq=False)
class _Collector:
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)
    body: list[bytes] = attrs.Factory(list)
    status: bytes = b""
    head_done: bool = False
    complete: bool = False

    def on_status(self, status: bytes) -> None:
        self.status += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


def read_response(data: bytes, *, head: bool = False) -> WireResponse | None:
    """The first response in ``data``, or None unless it is all there. ``head``: the answer
    to a HEAD request, whose head is all of it."""
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    if head:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None
        data = data[:end + 4]
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        return None
    if not (collector.complete or (head and collector.head_done)):
        return None
    return WireResponse(parser.get_status_code(), collector.status, tuple(collector.headers),
                        b"".join(collector.body))
