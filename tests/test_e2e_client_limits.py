"""Clients that hold connections without finishing requests, through a real ``twist kongish``
(issue 9, item 8): nginx's header and body timeouts, a connection cap that refuses before
descriptors run out while the Admin API stays reachable, and nginx's listen backlog.
"""
from __future__ import annotations

import os
import signal
import socket

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread

from kongish.http.descriptors import raise_descriptor_limit
from tests.harness import POOL, RawClient, deferred, start_upstream
from tests.test_e2e_hostile_lua import _Gateway

#: Long enough that a trickle still going when the gateway cuts it shows the cut came from the timeout.
_TRICKLE_SECONDS = 60


class ClientLimitTests(_Gateway):
    async def _connect(self) -> RawClient:
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        self.addCleanup(client.transport.abortConnection)
        return client

    def _trickle(self, client: RawClient, data: bytes, every: float) -> LoopingCall:
        """Send ``data`` one byte per ``every`` seconds, until it is sent or the connection closes."""
        remaining = iter(data)

        def step() -> None:
            byte = next(remaining, None)
            if byte is None or client.closed.called:
                sender.stop()
            else:
                client.transport.write(bytes([byte]))
        sender = LoopingCall(step)
        sender.start(every)
        self.addCleanup(lambda: sender.stop() if sender.running else None)
        return sender

    @deferred
    async def test_heads_and_bodies_sent_slowly_are_cut_at_their_timeouts(self) -> None:
        await self._start(nginx_http_client_header_timeout="1s", nginx_http_client_body_timeout="1s")
        every = 0.25
        slow = b"a" * int(_TRICKLE_SECONDS / every)
        head = b"GET /victim HTTP/1.1\r\nHost: x\r\nX-Slow: " + slow + b"\r\n\r\n"
        heads = [await self._connect() for _ in range(40)]
        for client in heads:
            self._trickle(client, head, every)
        bodies = [await self._connect() for _ in range(10)]
        for client in bodies:  # a whole head, then one body byte every 2 s: each pause outlasts the timeout
            client.transport.write(b"POST /victim HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            self._trickle(client, b"b" * 100, 2)
        await self._healthy("slow clients connected")
        started = reactor.seconds()
        answers = await gatherResults([client.closed for client in heads + bodies])
        self.assertLess(reactor.seconds() - started, _TRICKLE_SECONDS / 2,
                        "cut by the timeouts, not by the end of the trickle")
        self.assertEqual(set(answers), {b""}, "nothing is sent to a timed-out client, as nginx sends nothing")
        def timed_out() -> int:
            return sum(1 for line in self.process.output.splitlines() if b" 408 0 " in line)
        await self._until(lambda: timed_out() >= 50, "fifty 408s logged")
        self.assertEqual(timed_out(), 50)
        await self._healthy("slow clients cut")

    @deferred
    async def test_connections_past_the_cap_are_refused_and_the_admin_api_still_answers(self) -> None:
        # 80 worker connections: 40 clients, 10 of them kept for the Admin API
        await self._start(nginx_events_worker_connections="80")
        admitted: list[RawClient] = []
        refused = None
        for _ in range(40):
            client = await self._connect()
            client.transport.write(b"GET /victim HTTP/1.1\r\nHost: x\r\n\r\n")
            answered = client.received(b"victim ok")
            answered.addErrback(lambda _: None)
            await _first(answered, client.closed)
            if client.closed.called:
                refused = client
                break
            admitted.append(client)
        assert refused is not None, "the cap never refused a connection"
        self.assertEqual(refused.data, b"")
        self.assertLessEqual(len(admitted), 30)
        self.assertGreaterEqual(len(admitted), 20)  # those the Admin API's connections took, at most
        await self._until(lambda: b"client connections are not enough" in self.process.output, "cap logged")
        status, _ = await self._admin_status()
        self.assertEqual(status, 200)
        for client in admitted[:5]:
            client.transport.loseConnection()
            await client.closed
        # the gateway sees those closes as they arrive: retry until it has, within a bound
        for _ in range(100):
            if (await self._get("/victim"))[0] == 200:
                break
            await deferLater(reactor, 0.1, lambda: None)
        else:
            self.fail("no connection was admitted again after five closed")

    async def _admin_status(self) -> tuple[int, bytes]:
        response = await treq.get(f"http://127.0.0.1:{self.admin}/status".encode(), pool=POOL)
        return response.code, await response.content()

    @deferred
    async def test_a_burst_of_connects_waits_in_nginx_backlog(self) -> None:
        """With the process stopped, the kernel queues connects up to the listen backlog:
        nginx's 511 (Twisted's default 50 made the rest wait for SYN retries)."""
        await self._start()
        raise_descriptor_limit(None)  # this process opens a backlog's worth of sockets
        with open("/proc/sys/net/core/somaxconn") as somaxconn:
            expected = min(511, int(somaxconn.read()))
        assert self.process.transport is not None
        pid = self.process.transport.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            connected = await deferToThread(_connect_burst, self.proxy, expected)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertEqual(connected, expected)
        await self._healthy("a burst of connects")


async def _first(*waits: Deferred) -> None:
    """Until one of ``waits`` fires; their results stay theirs."""
    await DeferredList(list(waits), fireOnOneCallback=True, consumeErrors=True)


def _connect_burst(port: int, count: int) -> int:
    """Blocking connects with a timeout shorter than the first SYN retry: those that finish
    were queued by the kernel at once."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.settimeout(0.8)
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                return len(sockets) - 1
        return count
    finally:
        for sock in sockets:
            sock.close()


class ProxiedSendTimeoutTests(_Gateway):
    @deferred
    async def test_a_client_that_stops_reading_a_proxied_body_is_cut_and_frees_the_upstream(self) -> None:
        upstream = await start_upstream(self)
        await self._start(nginx_http_send_timeout="1s")
        base = f"http://127.0.0.1:{self.admin}"
        for path, data in [("/services", {"name": "stream", "url": upstream.url}),
                           ("/services/stream/routes", {"name": "stream", "paths[]": "/stream"})]:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        self.addCleanup(client.transport.abortConnection)
        IPushProducer(client.transport).pauseProducing()  # never reads
        client.transport.write(b"GET /stream/produce/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (200 * 1024 * 1024))
        # the upstream is held back by the client, then let go when the gateway cuts the client
        await self._until(lambda: upstream.resource.lost == ["/produce/%d" % (200 * 1024 * 1024)],
                          "the upstream's request ended early")
        self.assertLess(upstream.resource.production["sent"], 200 * 1024 * 1024)
        await self._healthy("a client that stopped reading")
