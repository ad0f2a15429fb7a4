"""What passes through the proxy unchanged, and the headers Kong adds (reference 4.6, 5.2, 5.3)."""
from __future__ import annotations

import gzip
import json
import os

from twisted.trial.unittest import TestCase

from tests.harness import blocks, deferred, start_gateway, start_upstream


def head_and_body(answer: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return [line.lower() for line in head.split(b"\r\n")], body


class TransparencyTests(TestCase):
    async def _gateway(self, **route):
        self.upstream = await start_upstream(self)
        self.gateway = await start_gateway(self)
        await self.gateway.expose(self.upstream.url, route=route)
        return self.gateway

    def _seen(self) -> dict:
        return self.upstream.resource.received[-1]["headers"]

    @deferred
    async def test_upstream_headers_pass_through(self) -> None:
        gateway = await self._gateway()
        status, body, headers = await gateway.get("/p/headers")
        self.assertEqual((status, body), (200, b"headers"))
        self.assertEqual(headers.getRawHeaders(b"set-cookie"), [b"a=1; Path=/", b"b=2; HttpOnly"])
        self.assertEqual(headers.getRawHeaders(b"x-multi"), [b"one", b"two"])
        self.assertEqual(headers.getRawHeaders(b"server"), [b"echo-server/1.0"])
        self.assertEqual(headers.getRawHeaders(b"via"), [b"1.1 upstream-cache, 1.1 kong/3.9.0"])
        self.assertFalse(headers.hasHeader(b"keep-alive"))
        self.assertEqual(headers.getRawHeaders(b"date"), [b"Wed, 01 Jan 2025 00:00:00 GMT"])  # the upstream's

    @deferred
    async def test_kong_generated_answers_have_kong_server_and_date(self) -> None:
        gateway = await self._gateway()
        status, _, headers = await gateway.get("/nowhere")
        self.assertEqual(status, 404)
        self.assertEqual(headers.getRawHeaders(b"server"), [b"kong/3.9.0"])
        self.assertTrue(headers.hasHeader(b"date"))
        self.assertFalse(headers.hasHeader(b"via"))

    @deferred
    async def test_client_headers_repeat_and_hop_by_hop_ones_stop(self) -> None:
        gateway = await self._gateway()
        await gateway.get("/p", headers={
            "X-Dup": ["a", "b"], "Connection": "close, X-Hop", "X-Hop": "secret",
            "Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive", "Proxy": "evil",
            "TE": "trailers, deflate", "Cookie": "s=1"})
        seen = self._seen()
        self.assertEqual(seen["x-dup"], ["a", "b"])
        self.assertEqual(seen["connection"], ["keep-alive"])
        self.assertEqual(seen["te"], ["trailers"])
        self.assertEqual(seen["cookie"], ["s=1"])
        for name in ("x-hop", "keep-alive", "proxy-connection", "proxy"):
            self.assertNotIn(name, seen)

    @deferred
    async def test_gzip_bodies_pass_encoded(self) -> None:
        gateway = await self._gateway()
        lines, body = head_and_body(await gateway.raw(
            b"GET /p/gzip HTTP/1.1\r\nHost: x.test\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"))
        compressed = gzip.compress(b"compressed payload " * 100, mtime=0)
        self.assertIn(b"content-encoding: gzip", lines)
        self.assertIn(b"content-length: %d" % len(compressed), lines)
        self.assertEqual(body, compressed)
        self.assertEqual(self._seen()["accept-encoding"], ["gzip"])

    @deferred
    async def test_chunked_upstream_bodies_stay_chunked(self) -> None:
        gateway = await self._gateway()
        lines, body = head_and_body(await gateway.raw(
            b"GET /p/stream/3 HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"))
        self.assertIn(b"transfer-encoding: chunked", lines)
        self.assertFalse(any(line.startswith(b"content-length") for line in lines))
        self.assertEqual(body, b"7\r\nchunk0;\r\n7\r\nchunk1;\r\n7\r\nchunk2;\r\n0\r\n\r\n")

    @deferred
    async def test_known_lengths_stay_known(self) -> None:
        gateway = await self._gateway()
        lines, body = head_and_body(await gateway.raw(
            b"GET /p/bytes/1000 HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"))
        self.assertIn(b"content-length: 1000", lines)
        self.assertEqual(body, blocks(1000))

    @deferred
    async def test_head_keeps_the_entity_length_and_sends_no_body(self) -> None:
        gateway = await self._gateway()
        lines, body = head_and_body(await gateway.raw(
            b"HEAD /p/bytes/5000 HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"))
        self.assertEqual(lines[0], b"http/1.1 200 ok")
        self.assertIn(b"content-length: 5000", lines)
        self.assertEqual(body, b"")
        self.assertEqual(self.upstream.resource.received[-1]["method"], "HEAD")

    @deferred
    async def test_large_bodies_both_ways_are_byte_exact(self) -> None:
        gateway = await self._gateway()
        upload = os.urandom(3 << 20)
        status, body, _ = await gateway.request("POST", "/p/mirror", data=upload)
        self.assertEqual((status, len(body)), (200, len(upload)))
        self.assertEqual(body, upload)
        lines, body = head_and_body(await gateway.raw(
            b"GET /p/bytes/5000000 HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"))
        self.assertIn(b"content-length: 5000000", lines)
        self.assertEqual(body, blocks(5000000))

    @deferred
    async def test_forwarded_headers(self) -> None:
        gateway = await self._gateway()
        port = gateway.service.ports[0].getHost().port
        await gateway.get("/p/a%20b?q=1", headers={
            "Host": "Api.Example.TEST:9999", "X-Forwarded-For": "10.0.0.1", "Via": "1.1 dev",
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "spoofed", "X-Forwarded-Port": "1",
            "X-Forwarded-Path": "/spoofed", "X-Forwarded-Prefix": "/spoofed", "X-Real-IP": "6.6.6.6"})
        seen = self._seen()
        self.assertEqual(seen["host"], [f"127.0.0.1:{self.upstream.port.getHost().port}"])
        self.assertEqual(seen["x-forwarded-for"], ["10.0.0.1, 127.0.0.1"])
        self.assertEqual(seen["x-forwarded-proto"], ["http"])
        self.assertEqual(seen["x-forwarded-host"], ["api.example.test"])
        self.assertEqual(seen["x-forwarded-port"], [str(port)])
        self.assertEqual(seen["x-forwarded-path"], ["/p/a%20b"])
        self.assertEqual(seen["x-forwarded-prefix"], ["/p"])
        self.assertEqual(seen["x-real-ip"], ["127.0.0.1"])
        self.assertEqual(seen["via"], ["1.1 dev, 1.1 kong/3.9.0"])

    @deferred
    async def test_prefix_is_dropped_when_nothing_was_stripped(self) -> None:
        gateway = await self._gateway(strip_path=False)
        await gateway.get("/p/x", headers={"X-Forwarded-Prefix": "/spoofed"})
        self.assertNotIn("x-forwarded-prefix", self._seen())
        self.assertEqual(self.upstream.resource.received[-1]["path"], "/p/x")

    @deferred
    async def test_http_1_0_clients_get_their_version_in_via(self) -> None:
        gateway = await self._gateway()
        await gateway.raw(b"GET /p HTTP/1.0\r\n\r\n")
        seen = self._seen()
        self.assertEqual(seen["via"], ["1.0 kong/3.9.0"])
        self.assertEqual(seen["x-forwarded-host"], ["kong"])

    @deferred
    async def test_preserve_host_sends_the_client_host_as_is(self) -> None:
        gateway = await self._gateway(preserve_host=True)
        await gateway.get("/p", headers={"Host": "Api.Example.TEST:9999"})
        seen = self._seen()
        self.assertEqual(seen["host"], ["Api.Example.TEST:9999"])
        self.assertEqual(seen["x-forwarded-host"], ["api.example.test"])

    @deferred
    async def test_upstream_errors_pass_through_unchanged(self) -> None:
        gateway = await self._gateway()
        status, body, headers = await gateway.get("/p/status/500")
        self.assertEqual(status, 500)
        self.assertEqual(json.loads(body)["path"], "/status/500")
        self.assertEqual(headers.getRawHeaders(b"x-upstream"), [b"echo"])
