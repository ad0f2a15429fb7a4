"""kongish's HTTP/1.1 upstream client on memory transports: framing, keep-alive pools,
timeouts and the retry of a connection that died while idle."""
from __future__ import annotations

import io
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kongish.http.client import UpstreamClient, UpstreamFailure, request_head
from kongish.http.headers import CasedHeaders
from kongish.http.interfaces import (
    COMPLETE,
    BodyEnd,
    IBodyReceiver,
    IBodyStream,
    IUpstreamClient,
    IUpstreamResponse,
    UpstreamSettings,
)
from kongish.http.pool import KeepaliveSettings
from kongish.runloop.context import UpstreamRequest

SETTINGS = UpstreamSettings(connect_timeout=5, write_timeout=7, read_timeout=11, retries=2)


@implementer(IBodyReceiver)
class Collector:
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.end: BodyEnd | None = None
        self.stream: IBodyStream | None = None

    def body_started(self, stream: IBodyStream) -> None:
        self.stream = stream

    def body_data(self, data: bytes) -> None:
        self.data.append(data)

    def body_ended(self, end: BodyEnd) -> None:
        self.end = end


class Upstream:
    """The connections a client opened on a MemoryReactorClock, each on a StringTransport."""

    def __init__(self, test: SynchronousTestCase, keepalive: KeepaliveSettings | None = None) -> None:
        self.test = test
        self.reactor = MemoryReactorClock()
        self.client = UpstreamClient(self.reactor, keepalive or KeepaliveSettings())
        self.connections: list[tuple[Any, StringTransport]] = []

    def send(self, method: str = "GET", body: bytes = b"", path: str = "/p") -> Deferred[IUpstreamResponse]:
        request = UpstreamRequest(method, path, None, host="10.0.0.9", port=8080,
                                  headers=CasedHeaders({b"Host": [b"svc"], b"X-Case": [b"v"]}))
        return ensureDeferred(self.client.send(request, SETTINGS, body))

    def accept(self, transport: StringTransport | None = None) -> tuple[Any, StringTransport]:
        """Complete the connection the client is waiting for."""
        self.test.assertEqual(len(self.reactor.tcpClients), len(self.connections) + 1, "a new connection")
        _, _, factory, _, _ = self.reactor.tcpClients[len(self.connections)]
        protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", 8080))
        assert protocol is not None
        transport = transport or StringTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return protocol, transport

    def answer(self, connection: tuple[Any, StringTransport], data: bytes) -> bytes:
        """Feed ``data`` as the upstream's answer; the request it got."""
        protocol, transport = connection
        request = transport.value()
        transport.clear()
        protocol.dataReceived(data)
        return request

    def close(self, connection: tuple[Any, StringTransport]) -> None:
        connection[0].connectionLost(Failure(ConnectionDone()))


class FullTransport(StringTransport):
    """A transport whose buffer fills at 128 KiB, until ``drain``."""

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) >= 131072 and self.producer is not None and self.producerState == "producing":
            self.producerState = "held"
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.producerState = "drained"
        assert self.producer is not None
        self.producer.resumeProducing()


def whole(test: SynchronousTestCase, response: IUpstreamResponse) -> tuple[bytes, BodyEnd | None]:
    collector = Collector()
    response.deliver_body(collector)
    return b"".join(collector.data), collector.end


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Upstream-Case: a\r\n\r\nhi"


class FramingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.upstream = Upstream(self)

    def test_provides_the_interfaces(self) -> None:
        self.assertTrue(verifyObject(IUpstreamClient, self.upstream.client))
        pending = self.upstream.send()
        self.upstream.answer(self.upstream.accept(), OK)
        response = self.successResultOf(pending)
        self.assertTrue(verifyObject(IUpstreamResponse, response))

    def test_the_request_head_keeps_the_spelling(self) -> None:
        pending = self.upstream.send("POST", b"abc", path="/a b")
        request = self.upstream.answer(self.upstream.accept(), OK)
        self.assertEqual(request,
                         b"POST /a%20b HTTP/1.1\r\nHost: svc\r\nX-Case: v\r\nContent-Length: 3\r\n\r\nabc")
        response = self.successResultOf(pending)
        self.assertEqual((response.status, response.reason, response.content_length), (200, b"OK", 2))
        self.assertEqual(list(response.headers.getAllRawHeaders()), [(b"X-Upstream-Case", [b"a"])])
        self.assertEqual(whole(self, response), (b"hi", COMPLETE))

    def test_an_informational_head_is_skipped(self) -> None:
        pending = self.upstream.send()
        self.upstream.answer(self.upstream.accept(), b"HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n" + OK)
        response = self.successResultOf(pending)
        self.assertEqual(response.status, 200)
        self.assertFalse(response.headers.hasHeader(b"x-early"))

    def test_chunked_and_close_delimited_bodies(self) -> None:
        pending = self.upstream.send()
        connection = self.upstream.accept()
        self.upstream.answer(connection,
                             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        response = self.successResultOf(pending)
        self.assertIsNone(response.content_length)
        self.assertEqual(whole(self, response), (b"abc", COMPLETE))
        pending = self.upstream.send()
        self.upstream.answer(connection, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        response = self.successResultOf(pending)
        collector = Collector()
        response.deliver_body(collector)
        self.assertIsNone(collector.end)
        self.upstream.close(connection)
        self.assertEqual((b"".join(collector.data), collector.end), (b"until the end", COMPLETE))

    def test_a_cut_body_is_truncated(self) -> None:
        pending = self.upstream.send()
        connection = self.upstream.accept()
        self.upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        collector = Collector()
        self.successResultOf(pending).deliver_body(collector)
        connection[0].connectionLost(Failure(ConnectionLost()))
        assert collector.end is not None
        self.assertEqual((collector.data, collector.end.complete, collector.end.truncated),
                         ([b"abc"], False, True))

    def test_head_has_a_length_and_no_body(self) -> None:
        pending = self.upstream.send("HEAD")
        connection = self.upstream.accept()
        self.upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        response = self.successResultOf(pending)
        self.assertEqual(response.content_length, 1234)
        self.assertEqual(whole(self, response), (b"", COMPLETE))
        pending = self.upstream.send()  # the connection is reused: nothing of a body was awaited
        self.upstream.answer(connection, OK)
        self.assertEqual(whole(self, self.successResultOf(pending)), (b"hi", COMPLETE))
        self.assertEqual(len(self.upstream.connections), 1)

    def test_a_body_after_a_head_response_closes_the_connection(self) -> None:
        pending = self.upstream.send("HEAD")
        connection = self.upstream.accept()
        self.upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody")
        response = self.successResultOf(pending)
        self.assertEqual((response.content_length, whole(self, response)), (4, (b"", COMPLETE)))
        self.assertTrue(connection[1].disconnecting, "what follows the head is not HTTP: not reused")
        self.upstream.close(connection)
        self.assertEqual(self.upstream.client.pools.idle_count(), 0)

    def test_a_smuggling_response_is_a_502(self) -> None:
        pending = self.upstream.send()
        self.upstream.answer(self.upstream.accept(),
                             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi")
        for _ in range(2):  # GET is retried
            self.upstream.answer(self.upstream.accept(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                                         b"Transfer-Encoding: chunked\r\n\r\n")
        self.assertEqual(self.failureResultOf(pending, UpstreamFailure).value.status, 502)

    def test_a_paused_body_stops_reading(self) -> None:
        pending = self.upstream.send()
        connection = self.upstream.accept()
        self.upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        collector = Collector()
        self.successResultOf(pending).deliver_body(collector)
        assert collector.stream is not None
        collector.stream.pause()
        self.assertEqual(connection[1].producerState, "paused")
        self.upstream.answer(connection, b"def")
        self.assertEqual(collector.data, [b"abc"])
        collector.stream.resume()
        self.assertEqual((collector.data, collector.end, connection[1].producerState),
                         ([b"abc", b"def"], COMPLETE, "producing"))


class BytewiseProperties(SynchronousTestCase):
    """A response read in any pieces is the same response."""

    RESPONSE = (b"HTTP/1.1 201 Created\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nX-B: two\r\n\r\n"
                b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n")

    @given(st.sets(st.integers(1, len(RESPONSE) - 1)))
    def test_any_split(self, cuts: set[int]) -> None:
        upstream = Upstream(self)
        pending = upstream.send()
        connection = upstream.accept()
        bounds = [0, *sorted(cuts), len(self.RESPONSE)]
        collector = Collector()
        responses: list[IUpstreamResponse] = []
        pending.addCallback(responses.append)
        for start, end in zip(bounds, bounds[1:], strict=False):
            connection[0].dataReceived(self.RESPONSE[start:end])
            if responses and collector.stream is None:
                responses[0].deliver_body(collector)
        (response,) = responses
        self.assertEqual((response.status, list(response.headers.getAllRawHeaders())),
                         (201, [(b"X-A", [b"1"]), (b"X-B", [b"two"])]))
        self.assertEqual((b"".join(collector.data), collector.end), (b"wikipedia", COMPLETE))

    def test_the_response_is_handed_on_once_its_bytes_are_parsed(self) -> None:
        """A body that came in the head's read is whole when the response is handed on
        (so its relay needs no read timer); one still coming is held until delivered."""
        upstream = Upstream(self)
        pending = upstream.send()
        connection = upstream.accept()
        seen: list[tuple[bytes, BodyEnd | None]] = []

        def handed_on(response: IUpstreamResponse) -> None:
            collector = Collector()
            response.deliver_body(collector)
            seen.append((b"".join(collector.data), collector.end))
        pending.addCallback(handed_on)
        upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nwikipedia")
        self.assertEqual(seen, [(b"wikipedia", COMPLETE)])
        later = upstream.send()
        later.addCallback(handed_on)
        upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nwiki")
        self.assertEqual(seen[1], (b"wiki", None))

    def test_bytes_after_the_response_are_dropped_with_the_connection(self) -> None:
        """As nginx drops what follows a response's end: never parsed into its headers, and the
        connection never reused."""
        for answer in (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                       b"HTTP/1.1 200 OK\r\nX-Evil: 1\r\nSet-Cookie: a=b\r\n",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                       b"HTTP/1.1 200 OK\r\nX-Evil: 1\r\nContent-Length: 0\r\n\r\n",
                       b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nX-Evil: 1\r\n"):
            upstream = Upstream(self)
            pending = upstream.send()
            connection = upstream.accept()
            upstream.answer(connection, answer)
            response = self.successResultOf(pending)
            self.assertEqual(response.reason, answer.split(b"\r\n")[0][13:])
            self.assertFalse(response.headers.hasHeader(b"x-evil"))
            self.assertEqual(whole(self, response)[1], COMPLETE)
            self.assertTrue(connection[1].disconnecting)
            self.assertEqual(upstream.client.pools.idle_count(), 0)


class BrokenBodyTests(SynchronousTestCase):
    """A response whose chunked body breaks is handed on with its head, its body cut: the
    upstream answered, so there is no retry and no 502 (nginx sends its head to the header
    filters before it parses the body, and an invalid chunk ends the request with NGX_ERROR,
    closing the client connection; see tests.test_e2e_upstream_slow_or_broken)."""

    BROKEN = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\nzz\r\nnot a chunk"

    def assert_cut(self, upstream: Upstream, pending: Deferred[IUpstreamResponse],
                   connection: tuple[Any, StringTransport], data: bytes) -> None:
        response = self.successResultOf(pending)
        self.assertEqual((response.status, response.headers.getRawHeaders(b"x-up")), (200, [b"1"]))
        body, end = whole(self, response)
        assert end is not None
        self.assertEqual((body, end.complete, end.truncated), (data, False, True))
        self.assertIn("chunk size", end.reason)
        self.assertTrue(connection[1].disconnecting)
        self.assertEqual((len(upstream.reactor.tcpClients), upstream.client.pools.idle_count()), (1, 0))
        self.assertEqual(upstream.reactor.getDelayedCalls(), [])

    def test_broken_in_the_heads_read(self) -> None:
        upstream = Upstream(self)
        pending = upstream.send()
        connection = upstream.accept()
        upstream.answer(connection, self.BROKEN)
        self.assert_cut(upstream, pending, connection, b"")

    def test_broken_after_a_chunk(self) -> None:
        upstream = Upstream(self)
        pending = upstream.send()
        connection = upstream.accept()
        upstream.answer(connection, self.BROKEN.replace(b"\r\n\r\n", b"\r\n\r\n2\r\nok\r\n"))
        self.assert_cut(upstream, pending, connection, b"ok")

    def test_broken_in_a_later_read(self) -> None:
        upstream = Upstream(self)
        pending = upstream.send()
        connection = upstream.accept()
        head, _, body = self.BROKEN.partition(b"\r\n\r\n")
        upstream.answer(connection, head + b"\r\n\r\n")
        collector = Collector()
        self.successResultOf(pending).deliver_body(collector)
        self.assertIsNone(collector.end)
        upstream.answer(connection, body)
        assert collector.end is not None
        self.assertEqual((collector.data, collector.end.complete, collector.end.truncated), ([], False, True))
        self.assertTrue(connection[1].disconnecting)


class KeepaliveTests(SynchronousTestCase):
    def exchange(self, upstream: Upstream, connection: tuple[Any, StringTransport] | None = None) -> Any:
        pending = upstream.send()
        connection = connection or upstream.accept()
        upstream.answer(connection, OK)
        self.assertEqual(whole(self, self.successResultOf(pending)), (b"hi", COMPLETE))
        return connection

    def test_a_connection_is_reused_and_expires_idle(self) -> None:
        upstream = Upstream(self, KeepaliveSettings(idle_timeout=60))
        connection = self.exchange(upstream)
        self.exchange(upstream, connection)
        self.assertEqual((len(upstream.connections), upstream.client.pools.idle_count()), (1, 1))
        upstream.reactor.advance(59)
        self.assertFalse(connection[1].disconnecting)
        upstream.reactor.advance(1)
        self.assertTrue(connection[1].disconnecting)
        upstream.close(connection)
        self.assertEqual(upstream.client.pools.idle_count(), 0)
        self.exchange(upstream)
        self.assertEqual(len(upstream.connections), 2)

    def test_each_return_to_the_pool_restarts_the_idle_time(self) -> None:
        upstream = Upstream(self, KeepaliveSettings(idle_timeout=60))
        connection = self.exchange(upstream)
        upstream.reactor.advance(30)
        self.exchange(upstream, connection)  # taken after 30 s idle, back at once
        upstream.reactor.advance(59)
        self.assertFalse(connection[1].disconnecting)
        upstream.reactor.advance(1)
        self.assertTrue(connection[1].disconnecting)
        self.assertEqual([call for call in upstream.reactor.getDelayedCalls() if call.active()], [])

    def test_max_requests_and_no_pool(self) -> None:
        upstream = Upstream(self, KeepaliveSettings(max_requests=2))
        connection = self.exchange(upstream)
        self.exchange(upstream, connection)
        self.assertTrue(connection[1].disconnecting)
        self.exchange(upstream)
        self.assertEqual(len(upstream.connections), 2)
        unpooled = Upstream(self, KeepaliveSettings(pool_size=0))
        connection = self.exchange(unpooled)
        self.assertTrue(connection[1].disconnecting)
        self.assertEqual(unpooled.client.pools.idle_count(), 0)

    def test_connection_close_is_honoured(self) -> None:
        upstream = Upstream(self)
        pending = upstream.send()
        connection = upstream.accept()
        upstream.answer(connection, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.successResultOf(pending)
        self.assertTrue(connection[1].disconnecting)
        self.assertEqual(upstream.client.pools.idle_count(), 0)

    def test_an_idle_connection_that_died_is_not_a_try(self) -> None:
        """The upstream closed a kept-alive connection as the next request went out: a GET goes
        again on a new connection, whatever ``retries`` says; a POST that reached it does not."""
        upstream = Upstream(self)
        connection = self.exchange(upstream)
        pending = upstream.send()
        self.assertIn(b"GET /p HTTP/1.1", connection[1].value())
        upstream.close(connection)
        fresh = upstream.accept()
        upstream.answer(fresh, OK)
        self.assertEqual(whole(self, self.successResultOf(pending)), (b"hi", COMPLETE))
        connection = fresh
        pending = upstream.send("POST", b"x")
        upstream.close(connection)
        self.assertEqual(self.failureResultOf(pending, UpstreamFailure).value.status, 502)
        self.assertEqual(len(upstream.connections), 2)


class TimeoutTests(SynchronousTestCase):
    def test_read_timeout_then_retry(self) -> None:
        upstream = Upstream(self)
        pending = upstream.send()
        connection = upstream.accept()
        upstream.reactor.advance(10.9)
        self.assertNoResult(pending)
        upstream.reactor.advance(0.1)
        self.assertTrue(connection[1].disconnecting)
        upstream.close(connection)
        upstream.answer(upstream.accept(), OK)  # the second try
        self.assertEqual(self.successResultOf(pending).status, 200)

    def test_write_timeout_while_the_upstream_takes_nothing(self) -> None:
        upstream = Upstream(self)
        pending = upstream.send("PUT", b"x" * 300_000)
        full = FullTransport()
        _, transport = upstream.accept(full)
        self.assertLess(len(transport.value()), 300_000)  # held back
        upstream.reactor.advance(6.9)
        self.assertFalse(transport.disconnecting)
        full.drain()  # it takes the rest: now the read timeout runs
        self.assertTrue(transport.value().endswith(b"x" * 1000))
        upstream.reactor.advance(10.9)
        self.assertFalse(transport.disconnecting)
        upstream.reactor.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(pending)  # PUT is idempotent: tried again
        self.assertEqual(len(upstream.reactor.tcpClients), 2)
        upstream.close(upstream.connections[0])
        _, held = upstream.accept(FullTransport())  # the second try is held back for good
        upstream.reactor.advance(6.9)
        self.assertFalse(held.disconnecting)
        upstream.reactor.advance(0.1)  # the write timeout
        self.assertTrue(held.disconnecting)

    def test_an_answer_before_the_body_was_sent_ends_the_connection(self) -> None:
        """An upstream may answer (413, say) while the request body is still going out: the
        answer is the response, the rest is not sent, and the connection is not reused."""
        upstream = Upstream(self)
        pending = upstream.send("PUT", b"x" * 300_000)
        full = FullTransport()
        connection = upstream.accept(full)
        upstream.answer(connection, b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.successResultOf(pending).status, 413)
        self.assertTrue(full.disconnecting)
        full.drain()
        self.assertEqual(full.value(), b"", "nothing more of the body is written")
        self.assertEqual(upstream.client.pools.idle_count(), 0)

    def test_an_early_answers_body_is_not_cut_when_the_request_body_is_sent(self) -> None:
        """Once the head came, the read timeout is over (the relay times the body): finishing
        the request body later must not start it again."""
        upstream = Upstream(self)
        pending = upstream.send("POST", b"x" * 300_000)
        full = FullTransport()
        connection = upstream.accept(full)
        connection[0].dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        collector = Collector()
        self.successResultOf(pending).deliver_body(collector)
        while full.producerState == "held":
            full.clear()
            full.drain()
        for _ in range(3 * int(SETTINGS.read_timeout)):  # a chunk a second, for long past the timeout
            upstream.reactor.advance(1)
            connection[0].dataReceived(b"1\r\nb\r\n")
        self.assertFalse(full.disconnecting)
        connection[0].dataReceived(b"0\r\n\r\n")
        self.assertEqual((len(collector.data), collector.end), (1 + 3 * int(SETTINGS.read_timeout), COMPLETE))

    def test_a_head_that_trickles_in_must_all_come_within_the_read_timeout(self) -> None:
        """nginx arms proxy_read_timeout once the request is sent and does not arm it again while
        the head arrives (ngx_http_upstream_process_header: its ``ngx_add_timer`` on a partial
        head is ``#if 0``): a head sent a byte a second is cut at the read timeout, however
        short each wait. Its reads cost no reactor call."""
        upstream = Upstream(self, KeepaliveSettings(pool_size=0))
        pending = upstream.send()
        head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"s" * 30 + b"\r\nContent-Length: 2\r\n\r\nok"
        for _ in range(1 + SETTINGS.retries):
            protocol, transport = upstream.accept()
            (timer,) = upstream.reactor.getDelayedCalls()
            for index in range(int(SETTINGS.read_timeout) - 1):  # each byte a second after the last
                upstream.reactor.advance(1)
                protocol.dataReceived(head[index:index + 1])
                self.assertEqual(upstream.reactor.getDelayedCalls(), [timer])
            upstream.reactor.advance(0.9)
            self.assertFalse(transport.disconnecting)
            upstream.reactor.advance(0.1)
            self.assertTrue(transport.disconnecting)
            protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.failureResultOf(pending, UpstreamFailure).value.status, 504)

    def test_cancel_aborts(self) -> None:
        upstream = Upstream(self)
        pending = upstream.send()
        _, transport = upstream.accept()
        pending.cancel()
        self.assertTrue(transport.disconnecting)
        self.failureResultOf(pending)


class RequestHeadTests(SynchronousTestCase):
    def test_host_is_added_when_missing(self) -> None:
        request = UpstreamRequest("GET", "/", "a=1", host="::1", port=8443, scheme="https", headers=Headers())
        self.assertEqual(request_head(request, 0), b"GET /?a=1 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n")
        request = UpstreamRequest("PUT", "/", None, host="svc", port=80,
                                  headers=Headers({b"content-length": [b"9"]}))
        self.assertEqual(request_head(request, 0),
                         b"PUT / HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n\r\n")

    def test_a_file_body_is_sent_from_its_start(self) -> None:
        upstream = Upstream(self)
        body = io.BytesIO(b"file body")
        body.seek(4)
        request = UpstreamRequest("POST", "/", None, host="10.0.0.9", port=8080, headers=Headers())
        pending = ensureDeferred(upstream.client.send(request, SETTINGS, body))
        sent = upstream.answer(upstream.accept(), OK)
        self.assertTrue(sent.endswith(b"Content-Length: 9\r\n\r\nfile body"), sent)
        self.successResultOf(pending)
