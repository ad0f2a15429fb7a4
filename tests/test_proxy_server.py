"""kongish's own HTTP/1.1 server for the proxy listener: framing, pipelining, limits, errors."""
from __future__ import annotations

import io
import os
import string
from collections.abc import Callable
from typing import cast

import attrs
import httptools
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface.verify import verifyObject

from kongish.http.access_log import combined
from kongish.http.downstream import DownstreamRequest
from kongish.http.headers import http_date
from kongish.http.interfaces import IProxiedRequest
from kongish.http.server import FIRST_REQUEST_GRACE, MAX_HEAD, MAX_LINE, ProxyConnection, ProxyServerFactory
from kongish.runloop.error_pages import KongRefusals
from kongish.runloop.headers import SERVER_TOKEN
from tests.harness import RawClient, deferred, start_gateway, start_upstream

Answer = Callable[[DownstreamRequest], None]


def hello(request: DownstreamRequest) -> None:
    """A complete answer with a Content-Length, given at once."""
    request.responseHeaders.setRawHeaders(b"content-length", [b"5"])
    request.write(b"hello")
    request.finish()


def write_and_finish(*chunks: bytes, code: int = 200) -> Answer:
    """An answer of ``chunks`` without a Content-Length, given at once."""
    def answer(request: DownstreamRequest) -> None:
        request.setResponseCode(code, b"Whatever")
        for chunk in chunks:
            request.write(chunk)
        request.finish()
    return answer


class Recorder:
    """Stands in for ProxyResource: records each request and its body, answers with ``answer``.

    With ``answer`` None the request stays open, for the test to answer later.
    """

    def __init__(self, answer: Answer | None = hello) -> None:
        self.answer = answer
        self.requests: list[DownstreamRequest] = []
        self.bodies: list[bytes] = []
        self.positions: list[int] = []

    def render(self, request: DownstreamRequest) -> None:
        self.requests.append(request)
        self.positions.append(request.content.tell())
        self.bodies.append(request.content.read())
        if self.answer is not None:
            self.answer(request)


@attrs.define
class Response:
    status: int
    headers: dict[bytes, list[bytes]]
    body: bytes = b""
    complete: bool = False


class _ResponseReader:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.responses: list[Response] = []

    def on_message_begin(self) -> None:
        self.responses.append(Response(0, {}))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.responses[-1].headers.setdefault(name.lower(), []).append(value)

    def on_headers_complete(self) -> None:
        self.responses[-1].status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.responses[-1].body += body

    def on_message_complete(self) -> None:
        self.responses[-1].complete = True


@attrs.define
class Client:
    """A ProxyConnection on a StringTransport, with a clock for its idle timeout."""

    resource: Recorder
    connection: ProxyConnection
    transport: StringTransport
    clock: MemoryReactorClock
    logged: list[DownstreamRequest]

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.connection.dataReceived(chunk)

    def responses(self) -> list[Response]:
        """Every response written so far (not for answers to HEAD, which a reader cannot frame)."""
        reader = _ResponseReader()
        reader.parser.feed_data(self.transport.value())
        return reader.responses

    def lose(self) -> Failure:
        reason = Failure(ConnectionLost("client went away"))
        self.connection.connectionLost(reason)
        return reason


def connect(resource: Recorder, timeout: float | None = None, max_body_size: int = 0,
            header_timeout: float = 60, body_timeout: float = 60) -> Client:
    clock = MemoryReactorClock()
    factory = ProxyServerFactory(resource, KongRefusals(), SERVER_TOKEN, max_body_size, timeout=timeout,
                                 header_timeout=header_timeout, body_timeout=body_timeout, reactor=clock)
    logged: list[DownstreamRequest] = []
    # HTTPFactory.log is typed for twisted.web Requests; this factory logs DownstreamRequests.
    factory.log = logged.append  # type: ignore[method-assign,assignment]
    # ProxyServerFactory.protocol is ProxyConnection.
    connection = cast(ProxyConnection, factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000)))
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8000),
                                peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    connection.makeConnection(transport)
    return Client(resource, connection, transport, clock, logged)


def get(path: bytes = b"/", *headers: bytes, version: bytes = b"1.1", method: bytes = b"GET") -> bytes:
    return b"%s %s HTTP/%s\r\nHost: x.test\r\n%s\r\n" % (
        method, path, version, b"".join(header + b"\r\n" for header in headers))


def post(body: bytes, *headers: bytes, path: bytes = b"/up") -> bytes:
    return get(path, b"Content-Length: %d" % len(body), *headers, method=b"POST") + body


