"""The whole proxy flow (routing, plugins, upstream, response) with a StubUpstream, and no socket.

A node with a declarative configuration serves through kongish's proxy connection on a
StringTransport; its upstream is a ``kongish.testing.StubUpstream`` on the same clock.
"""
from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kongish.http.interfaces import BodyEnd
from kongish.testing import ProxyHarness, StubRequest, StubResponse, StubUpstream

CONFIG = {
    "_format_version": "3.0",
    "services": [{
        "name": "backend", "url": "http://backend.test:8080/base",
        "read_timeout": 2000,
        "routes": [{"name": "api", "paths": ["/api"]},
                   {"name": "closed", "paths": ["/closed"], "plugins": [{
                       "name": "pre-function",
                       "config": {"access": ["kong.response.exit(403, 'not today')"]}}]}],
        "plugins": [
            {"name": "pre-function", "config": {"access": [
                "kong.service.request.set_header('X-Added', 'by-access')"]}},
            {"name": "post-function", "config": {"header_filter": [
                "kong.response.set_header('X-Seen-Status', tostring(kong.service.response.get_status()))"]}},
        ],
    }],
}


def head_and_body(raw: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


class StubFlowTests(SynchronousTestCase):
    def serve(self, handler) -> StubUpstream:
        harness = ProxyHarness.start(CONFIG, handler, prefix=self.mktemp())
        self.addCleanup(harness.close)
        self.harness, self.reactor, self.transport = harness, harness.reactor, harness.transport
        self.connection = harness.connection
        return harness.upstream

    def get(self, path: bytes, *headers: bytes) -> None:
        self.harness.get(path, *headers)

    def test_routing_plugins_upstream_and_a_streamed_answer(self) -> None:
        later: Deferred[bytes] = Deferred()

        def handler(request: StubRequest) -> StubResponse:
            return StubResponse(200, [("Content-Type", "text/plain"), ("X-Upstream-Spelling", "kept")],
                                [b"first ", later], content_length=len(b"first second"))
        stub = self.serve(handler)
        self.get(b"/api/items?page=2", b"X-Client: c1")
        (sent,) = stub.requests
        self.assertEqual((sent.method, sent.host, sent.port, sent.path, sent.query),
                         ("GET", "backend.test", 8080, "/base/items", "page=2"))
        self.assertEqual(sent.header("x-added"), ["by-access"])
        self.assertEqual(sent.header("x-client"), ["c1"])
        self.assertEqual(sent.header("x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(sent.settings.read_timeout, 2.0)
        lines, body = head_and_body(self.transport.value())
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertIn(b"X-Upstream-Spelling: kept", lines)
        self.assertIn(b"X-Seen-Status: 200", lines)
        self.assertIn(b"Content-Length: 12", lines)
        self.assertEqual(body, b"first ")  # streamed as it comes
        later.callback(b"second")
        _, body = head_and_body(self.transport.value())
        self.assertEqual(body, b"first second")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(stub.responses[0].end, BodyEnd(True))

    def test_a_plugin_exit_never_calls_the_upstream(self) -> None:
        stub = self.serve(lambda request: self.fail("the upstream was called"))
        self.get(b"/closed")
        self.assertEqual(stub.requests, [])
        lines, body = head_and_body(self.transport.value())
        self.assertEqual(lines[0], b"HTTP/1.1 403 Forbidden")
        self.assertIn(b"not today", body)

    def test_no_route_is_404_without_the_upstream(self) -> None:
        stub = self.serve(lambda request: self.fail("the upstream was called"))
        self.get(b"/nowhere")
        self.assertEqual(stub.requests, [])
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 404 Not Found\r\n"))

    def test_a_refused_upstream_is_kongs_502(self) -> None:
        def handler(request: StubRequest) -> StubResponse:
            raise ConnectionRefusedError()
        self.serve(handler)
        self.get(b"/api", b"Accept: application/json")
        lines, body = head_and_body(self.transport.value())
        self.assertEqual(lines[0], b"HTTP/1.1 502 Bad Gateway")
        self.assertEqual(json.loads(body)["message"],
                         "An invalid response was received from the upstream server")

    def test_a_stalled_head_is_a_504_after_read_timeout(self) -> None:
        self.serve(lambda request: Deferred())
        self.get(b"/api")
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(2)
        lines, body = head_and_body(self.transport.value())
        self.assertEqual(lines[0], b"HTTP/1.1 504 Gateway Timeout")
        self.assertIn(b"The upstream server is timing out", body)

    def test_a_truncated_body_cuts_the_client_connection(self) -> None:
        self.serve(lambda request: StubResponse(200, [], [b"part"], end="truncated", content_length=100))
        self.get(b"/api")
        lines, body = head_and_body(self.transport.value())
        self.assertIn(b"Content-Length: 100", lines)
        self.assertEqual(body, b"part")
        self.assertTrue(self.transport.disconnecting)

    def test_a_stalled_body_is_cut_after_read_timeout(self) -> None:
        stub = self.serve(lambda request: StubResponse(200, [], [b"part", Deferred()], content_length=100))
        self.get(b"/api")
        self.assertFalse(self.transport.disconnecting)
        self.reactor.advance(2)
        self.assertTrue(self.transport.disconnecting)
        end = stub.responses[0].end
        self.assertTrue(end is not None and end.aborted)

    def test_the_client_leaving_cancels_the_upstream_call(self) -> None:
        cancelled: list[bool] = []
        self.serve(lambda request: Deferred(lambda _: cancelled.append(True)))
        self.get(b"/api")
        self.assertEqual(cancelled, [])
        self.connection.connectionLost(Failure(ConnectionLost("client went away")))
        self.assertEqual(cancelled, [True])
        self.assertEqual([call for call in self.reactor.getDelayedCalls() if call.active()
                          and "StubUpstream" in repr(call)], [])
