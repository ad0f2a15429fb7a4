"""Header names keep the spelling they were given, both ways, as nginx keeps it (issue #2).

The upstream here records request heads byte for byte, and responses are read
raw from the proxy's socket: a client library would re-case the names itself.
"""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway, start_raw_upstream


def head_lines(raw: bytes) -> list[bytes]:
    """The header lines of a raw HTTP message, without the start line."""
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]


def names(raw: bytes) -> list[bytes]:
    return [line.split(b":", 1)[0] for line in head_lines(raw)]


class HeaderCaseTests(TestCase):
    async def _proxy(self, response_lines: bytes = b"", **plugin_config):
        self.upstream = await start_raw_upstream(self, response_lines)
        gateway = await start_gateway(self)
        plugins = ({"name": "pre-function", "config": plugin_config},) if plugin_config else ()
        await gateway.expose(self.upstream.url, "/p", plugins=plugins)
        return gateway

    @deferred
    async def test_lua_service_request_set_header_reaches_upstream_as_given(self) -> None:
        gateway = await self._proxy(access=[
            'kong.service.request.set_header("X-API-KEY", "secret")',
            'kong.service.request.add_header("x-lower-added", "one")'])
        answer = await gateway.raw(b"GET /p HTTP/1.0\r\nHost: example.test\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.0 200 "), answer)
        [head] = self.upstream.heads
        self.assertIn(b"X-API-KEY: secret", head_lines(head))
        self.assertIn(b"x-lower-added: one", head_lines(head))
        self.assertNotIn(b"X-Api-Key", names(head))

    @deferred
    async def test_client_header_reaches_upstream_as_given(self) -> None:
        gateway = await self._proxy()
        await gateway.raw(b"GET /p HTTP/1.0\r\nHost: example.test\r\nX-CLIENT-UPPER: a\r\n"
                          b"x-client-lower: b\r\nX-cLiEnT-MiXeD: c\r\n\r\n")
        [head] = self.upstream.heads
        lines = head_lines(head)
        for line in (b"X-CLIENT-UPPER: a", b"x-client-lower: b", b"X-cLiEnT-MiXeD: c"):
            self.assertIn(line, lines)
        self.assertNotIn(b"X-Client-Upper", names(head))

    @deferred
    async def test_lookups_stay_case_insensitive(self) -> None:
        """Lua reads a client header by any spelling; setting it again by another replaces it,
        spelled as the last call gave it."""
        gateway = await self._proxy(access=[
            'kong.service.request.set_header("x-seen", kong.request.get_header("x-client-upper"))',
            'kong.service.request.set_header("x-client-upper", "replaced")'])
        await gateway.raw(b"GET /p HTTP/1.0\r\nHost: example.test\r\nX-CLIENT-UPPER: a\r\n\r\n")
        [head] = self.upstream.heads
        lines = head_lines(head)
        self.assertIn(b"x-seen: a", lines)
        self.assertEqual([line for line in lines if line.lower().startswith(b"x-client-upper:")],
                         [b"x-client-upper: replaced"])

    @deferred
    async def test_upstream_response_header_reaches_client_as_given(self) -> None:
        gateway = await self._proxy(b"X-PL: upstream\r\nx-lower-response: v\r\nX-MiXeD-rEsP: w\r\n")
        answer = await gateway.raw(b"GET /p HTTP/1.0\r\nHost: example.test\r\n\r\n")
        lines = head_lines(answer)
        for line in (b"X-PL: upstream", b"x-lower-response: v", b"X-MiXeD-rEsP: w"):
            self.assertIn(line, lines)
        self.assertNotIn(b"X-Pl", names(answer))

    @deferred
    async def test_content_type_is_spelled_as_nginx_writes_it(self) -> None:
        """nginx keeps a response's type apart from its header list and writes it as Content-Type."""
        gateway = await self._proxy(b"content-type: text/plain\r\n")
        answer = await gateway.raw(b"GET /p HTTP/1.0\r\nHost: example.test\r\n\r\n")
        self.assertIn(b"Content-Type: text/plain", head_lines(answer))
        self.assertNotIn(b"content-type", names(answer))

    @deferred
    async def test_lua_response_set_header_reaches_client_as_given(self) -> None:
        gateway = await self._proxy(header_filter=[
            'kong.response.set_header("X-PL", "lua")', 'ngx.header["x-ngx-lower"] = "n"'])
        answer = await gateway.raw(b"GET /p HTTP/1.0\r\nHost: example.test\r\n\r\n")
        lines = head_lines(answer)
        self.assertIn(b"X-PL: lua", lines)
        self.assertIn(b"x-ngx-lower: n", lines)
        self.assertNotIn(b"X-Pl", names(answer))

    @deferred
    async def test_plugin_exit_headers_reach_client_as_given(self) -> None:
        gateway = await self._proxy(access=['return kong.response.exit(418, "tea", {["X-EXIT-CASE"] = "1"})'])
        answer = await gateway.raw(b"GET /p HTTP/1.0\r\nHost: example.test\r\n\r\n")
        self.assertIn(b"X-EXIT-CASE: 1", head_lines(answer))
        self.assertEqual(self.upstream.heads, [])

    @deferred
    async def test_kongs_own_header_names_are_unchanged(self) -> None:
        gateway = await self._proxy(b"via: 1.1 cache\r\n")
        answer = await gateway.raw(
            b"GET /p HTTP/1.0\r\nhost: example.test\r\nx-forwarded-for: 10.0.0.1\r\n\r\n")
        sent = names(answer)
        for name in (b"Content-Length", b"Via", b"Server", b"X-Kong-Upstream-Latency",
                     b"X-Kong-Proxy-Latency", b"X-Kong-Request-Id"):
            self.assertIn(name, sent)
        [head] = self.upstream.heads
        received = names(head)
        for name in (b"Host", b"Connection", b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Host",
                     b"X-Forwarded-Port", b"X-Forwarded-Path", b"X-Real-Ip", b"Via", b"X-Kong-Request-Id"):
            self.assertIn(name, received)
        self.assertNotIn(b"host", received)
