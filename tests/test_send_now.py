"""``send_now`` on real loopback TCP connections: straight to the socket when nothing is
queued, through the transport (in order) otherwise."""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kongish.http.send_now import send_now

reactor: Any = _reactor


class Sink(Protocol):
    """Collects what arrives; ``until(n)`` fires once ``n`` bytes have."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.waiting: list[tuple[int, Deferred[bytes]]] = []
        self.made: Deferred[Sink] = Deferred()

    def connectionMade(self) -> None:
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for size, waiter in list(self.waiting):
            if len(self.received) >= size:
                self.waiting.remove((size, waiter))
                waiter.callback(bytes(self.received))

    def until(self, size: int) -> Deferred[bytes]:
        waiter: Deferred[bytes] = Deferred()
        self.waiting.append((size, waiter))
        self.dataReceived(b"")
        return waiter


class LoopbackTests(TestCase):
    async def connected(self) -> tuple[Sink, Any]:
        """(the client's end, the server end's TCP transport) of a loopback TCP connection."""
        server_end = Sink()
        port = reactor.listenTCP(0, ServerFactory.forProtocol(lambda: server_end), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client_end = Sink()
        factory = ClientFactory.forProtocol(lambda: client_end)
        connector = reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        self.addCleanup(connector.disconnect)
        await client_end.made
        await server_end.made
        return client_end, server_end.transport

    async def test_a_write_that_fits_goes_out_without_the_transports_queue(self) -> None:
        client, server = await self.connected()
        send_now(server, b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertEqual(server.dataBuffer, b"")
        self.assertEqual(server._tempDataBuffer, [])
        self.assertNotIn(server, reactor.getWriters())  # never registered for writing
        self.assertEqual(await client.until(19), b"HTTP/1.1 200 OK\r\n\r\n")

    async def test_what_the_socket_does_not_take_is_queued_in_order(self) -> None:
        client, server = await self.connected()
        big = bytes(range(256)) * 64 * 1024  # 16 MiB: more than a loopback socket buffer takes
        send_now(server, big)
        self.assertIn(server, reactor.getWriters())  # the rest waits in the transport
        send_now(server, b"after")  # queued behind it, not sent ahead
        self.assertEqual(await client.until(len(big) + 5), big + b"after")

    async def test_a_write_behind_queued_data_joins_the_queue(self) -> None:
        client, server = await self.connected()
        server.write(b"queued ")
        send_now(server, b"second")
        self.assertEqual(server._tempDataBuffer, [b"queued ", b"second"])
        self.assertEqual(await client.until(13), b"queued second")


class OtherTransportTests(SynchronousTestCase):
    def test_a_transport_that_is_not_tcp_gets_a_plain_write(self) -> None:
        transport = StringTransport()
        send_now(transport, b"head")
        send_now(transport, b"body")
        self.assertEqual(transport.value(), b"headbody")