class KeepAliveTests(SynchronousTestCase):
    def test_several_requests_on_one_connection(self) -> None:
        client = connect(Recorder())
        for path in (b"/a", b"/b", b"/c"):
            client.send(get(path))
        self.assertEqual([request.uri for request in client.resource.requests], [b"/a", b"/b", b"/c"])
        self.assertEqual([(r.status, r.body, r.complete) for r in client.responses()],
                         [(200, b"hello", True)] * 3)
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(client.logged, client.resource.requests)

    def test_pipelined_requests_wait_for_the_one_before(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get(b"/1") + get(b"/2") + get(b"/3"))
        requests = client.resource.requests
        self.assertEqual([request.uri for request in requests], [b"/1"])
        self.assertEqual(client.transport.producerState, "paused")
        write_and_finish(b"one")(requests[0])
        self.assertEqual([request.uri for request in requests], [b"/1", b"/2"])
        self.assertEqual(client.transport.producerState, "paused")  # /3 still waits
        write_and_finish(b"two")(requests[1])
        self.assertEqual(client.transport.producerState, "producing")
        write_and_finish(b"three")(requests[2])
        self.assertEqual([r.body for r in client.responses()], [b"one", b"two", b"three"])
        self.assertEqual(client.logged, requests)

    def test_many_pipelined_requests_answered_at_once(self) -> None:
        """Answers given within render must not nest: thousands of requests fit in one read."""
        client = connect(Recorder(lambda request: None if request.uri == b"/slow" else hello(request)))
        client.send(get(b"/slow") + get(b"/") * 3000)
        self.assertEqual(len(client.resource.requests), 1)
        hello(client.resource.requests[0])
        self.assertEqual(len(client.resource.requests), 3001)
        self.assertEqual(len(client.responses()), 3001)
        self.assertEqual(client.transport.producerState, "producing")

    def test_connection_close_closes_after_the_answer(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/", b"Connection: close"))
        [response] = client.responses()
        self.assertEqual(response.headers[b"connection"], [b"close"])
        self.assertTrue(client.transport.disconnecting)

    def test_bytes_after_connection_close_are_ignored(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/1", b"Connection: close") + get(b"/2"), get(b"/3"))
        self.assertEqual([request.uri for request in client.resource.requests], [b"/1"])
        self.assertEqual(len(client.responses()), 1)

    def test_http_1_0_closes(self) -> None:
        client = connect(Recorder())
        client.send(get(version=b"1.0"))
        [response] = client.responses()
        self.assertEqual(response.headers[b"connection"], [b"close"])
        self.assertTrue(client.transport.value().startswith(b"HTTP/1.0 200 OK\r\n"))
        self.assertTrue(client.transport.disconnecting)

    def test_http_1_0_keep_alive_stays_open(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/", b"Connection: keep-alive", version=b"1.0"))
        client.send(get(b"/", b"Connection: keep-alive", version=b"1.0"))
        responses = client.responses()
        self.assertEqual([r.headers[b"connection"] for r in responses], [[b"keep-alive"]] * 2)
        self.assertFalse(client.transport.disconnecting)

    def test_upgrade_request_with_a_body_is_served_with_its_body(self) -> None:
        client = connect(Recorder())
        client.send(post(b"hel", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c")[:-3]
                    .replace(b"Content-Length: 3", b"Content-Length: 5") + b"hel", b"lo", b"ignored")
        self.assertEqual((client.resource.bodies, client.resource.positions), ([b"hello"], [0]))
        [response] = client.responses()
        self.assertEqual(response.headers[b"connection"], [b"close"])
        self.assertTrue(client.transport.disconnecting)

    def test_chunked_upgrade_request_is_refused(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/", b"Upgrade: h2c", b"Connection: Upgrade", b"Transfer-Encoding: chunked",
                        method=b"POST") + b"5\r\nhello\r\n0\r\n\r\n")
        self.assertEqual(client.resource.requests, [])
        self.assertTrue(client.transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n"))

    def test_upgrade_request_is_served_then_closes(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/", b"Upgrade: websocket", b"Connection: upgrade") + b"\x81\x00binary")
        [response] = client.responses()
        self.assertEqual((response.body, response.headers[b"connection"]), (b"hello", [b"close"]))
        self.assertTrue(client.transport.disconnecting)


class HeaderFieldTests(SynchronousTestCase):
    def test_trailers_never_become_request_headers(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/", b"Transfer-Encoding: chunked", method=b"POST")
                    + b"5\r\nhello\r\n0\r\nHost: internal.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        [request] = client.resource.requests
        self.assertEqual((request.getHeader(b"host"), request.getHeader(b"x-forwarded-for")),
                         (b"x.test", None))
        self.assertEqual(client.resource.bodies, [b"hello"])

    def test_whitespace_after_a_value_is_not_part_of_it(self) -> None:
        client = connect(Recorder())
        client.send(b"GET / HTTP/1.1\r\nHost: h.test \t\r\nX-A: v  \r\n\r\n")
        [request] = client.resource.requests
        self.assertEqual((request.getHeader(b"host"), request.requestHeaders.getRawHeaders(b"x-a")),
                         (b"h.test", [b"v"]))

    def test_endless_chunk_extension_or_trailer_is_refused(self) -> None:
        for tail in (b"5;" + b"e" * 10000, b"5\r\nhello\r\n0\r\nX-Long: " + b"v" * 10000):
            client = connect(Recorder())
            client.send(get(b"/", b"Transfer-Encoding: chunked", method=b"POST"), tail, *[b"x" * 10000] * 5)
            self.assertEqual(client.resource.requests, [])
            self.assertTrue(client.transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n"), tail[:8])

    def test_slow_body_is_not_a_stalled_head(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/", b"Content-Length: 60000", method=b"POST"), *[b"b" * 1000] * 60)
        self.assertEqual([len(body) for body in client.resource.bodies], [60000])


class FramingTests(SynchronousTestCase):
    def test_chunked_without_content_length_on_1_1(self) -> None:
        client = connect(Recorder(write_and_finish(b"ab", b"cde")))
        client.send(get())
        self.assertTrue(client.transport.value().endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"))
        [response] = client.responses()
        self.assertEqual((response.headers[b"transfer-encoding"], response.body), ([b"chunked"], b"abcde"))
        self.assertFalse(client.transport.disconnecting)

    def test_close_delimited_on_1_0(self) -> None:
        client = connect(Recorder(write_and_finish(b"ab", b"cde")))
        client.send(get(b"/", b"Connection: keep-alive", version=b"1.0"))
        head, _, body = client.transport.value().partition(b"\r\n\r\n")
        self.assertEqual(body, b"abcde")
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertIn(b"\r\nConnection: close", head)
        self.assertTrue(client.transport.disconnecting)

    def test_the_connection_frames_the_body_whatever_the_resource_says(self) -> None:
        def answer(request: DownstreamRequest) -> None:
            request.responseHeaders.setRawHeaders(b"transfer-encoding", [b"chunked"])
            hello(request)
        client = connect(Recorder(answer))
        client.send(get(), get())
        self.assertNotIn(b"transfer-encoding", client.transport.value().lower())
        self.assertEqual([(r.body, r.complete) for r in client.responses()], [(b"hello", True)] * 2)

    def test_no_body_for_head_204_and_304(self) -> None:
        for method, code in ((b"HEAD", 200), (b"GET", 204), (b"GET", 304)):
            client = connect(Recorder(write_and_finish(b"body", code=code)))
            client.send(get(method=method), get(method=method))
            answer = client.transport.value()
            self.assertEqual(answer.count(b"HTTP/1.1 %d " % code), 2, answer)
            self.assertNotIn(b"body", answer)
            self.assertNotIn(b"transfer-encoding", answer.lower())
            self.assertNotIn(b"content-length", answer.lower())
            self.assertTrue(answer.endswith(b"\r\n\r\n"))
            self.assertFalse(client.transport.disconnecting)

    def test_finish_without_write_is_an_empty_body(self) -> None:
        client = connect(Recorder(write_and_finish()))
        client.send(get())
        [response] = client.responses()
        self.assertEqual((response.headers[b"content-length"], response.body, response.complete),
                         ([b"0"], b"", True))

    def test_date_is_added_unless_the_response_has_one(self) -> None:
        def dated(request: DownstreamRequest) -> None:
            request.responseHeaders.setRawHeaders(b"date", [b"Tue, 01 Jan 2030 00:00:00 GMT"])
            hello(request)

        before = http_date()
        client = connect(Recorder(hello))
        client.send(get())
        [response] = client.responses()
        self.assertIn(response.headers[b"date"][0], (before, http_date()))
        client = connect(Recorder(dated))
        client.send(get())
        [response] = client.responses()
        self.assertEqual(response.headers[b"date"], [b"Tue, 01 Jan 2030 00:00:00 GMT"])

    def test_write_after_finish_is_an_error(self) -> None:
        client = connect(Recorder())
        client.send(get())
        request = client.resource.requests[0]
        self.assertRaises(RuntimeError, request.write, b"late")
        self.assertRaises(RuntimeError, request.finish)


class RequestBodyTests(SynchronousTestCase):
    def test_content_length_body(self) -> None:
        client = connect(Recorder())
        client.send(post(b"payload")[:-3], b"oad")
        self.assertEqual((client.resource.bodies, client.resource.positions), ([b"payload"], [0]))

    def test_chunked_body(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/", b"Transfer-Encoding: chunked", method=b"PUT"), b"3\r\nabc\r\n",
                    b"2\r\nde\r\n0\r\n\r\n")
        self.assertEqual((client.resource.bodies, client.resource.positions), ([b"abcde"], [0]))

    def test_large_chunked_body(self) -> None:
        body = bytes(range(256)) * 600
        client = connect(Recorder())
        client.send(get(b"/", b"Transfer-Encoding: chunked", method=b"PUT"),
                    *(b"%x\r\n%s\r\n" % (len(body[offset:offset + 7000]), body[offset:offset + 7000])
                      for offset in range(0, len(body), 7000)), b"0\r\n\r\n")
        self.assertEqual((client.resource.bodies, client.resource.positions), ([body], [0]))

    def test_small_chunked_bodies_take_no_file(self) -> None:
        """Pipelined chunked requests, queued behind a slow one, must not use up file descriptors."""
        client = connect(Recorder(lambda request: None if request.uri == b"/slow" else hello(request)))
        before = len(os.listdir("/proc/self/fd"))
        chunked = get(b"/", b"Transfer-Encoding: chunked", method=b"POST") + b"1\r\na\r\n0\r\n\r\n"
        client.send(get(b"/slow") + chunked * 2000)
        self.assertEqual(len(client.resource.requests), 1)
        self.assertLess(len(os.listdir("/proc/self/fd")) - before, 50)
        hello(client.resource.requests[0])
        self.assertEqual(client.resource.bodies, [b""] + [b"a"] * 2000)

    def test_large_body_goes_to_a_file(self) -> None:
        body = bytes(range(256)) * 600
        client = connect(Recorder())
        data = post(body)
        client.send(*(data[offset:offset + 65536] for offset in range(0, len(data), 65536)))
        self.assertEqual((client.resource.bodies, client.resource.positions), ([body], [0]))
        self.assertNotIsInstance(client.resource.requests[0].content, io.BytesIO)

    def test_large_body_and_the_next_request_in_one_read(self) -> None:
        """A read may hold more than a head's worth of body before the next head."""
        body = b"x" * 200_000
        client = connect(Recorder())
        client.send(post(body) + get(b"/next"))
        self.assertEqual([request.uri for request in client.resource.requests], [b"/up", b"/next"])
        self.assertEqual([r.status for r in client.responses()], [200, 200])

    def test_expect_100_continue(self) -> None:
        client = connect(Recorder())
        data = post(b"abc", b"Expect: 100-continue")
        client.send(data[:-3])
        self.assertEqual(client.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(client.resource.requests, [])
        client.send(b"abc")
        self.assertEqual([r.status for r in client.responses()], [100, 200])
        self.assertEqual(client.resource.bodies, [b"abc"])

    def test_100_continue_waits_for_the_response_before(self) -> None:
        client = connect(Recorder(answer=None))
        data = post(b"abc", b"Expect: 100-continue")
        client.send(get(b"/first"), data[:-3])
        self.assertEqual(client.transport.value(), b"")
        write_and_finish(b"first")(client.resource.requests[0])
        self.assertTrue(client.transport.value().endswith(b"0\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"))
        client.send(b"abc")
        self.assertEqual(client.resource.bodies, [b"", b"abc"])

    def test_no_100_continue_once_the_body_came_anyway(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get(b"/first"), post(b"abc", b"Expect: 100-continue"))
        write_and_finish(b"first")(client.resource.requests[0])
        write_and_finish(b"second")(client.resource.requests[1])
        self.assertEqual([r.status for r in client.responses()], [200, 200])


class RefusalTests(SynchronousTestCase):
    def _refusal(self, client: Client) -> tuple[bytes, Response]:
        """The status line and the response of a refused request, checking what all refusals share."""
        [response] = client.responses()
        self.assertEqual(response.headers[b"connection"], [b"close"])
        self.assertEqual(response.headers[b"content-type"], [b"text/plain; charset=utf-8"])
        self.assertRegex(response.body, rb"\A[^\n]+\nrequest_id: [0-9a-f]{32}\n\Z")
        self.assertTrue(client.transport.disconnecting)
        return client.transport.value().split(b"\r\n")[0], response

    def _refused(self, *chunks: bytes, max_body_size: int = 0) -> tuple[bytes, bytes]:
        client = connect(Recorder(), max_body_size=max_body_size)
        client.send(*chunks)
        self.assertEqual(client.resource.requests, [])
        status_line, response = self._refusal(client)
        return status_line, response.body.split(b"\n")[0]

    def test_malformed_requests_are_bad_requests(self) -> None:
        for data in (b"NOT HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
                     b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", b"GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n",
                     b"GET /\x00 HTTP/1.1\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
            self.assertEqual(self._refused(data), (b"HTTP/1.1 400 Bad Request", b"Bad request"), data)

    def test_versions_other_than_1_0_and_1_1_are_refused(self) -> None:
        for version in (b"2.0", b"0.9"):
            self.assertEqual(self._refused(get(version=version)),
                             (b"HTTP/1.1 505 HTTP Version Not Supported",
                              b"The upstream server responded with 505"), version)

    def test_smuggling_shapes_are_refused(self) -> None:
        for framing in (b"Content-Length: 5\r\nTransfer-Encoding: chunked",
                        b"Transfer-Encoding: chunked\r\nContent-Length: 5",
                        b"Content-Length: 5\r\nContent-Length: 6",
                        b"Transfer-Encoding: chunked, identity"):
            data = b"POST / HTTP/1.1\r\n%s\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n" % framing
            self.assertEqual(self._refused(data), (b"HTTP/1.1 400 Bad Request", b"Bad request"), framing)

    def test_bad_chunk_size_is_refused(self) -> None:
        data = get(b"/", b"Transfer-Encoding: chunked", method=b"POST") + b"zz\r\nabc\r\n0\r\n\r\n"
        self.assertEqual(self._refused(data), (b"HTTP/1.1 400 Bad Request", b"Bad request"))

    def test_refusals_follow_accept_then_content_type(self) -> None:
        head = get(b"/", b"Content-Length: 11", method=b"POST")
        for extra, media in [(b"Accept: application/json", b"application/json"),
                             (b"Content-Type: text/html", b"text/html"),
                             (b"Accept: application/xml\r\nContent-Type: text/html", b"application/xml")]:
            client = connect(Recorder(), max_body_size=10)
            client.send(head.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n\r\n"))
            [response] = client.responses()
            self.assertEqual(response.headers[b"content-type"], [media + b"; charset=utf-8"])
            self.assertIn(b"Payload too large", response.body)

    def test_trace_is_not_allowed(self) -> None:
        self.assertEqual(self._refused(get(b"/", method=b"TRACE")),
                         (b"HTTP/1.1 405 Not Allowed", b"Method not allowed"))

    def test_body_over_the_cap_is_413_before_it_is_read(self) -> None:
        expected = (b"HTTP/1.1 413 Request Entity Too Large", b"Payload too large")
        head = get(b"/", b"Content-Length: 11", b"Expect: 100-continue", method=b"POST")
        self.assertEqual(self._refused(head, max_body_size=10), expected)  # and no 100 Continue
        chunked = get(b"/", b"Transfer-Encoding: chunked", method=b"POST")
        self.assertEqual(self._refused(chunked, b"6\r\nabcdef\r\n", b"5\r\nghijk\r\n", max_body_size=10),
                         expected)

    def test_body_at_the_cap_is_served(self) -> None:
        for data in (post(b"x" * 10), get(b"/", b"Transfer-Encoding: chunked", method=b"POST")
                     + b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n"):
            client = connect(Recorder(), max_body_size=10)
            client.send(data, data)  # the count starts again for the next request
            self.assertEqual(list(map(len, client.resource.bodies)), [10, 10])

    def test_long_target_is_414(self) -> None:
        data = get(b"/" + b"a" * MAX_LINE)
        self.assertEqual(self._refused(data), (b"HTTP/1.1 414 Request-URI Too Large", b"URI too long"))
        self.assertEqual(self._refused(data[:5000], data[5000:]),
                         (b"HTTP/1.1 414 Request-URI Too Large", b"URI too long"))

    def test_a_target_at_the_limit_is_served(self) -> None:
        client = connect(Recorder())
        client.send(get(b"/" + b"a" * (MAX_LINE - 1)))
        self.assertEqual(len(client.resource.requests), 1)

    def test_long_header_line_is_too_large(self) -> None:
        expected = (b"HTTP/1.1 400 Bad Request", b"Request header or cookie too large")
        self.assertEqual(self._refused(get(b"/", b"Cookie: " + b"c" * MAX_LINE)), expected)

    def test_long_head_is_too_large(self) -> None:
        expected = (b"HTTP/1.1 400 Bad Request", b"Request header or cookie too large")
        lines = [b"X-Filler-%d: %s" % (index, b"f" * 1000) for index in range(MAX_HEAD // 1000 + 1)]
        data = get(b"/", *lines)
        self.assertEqual(self._refused(data), expected)  # in one read: refused before it is served
        self.assertEqual(self._refused(*(data[offset:offset + 100] for offset in range(0, len(data), 100))),
                         expected)

    def test_head_at_the_limits_is_served(self) -> None:
        client = connect(Recorder())
        lines = [b"X-Filler-%d: %s" % (index, b"f" * 1000) for index in range(24)]  # 24 * 1015 bytes
        client.send(get(b"/", b"Cookie: " + b"c" * (MAX_LINE - 20), *lines))
        self.assertEqual(len(client.resource.requests), 1)

    def test_endless_header_line_is_too_large(self) -> None:
        client = connect(Recorder())
        client.send(b"GET / HTTP/1.1\r\nCookie: ")
        for _ in range(16):
            client.send(b"c" * 4096)
        self.assertEqual(self._refusal(client)[0], b"HTTP/1.1 400 Bad Request")
        self.assertEqual(client.resource.requests, [])

    def test_refusal_comes_after_the_answers_before_it(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get(b"/1") + get(b"/2") + b"GET / HTTP/1.1\r\nX : bad\r\n\r\n" + get(b"/3"))
        write_and_finish(b"one")(client.resource.requests[0])
        self.assertFalse(client.transport.disconnecting)
        write_and_finish(b"two")(client.resource.requests[1])
        self.assertEqual([request.uri for request in client.resource.requests], [b"/1", b"/2"])
        self.assertEqual([(r.status, r.body[:11]) for r in client.responses()],
                         [(200, b"one"), (200, b"two"), (400, b"Bad request")])
        self.assertTrue(client.transport.disconnecting)

    def test_render_failure_aborts_the_connection(self) -> None:
        def broken(request: DownstreamRequest) -> None:
            raise ZeroDivisionError()
        client = connect(Recorder(broken))
        client.send(get() + get())
        self.assertTrue(client.transport.disconnected)
        self.assertEqual(len(client.resource.requests), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class ConnectionLostTests(SynchronousTestCase):
    def test_disconnect_fails_notify_finish(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get(b"/1") + get(b"/2"))
        waiting = [request.notifyFinish() for request in client.resource.requests]
        reason = client.lose()
        self.assertIs(self.failureResultOf(waiting[0]), reason)
        first = client.resource.requests[0]
        self.assertTrue(first._disconnected)
        first.write(b"ignored")
        self.assertEqual(client.transport.value(), b"")
        self.assertRaises(RuntimeError, first.finish)

    def test_finish_fires_notify_finish(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get())
        finished = client.resource.requests[0].notifyFinish()
        hello(client.resource.requests[0])
        self.assertIsNone(self.successResultOf(finished))

    def test_disconnect_midway_through_a_body(self) -> None:
        client = connect(Recorder())
        client.send(post(b"x" * 200_000)[:150_000])
        client.lose()
        self.assertEqual(client.resource.requests, [])


class TimeoutTests(SynchronousTestCase):
    def test_idle_connection_closes(self) -> None:
        client = connect(Recorder(), timeout=10)
        client.send(get())
        client.clock.advance(9)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(1)
        self.assertTrue(client.transport.disconnecting)

    def test_partial_head_times_out_with_a_408_in_the_log(self) -> None:
        client = connect(Recorder(), timeout=100, header_timeout=10)
        client.send(b"GET / HTTP/1.1\r\nHost: x")
        client.clock.advance(9.5)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(0.5)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(client.resource.requests, [])
        self.assertEqual(client.transport.value(), b"")  # nginx sends nothing either
        self.assertEqual([request.code for request in client.logged], [408])

    def test_a_head_trickled_in_is_cut_at_its_deadline_from_the_accept(self) -> None:
        client = connect(Recorder(), timeout=100, header_timeout=10)
        client.clock.advance(4)
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            client.send(bytes([byte]))
            client.clock.advance(0.25)
            if client.transport.disconnecting:
                break
        self.assertEqual(client.clock.seconds(), 10)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual([request.code for request in client.logged], [408])

    def test_a_later_head_is_timed_from_its_first_byte(self) -> None:
        client = connect(Recorder(), timeout=100, header_timeout=10)
        client.send(get())
        client.clock.advance(50)
        client.send(b"GET /b HTTP/1.1\r\n")
        client.clock.advance(9)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(1)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual([request.code for request in client.logged], [200, 408])

    def _body_sent_slowly(self, sent: int) -> Client:
        """A 30-byte body announced, then ``sent`` of its bytes, each 9 s after the one before."""
        client = connect(Recorder(), timeout=100, header_timeout=100, body_timeout=10)
        client.send(post(b"x" * 30)[:-30])
        for _ in range(sent):
            client.clock.advance(9)
            client.send(b"x")
        return client

    def test_a_body_may_pause_up_to_its_timeout_between_reads(self) -> None:
        client = self._body_sent_slowly(3)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(10)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(client.resource.requests, [])
        self.assertEqual([request.code for request in client.logged], [408])

    def test_a_body_that_keeps_coming_is_read(self) -> None:
        client = self._body_sent_slowly(30)
        self.assertEqual([response.status for response in client.responses()], [200])

    def test_idle_time_counts_from_the_end_of_the_answer(self) -> None:
        client = connect(Recorder(answer=None), timeout=10)
        client.send(get())
        client.clock.advance(9)
        hello(client.resource.requests[0])
        client.clock.advance(9)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(1)
        self.assertTrue(client.transport.disconnecting)

    def test_idle_connection_that_does_not_read_is_aborted(self) -> None:
        client = connect(Recorder(), timeout=10, header_timeout=10)
        client.clock.advance(10)
        self.assertTrue(client.transport.disconnecting)
        self.assertFalse(client.transport.disconnected)
        client.clock.advance(15)
        self.assertTrue(client.transport.disconnected)

    def test_request_in_progress_is_not_idle(self) -> None:
        client = connect(Recorder(answer=None), timeout=10)
        client.send(get())
        client.clock.advance(35)
        self.assertFalse(client.transport.disconnecting)
        hello(client.resource.requests[0])
        client.clock.advance(10)
        self.assertTrue(client.transport.disconnecting)


class DrainTests(SynchronousTestCase):
    def test_an_idle_connection_closes_at_once(self) -> None:
        client = connect(Recorder())
        client.send(get())
        drained = client.connection.factory.drain(10)
        self.assertTrue(client.transport.disconnecting)
        self.assertNoResult(drained)
        client.lose()
        self.assertIsNone(self.successResultOf(drained))

    def test_requests_already_read_are_answered_the_last_with_close(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get(b"/a") + get(b"/b"))
        drained = client.connection.factory.drain(10)
        client.send(get(b"/c"))  # too late: not taken
        self.assertFalse(client.transport.disconnecting)
        hello(client.resource.requests[0])  # /b starts once /a is answered
        hello(client.resource.requests[1])
        self.assertEqual([request.uri for request in client.resource.requests], [b"/a", b"/b"])
        self.assertEqual([response.headers.get(b"connection") for response in client.responses()],
                         [None, [b"close"]])
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.successResultOf(drained)

    def test_a_request_still_unanswered_at_the_timeout_is_cut(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get())
        drained = client.connection.factory.drain(10)
        client.clock.advance(9)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(1)
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.successResultOf(drained)

    def test_a_request_still_arriving_is_answered_then_closed(self) -> None:
        client = connect(Recorder())
        data = post(b"0123456789")
        client.send(data[:-5])
        drained = client.connection.factory.drain(10)
        self.assertFalse(client.transport.disconnecting)
        client.send(data[-5:] + get(b"/after"))
        self.assertEqual(client.resource.bodies, [b"0123456789"])
        self.assertEqual([response.headers.get(b"connection") for response in client.responses()],
                         [[b"close"]])
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.successResultOf(drained)

    def test_a_refusal_owed_is_still_sent(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get(b"/a") + b"BROKEN\r\n\r\n")
        client.connection.factory.drain(10)
        hello(client.resource.requests[0])
        self.assertEqual([response.status for response in client.responses()], [200, 400])
        self.assertEqual([request.code for request in client.logged], [200, 400])

    def test_draining_twice_fires_both(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get())
        factory = client.connection.factory
        timers = len(client.clock.getDelayedCalls())  # the connection's own
        first, second = factory.drain(10), factory.drain(10)
        self.assertEqual(len(client.clock.getDelayedCalls()), timers + 1)
        hello(client.resource.requests[0])
        client.lose()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(client.clock.getDelayedCalls(), [])

    def test_a_connection_that_read_nothing_yet_answers_its_first_request(self) -> None:
        """A worker replaced on reload may have accepted a connection whose request is on its way."""
        client = connect(Recorder())
        drained = client.connection.factory.drain(10)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(FIRST_REQUEST_GRACE / 2)
        client.send(get(b"/first"))
        self.assertEqual([response.headers.get(b"connection") for response in client.responses()],
                         [[b"close"]])
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.successResultOf(drained)

    def test_a_connection_that_reads_nothing_closes_after_the_grace(self) -> None:
        client = connect(Recorder())
        drained = client.connection.factory.drain(10)
        client.clock.advance(FIRST_REQUEST_GRACE - 0.01)
        self.assertFalse(client.transport.disconnecting)
        client.clock.advance(0.01)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(client.logged, [])  # nothing was asked: no 408 either
        client.lose()
        self.successResultOf(drained)

    def test_a_connection_accepted_while_draining_closes_at_once(self) -> None:
        client = connect(Recorder())
        client.connection.factory.drain(10)
        late = client.connection.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        assert late is not None
        transport = StringTransport()
        late.makeConnection(transport)
        self.assertTrue(transport.disconnecting)

    def test_nothing_to_drain(self) -> None:
        client = connect(Recorder())
        client.lose()
        self.successResultOf(client.connection.factory.drain(10))


class InterfaceTests(SynchronousTestCase):
    def test_downstream_request_provides_the_interface(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get())
        request = client.resource.requests[0]
        self.assertTrue(verifyObject(IProxiedRequest, request))
        self.assertEqual((request.getRequestHostname(), cast(IPv4Address, request.getClientAddress()).port,
                          request.isSecure()),
                         (b"x.test", 40000, False))

    def test_headers_read_before_and_after_they_are_built(self) -> None:
        client = connect(Recorder(answer=None))
        client.send(get(b"/", b"X-Twice: one", b"x-twice: two"))
        request = client.resource.requests[0]
        self.assertEqual((request.getHeader(b"X-TWICE"), request.getHeader(b"missing")), (b"two", None))
        request.requestHeaders.setRawHeaders(b"host", [b"changed.test"])
        self.assertEqual(request.getHeader(b"host"), b"changed.test")
        self.assertEqual(request.requestHeaders.getRawHeaders(b"x-twice"), [b"one", b"two"])

    def test_local_address_is_asked_once_per_connection(self) -> None:
        client = connect(Recorder())
        client.transport.getHost = (  # type: ignore[method-assign]  # a test double for one method
            lambda: self.fail("getHost is a system call on TCP"))
        client.send(get(), get())
        self.assertEqual([cast(IPv4Address, r.getHost()).port for r in client.resource.requests],
                         [8000, 8000])

    def test_twisted_web_request_meets_the_same_contract(self) -> None:
        resource = _SiteResource()
        channel = Site(resource).buildProtocol(None)
        channel.makeConnection(StringTransport())
        channel.dataReceived(get(b"/x?y=1"))
        self.assertTrue(verifyObject(IProxiedRequest, resource.requests[0], tentative=True))

    def test_access_log_line(self) -> None:
        client = connect(Recorder())
        factory = client.connection.factory
        del factory.log  # the factory's own: nginx's combined format, as Kong logs
        factory.startFactory()
        factory.logFile = io.StringIO()
        client.send(get(b"/logged?q=1", b"User-Agent: tester"))
        self.assertIn('"GET /logged?q=1 HTTP/1.1" 200 5 "-" "tester"', factory.logFile.getvalue())
        self.assertTrue(factory.logFile.getvalue().startswith('127.0.0.1 - - ['))

    def test_refusals_are_logged(self) -> None:
        for data, line in [(b"NOT HTTP\r\n\r\n", '"- - -" 400 '),
                           (get(b"/" + b"a" * MAX_LINE), '"GET /aaaa'),
                           (get(b"/two", version=b"2.0"), '"GET /two HTTP/2.0" 505 '),
                           (get(b"/big", b"Content-Length: 11", b"User-Agent: up", method=b"PUT"),
                            '"PUT /big HTTP/1.1" 413 ')]:
            client = connect(Recorder(), max_body_size=10)
            client.send(data)
            [logged] = client.logged
            self.assertIn(line, combined("[now]", logged), data[:20])
        self.assertIn('"-" "up"', combined("[now]", logged))


class _SiteResource(Resource):
    """A twisted.web resource that keeps its requests open."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[object] = []

    def render(self, request: object) -> object:
        self.requests.append(request)
        return NOT_DONE_YET


_TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
_FRAMING = {"content-length", "transfer-encoding", "connection", "expect", "upgrade", "host"}
_PATH = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/%"


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes]:
    """(method, target, headers, body, wire bytes) of a well-formed HTTP/1.1 request."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"]))
    target = b"/" + draw(st.text(_PATH, max_size=30)).encode()
    if draw(st.booleans()):
        target += b"?" + draw(st.text(_PATH + "?", max_size=30)).encode()
    headers = [(name.encode(), value.encode()) for name, value in draw(st.lists(st.tuples(
        st.text(_TOKEN, min_size=1, max_size=12).filter(lambda name: name.lower() not in _FRAMING),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=20)), max_size=6))]
    padding = draw(st.sampled_from([b"", b" ", b"\t ", b"  "]))  # after values, on the wire only
    body = draw(st.binary(max_size=300))
    if not body:
        framing = b""
    elif draw(st.booleans()):
        framing = b"Content-Length: %d\r\n" % len(body)
    else:
        framing = b"Transfer-Encoding: chunked\r\n"
        headers.append((b"Transfer-Encoding", b"chunked"))
    trailers = draw(st.sampled_from([b"", b"Host: trailer.test\r\nX-Trailer: yes\r\n"]))
    if framing.startswith(b"Content"):
        headers.append((b"Content-Length", b"%d" % len(body)))
    head = b"%s %s HTTP/1.1\r\n%s%s\r\n" % (
        method, target, b"".join(b"%s: %s%s\r\n" % (*header, padding) for header in headers
                                 if header[0] not in (b"Content-Length", b"Transfer-Encoding")), framing)
    chunked = b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(body), body, trailers)
    wire = head + (chunked if b"chunked" in framing else body)
    return method, target, headers, body, wire


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(requests(), min_size=1, max_size=3), st.data())
    def test_any_split_gives_the_same_requests(self, sent, data) -> None:
        wire = b"".join(request[-1] for request in sent)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
        client = connect(Recorder())
        client.send(*(wire[start:end] for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True)))
        seen = [(request.method, request.uri, request.requestHeaders) for request in client.resource.requests]
        expected = [(method, target, _headers(headers)) for method, target, headers, _, _ in sent]
        self.assertEqual(seen, expected)
        self.assertEqual(client.resource.bodies, [body for _, _, _, body, _ in sent])
        self.assertFalse(client.transport.disconnecting)


def _headers(pairs: list[tuple[bytes, bytes]]) -> Headers:
    headers = Headers()
    for name, value in pairs:
        headers.addRawHeader(name, value)
    return headers


class LoopbackTests(TestCase):
    @deferred
    async def test_pipelined_requests_through_a_real_socket(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url)
        client: RawClient = await gateway.connect()
        self.addCleanup(client.transport.loseConnection)
        client.transport.write(get(b"/p/delay/0.2") + get(b"/p/second")
                               + post(b"third", b"Connection: close", path=b"/p/third"))
        answer = await client.closed
        reader = _ResponseReader()
        reader.parser.feed_data(answer)
        self.assertEqual([(r.status, r.complete) for r in reader.responses], [(200, True)] * 3)
        self.assertEqual([seen["uri"] for seen in upstream.resource.received],
                         ["/delay/0.2", "/second", "/third"])
        self.assertEqual(upstream.resource.received[-1]["body"], "third")
        self.assertIn(b'"uri": "/second"', reader.responses[1].body)
        self.assertEqual(reader.responses[2].headers[b"connection"], [b"close"])

    @deferred
    async def test_body_cap_from_the_settings_through_a_real_socket(self) -> None:
        gateway = await start_gateway(self, nginx_http_client_max_body_size="1k")
        answer = await gateway.raw(post(b"x" * 1025))
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer[:80])
        self.assertIn(b"\r\n\r\nPayload too large\nrequest_id: ", answer)
        answer = await gateway.raw(post(b"x" * 1024, b"Connection: close", path=b"/nowhere"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), answer[:80])

    async def test_long_target_through_a_real_socket(self) -> None:
        gateway = await start_gateway(self)
        answer = await gateway.raw(get(b"/" + b"a" * (MAX_LINE + 10)))
        self.assertTrue(answer.startswith(b"HTTP/1.1 414 Request-URI Too Large\r\n"), answer[:80])
        self.assertIn(b"\r\n\r\nURI too long\nrequest_id: ", answer)
