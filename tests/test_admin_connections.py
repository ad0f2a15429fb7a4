"""AdminConnections: a stopping node closes Admin API connections once they have answered."""
from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from kongish.admin.connections import AdminConnections


class _Slow(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list = []

    def render_GET(self, request):
        self.waiting.append(request)
        return NOT_DONE_YET


class AdminConnectionsTests(SynchronousTestCase):
    def _connect(self, admin: AdminConnections) -> tuple[Any, StringTransport]:
        # Any: the tests drive the protocol by hand, ending it with a None reason.
        protocol: Any = admin.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_idle_closes_now_busy_after_its_answer_then_the_stop_fires(self) -> None:
        resource, clock = _Slow(), Clock()
        admin = AdminConnections(Site(resource), clock)
        idle, idle_transport = self._connect(admin)
        busy, busy_transport = self._connect(admin)
        busy.dataReceived(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
        stopped = admin.close(10)
        self.assertTrue(idle_transport.disconnecting)
        self.assertFalse(busy_transport.disconnecting)
        idle.connectionLost(None)
        resource.waiting[0].write(b"ok")
        resource.waiting[0].finish()
        self.assertTrue(busy_transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"\r\nConnection: close\r\n", busy_transport.value())
        self.assertTrue(busy_transport.disconnecting)
        self.assertNoResult(stopped)
        busy.connectionLost(None)
        self.successResultOf(stopped)

    def test_a_connection_still_open_at_the_deadline_is_cut(self) -> None:
        resource, clock = _Slow(), Clock()
        admin = AdminConnections(Site(resource), clock)
        busy, transport = self._connect(admin)
        busy.dataReceived(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
        stopped = admin.close(10)
        clock.advance(10)
        self.assertTrue(transport.disconnecting)
        busy.connectionLost(None)
        self.successResultOf(stopped)

    def test_a_request_still_arriving_is_answered_with_close(self) -> None:
        resource = _Slow()
        admin = AdminConnections(Site(resource), Clock())
        arriving, transport = self._connect(admin)
        arriving.dataReceived(b"GET /status HTTP/1.1\r\nHost: a\r\n")
        stopped = admin.close(10)
        arriving.dataReceived(b"\r\n")
        resource.waiting[0].finish()
        head = transport.value().split(b"\r\n\r\n")[0].split(b"\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertTrue(transport.disconnecting)
        arriving.connectionLost(None)
        self.successResultOf(stopped)

