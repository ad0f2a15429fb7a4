"""An upstream whose response head comes slowly, or whose body breaks in the head's read,
through a gateway on loopback sockets: the client sees what nginx would give it.

nginx arms ``proxy_read_timeout`` when the request is sent and does not arm it again for
the reads of the response head (``ngx_http_upstream_process_header``, where the
``ngx_add_timer`` on a partial head is ``#if 0``), so a head that trickles in must all come
within the read timeout. A chunked body that breaks after its head was parsed ends the
request with ``NGX_ERROR`` (``ngx_event_pipe`` aborts on the input filter's error, or
``ngx_http_upstream_send_response`` finalizes on it unbuffered): the head had gone to the
header filters (``u->header_sent``), so there is no 502 page and no next upstream, and the
client connection is closed with the head still held by the write filter (under
``postpone_output``): the client gets nothing.
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.harness import deferred, eventually, start_gateway, start_upstream


class _Scripted(Protocol):
    """Answers a request with the factory's ``first`` bytes at once, then ``trickle`` a byte a tick."""

    factory: _ScriptedFactory

    def __init__(self) -> None:
        self.received = b""
        self.left = b""
        self.ticks: LoopingCall | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" not in self.received or self.ticks is not None:  # one bodiless request
            return
        assert self.transport is not None
        self.factory.requests += 1
        self.transport.write(self.factory.first)
        self.left = self.factory.trickle
        self.ticks = LoopingCall(self._tick)
        if self.left:
            self.ticks.start(self.factory.tick, now=False)

    def _tick(self) -> None:
        assert self.transport is not None
        byte, self.left = self.left[:1], self.left[1:]
        self.transport.write(byte)
        if not self.left:
            self.factory.finished += 1
            assert self.ticks is not None
            self.ticks.stop()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.lost += 1
        if self.ticks is not None and self.ticks.running:
            self.ticks.stop()


class _ScriptedFactory(Factory["_Scripted"]):
    protocol = _Scripted

    def __init__(self, first: bytes, trickle: bytes = b"", tick: float = 0.1) -> None:
        self.first, self.trickle, self.tick = first, trickle, tick
        self.requests = self.finished = self.lost = 0


async def _scripted(case: TestCase, first: bytes, trickle: bytes = b"") -> tuple[_ScriptedFactory, str]:
    factory = _ScriptedFactory(first, trickle)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    case.addCleanup(port.stopListening)
    return factory, f"http://127.0.0.1:{port.getHost().port}"


class SlowOrBrokenUpstreamTests(TestCase):
    @deferred
    async def test_a_head_that_trickles_in_is_cut_at_the_read_timeout(self) -> None:
        """A head byte every 0.1 s, each well within the 0.5 s read timeout, for 6 s in all:
        a 504, whatever the machine's load (a late tick only makes the head later)."""
        factory, url = await _scripted(self, b"HTTP/1.1 200 OK\r\n",
                                       b"X-Slow: " + b"s" * 30 + b"\r\nContent-Length: 2\r\n\r\nok")
        gateway = await start_gateway(self)
        await gateway.expose(url, read_timeout=500)
        status, body, headers = await gateway.get("/p")
        self.assertEqual((status, body.splitlines()[0]), (504, b"The upstream server is timing out"), body)
        self.assertFalse(headers.hasHeader(b"x-slow"))
        self.assertEqual((factory.requests, factory.finished), (1, 0), "cut before its head was whole")
        await eventually(lambda: factory.lost == 1)

    @deferred
    async def test_a_body_broken_in_the_heads_read_closes_the_client_connection(self) -> None:
        factory, url = await _scripted(
            self, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\nzz\r\nnot a chunk")
        healthy = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(url, path="/broken", retries=2)
        await gateway.expose(healthy.url, path="/healthy")
        client = await gateway.connect()
        client.transport.write(b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(await client.closed, b"", "nginx closes it with the head unsent")
        self.assertEqual(factory.requests, 1, "the upstream answered: no next upstream")
        await eventually(lambda: factory.lost == 1)
        status, _, _ = await gateway.get("/healthy/")
        self.assertEqual(status, 200)
