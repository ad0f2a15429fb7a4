"""Kong's upstream timeouts and retries, end to end (reference 5.5, 5.6)."""
from __future__ import annotations

import json
import time

import treq
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseFailed

from tests.harness import POOL, deferred, eventually, start_deaf_upstream, start_gateway, start_upstream

_INVALID = b"An invalid response was received from the upstream server"


class ReadTimeoutTests(TestCase):
    @deferred
    async def test_a_stalled_body_ends_the_client_connection(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, read_timeout=300)
        started = time.monotonic()
        response = await treq.get((gateway.proxy + "/p/stall/1000").encode(), pool=POOL)
        self.assertEqual(response.code, 200)
        with self.assertRaises(ResponseFailed):
            await response.content()
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        await eventually(lambda: upstream.resource.lost == ["/stall/1000"])

    @deferred
    async def test_the_timeout_bounds_each_wait_not_the_whole_body(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, read_timeout=300)
        status, body, _ = await gateway.get("/p/drip/6/0.1")
        self.assertEqual((status, body), (200, b"drop;" * 6))

    @deferred
    async def test_waiting_for_the_head_is_retried_for_get_not_for_post(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, read_timeout=200, retries=1)
        status, body, _ = await gateway.get("/p/delay/1")
        self.assertEqual((status, body.splitlines()[0]), (504, b"The upstream server is timing out"))
        self.assertEqual(len(upstream.resource.received), 2)
        status, _, _ = await gateway.request("POST", "/p/delay/1", data=b"x")
        self.assertEqual(status, 504)
        self.assertEqual(len(upstream.resource.received), 3)


class WriteTimeoutTests(TestCase):
    @deferred
    async def test_an_upstream_that_stops_reading_times_out(self) -> None:
        upstream = await start_deaf_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, write_timeout=200, read_timeout=60000)
        started = time.monotonic()
        status, body, headers = await gateway.request("POST", "/p", data=b"x" * (16 << 20))
        self.assertEqual((status, body.splitlines()[0]), (504, b"The upstream server is timing out"))
        self.assertTrue(headers.hasHeader(b"x-kong-upstream-latency"))
        self.assertLess(time.monotonic() - started, 30)
        for transport in upstream.factory.open:
            transport.resumeProducing()  # read again, to see that kongish closed the connection
        await eventually(lambda: upstream.factory.closed == 1 and not upstream.factory.open)


class RetryTests(TestCase):
    @deferred
    async def test_reset_connections_are_retried_for_idempotent_methods(self) -> None:
        upstream = await start_upstream(self, resets=2)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, retries=2)
        status, body, _ = await gateway.get("/p/x")
        self.assertEqual((status, json.loads(body)["path"]), (200, "/x"))
        self.assertEqual(upstream.site.connections, 3)

    @deferred
    async def test_a_post_that_reached_the_upstream_is_not_retried(self) -> None:
        upstream = await start_upstream(self, resets=1)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, retries=2)
        status, body, _ = await gateway.request("POST", "/p/x", data=b"once")
        self.assertEqual((status, body.splitlines()[0]), (502, _INVALID))
        self.assertEqual(upstream.site.connections, 1)

    @deferred
    async def test_after_every_try_failed_502_renderer_b(self) -> None:
        upstream = await start_upstream(self, resets=6)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, retries=2)
        status, body, headers = await gateway.get("/p")
        self.assertEqual(status, 502)
        self.assertEqual(upstream.site.connections, 3)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        request_id = headers.getRawHeaders(b"x-kong-request-id")[0].decode()
        self.assertEqual(body, _INVALID + f"\nrequest_id: {request_id}\n".encode())
        self.assertTrue(headers.hasHeader(b"x-kong-upstream-latency"))
        self.assertTrue(headers.hasHeader(b"x-kong-proxy-latency"))
        status, body, headers = await gateway.get("/p", headers={"Accept": "*/*"})
        self.assertEqual(status, 502)
        self.assertEqual(upstream.site.connections, 6)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json; charset=utf-8"])
        self.assertEqual(json.loads(body), {
            "message": _INVALID.decode(),
            "request_id": headers.getRawHeaders(b"x-kong-request-id")[0].decode()})
