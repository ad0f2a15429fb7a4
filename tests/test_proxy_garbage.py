"""A served request leaves no reference cycle behind: refcounting frees what it made.

Cycles are freed only by the cyclic garbage collector, whose passes over every
young object cost the proxy about a tenth of its time and put pauses into its
tail latency. Each test runs requests with the collector off, then counts what
a collection finds of kongish's own objects: it must find nothing.
"""
from __future__ import annotations

import gc
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from kongish.http.pool import KeepaliveSettings
from kongish.testing import ProxyHarness, StubRequest, StubResponse
from tests.test_upstream_connection import Collector, Upstream

CONFIG = {
    "_format_version": "3.0",
    "services": [{
        "name": "backend", "url": "http://backend.test:8080",
        "routes": [{"name": "plain", "paths": ["/plain"]},
                   {"name": "lua", "paths": ["/lua"], "plugins": [
                       {"name": "pre-function", "config": {"access": [
                           "kong.service.request.set_header('X-Pre', 'access')"]}},
                       {"name": "post-function", "config": {"header_filter": [
                           "kong.response.set_header('X-Post', 'header_filter')"]}}]},
                   {"name": "seed", "paths": ["/test"], "plugins": [
                       {"name": "pre-function", "config": {"access": [
                           "ngx.say('Hello ' .. (ngx.req.get_uri_args().name or '')) ngx.exit(200)"]}}]}],
    }],
}


def kongish_garbage(action: Callable[[], None]) -> list[str]:
    """The kongish types of the objects that only the cyclic collector would free after ``action``."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        action()
        gc.collect()
        return sorted({type(found).__qualname__ for found in gc.garbage
                       if type(found).__module__.startswith("kongish")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()


def answer(request: StubRequest) -> StubResponse:
    return StubResponse(200, [("Content-Type", "text/plain")], b"ok")


class ProxiedRequestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = ProxyHarness.start(CONFIG, answer, prefix=self.mktemp())
        self.addCleanup(self.harness.close)

    def served(self, path: bytes, expected: bytes) -> Callable[[], None]:
        def serve() -> None:
            self.harness.transport.clear()
            self.assertIn(expected, self.harness.get(path))
            self.harness.upstream.requests.clear()
            self.harness.upstream.responses.clear()
        serve()  # the first request fills caches, which are not garbage
        return serve

    def test_a_proxied_request(self) -> None:
        self.assertEqual(kongish_garbage(self.served(b"/plain", b"\r\n\r\nok")), [])

    def test_a_proxied_request_through_lua_functions(self) -> None:
        self.assertEqual(kongish_garbage(self.served(b"/lua", b"X-Post: header_filter")), [])

    def test_a_request_a_function_ends(self) -> None:
        self.assertEqual(kongish_garbage(self.served(b"/test?name=Kong", b"Hello Kong")), [])

    def test_an_unrouted_request(self) -> None:
        self.assertEqual(kongish_garbage(self.served(b"/nowhere", b"no Route matched")), [])

    def test_the_check_sees_a_cycle(self) -> None:
        """What the check counts: a kongish object held in a cycle is found."""
        def cycle() -> None:
            collector = Collector()
            collector.data.append(collector)  # type: ignore[arg-type]
        self.assertEqual(kongish_garbage(cycle), [])  # Collector is the tests' own type
        from kongish.http.headers import CasedHeaders

        def kongish_cycle() -> None:
            headers = CasedHeaders()
            headers._given[b"self"] = headers  # type: ignore[assignment]
        self.assertEqual(kongish_garbage(kongish_cycle), ["CasedHeaders"])


class UpstreamExchangeTests(SynchronousTestCase):
    def test_an_exchange_on_a_kept_alive_connection(self) -> None:
        upstream = Upstream(self)
        first = upstream.send()
        connection = upstream.accept()

        def exchange() -> None:
            received: list[object] = []
            upstream.send().addCallback(received.append)
            upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            (response,) = received
            collector = Collector()
            response.deliver_body(collector)  # type: ignore[attr-defined]
            self.assertEqual((collector.data, collector.end and collector.end.complete), ([b"ok"], True))

        upstream.answer(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(first.called)
        self.assertEqual(kongish_garbage(exchange), [])

    def test_a_body_the_upstream_ends_by_closing(self) -> None:
        upstream = Upstream(self)

        def exchange() -> None:
            received: list[object] = []
            upstream.send().addCallback(received.append)
            connection = upstream.accept()
            upstream.answer(connection, b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            upstream.close(connection)
            (response,) = received
            collector = Collector()
            response.deliver_body(collector)  # type: ignore[attr-defined]
            self.assertEqual(collector.end and collector.end.complete, True)

        self.assertEqual(kongish_garbage(exchange), [])

    def test_an_upstream_that_closes_before_its_head(self) -> None:
        upstream = Upstream(self, KeepaliveSettings(pool_size=0))

        def exchange() -> None:
            failed: list[object] = []
            upstream.send().addErrback(failed.append)
            for _ in range(3):  # the first try and its two retries
                upstream.close(upstream.accept())
            self.assertEqual(len(failed), 1)

        self.assertEqual(kongish_garbage(exchange), [])

