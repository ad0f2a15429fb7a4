"""Streaming responses, body_filter, plugin failures and client disconnects, end to end."""
from __future__ import annotations

import socket
from typing import cast

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseFailed

from kongish.lua.engine import LuaError
from tests.harness import POOL, blocks, deferred, eventually, start_gateway, start_upstream

_PRODUCED = 32 << 20


def post_function(**phases: str) -> dict:
    return {"name": "post-function", "config": {phase: [code] for phase, code in phases.items()}}


def pre_function(**phases: str) -> dict:
    return {"name": "pre-function", "config": {phase: [code] for phase, code in phases.items()}}


class _Streaming(TestCase):
    async def _gateway(self, *plugins: dict, **service):
        self.upstream = await start_upstream(self)
        self.gateway = await start_gateway(self)
        await self.gateway.expose(self.upstream.url, plugins=plugins, **service)
        return self.gateway

    def _lua_messages(self) -> list[str]:
        """Text of what Lua code logs from now on."""
        messages: list[str] = []

        def observe(event: dict) -> None:
            if "text" in event and "plugin" in event:
                messages.append(event["text"])
        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return messages


class BackpressureTests(_Streaming):
    @deferred
    async def test_a_client_that_stops_reading_pauses_the_upstream(self) -> None:
        gateway = await self._gateway()
        production = self.upstream.resource.production
        client = await gateway.connect()
        client.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.transport.write(b"GET /p/produce/%d HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"
                               % _PRODUCED)
        await client.received(b"\r\n\r\n")
        client.transport.pauseProducing()
        await deferLater(reactor, 0.5)  # plenty for a proxy that buffers to drain the upstream
        await eventually(lambda: production["paused"])
        self.assertLess(production["sent"], _PRODUCED // 2)
        client.transport.resumeProducing()
        answer = await client.closed
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: %d" % _PRODUCED, head)
        self.assertEqual(len(body), _PRODUCED)
        self.assertEqual(body, blocks(_PRODUCED))


class BodyFilterTests(_Streaming):
    @deferred
    async def test_body_filter_sees_each_chunk_and_the_end(self) -> None:
        gateway = await self._gateway(post_function(body_filter=(
            "ngx.arg[1] = ngx.arg[1]:upper() .. (ngx.arg[2] and '|EOF' or '')")))
        status, body, headers = await gateway.get("/p/stream/50")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"".join(b"CHUNK%d;" % i for i in range(50)) + b"|EOF")

    @deferred
    async def test_a_body_filter_error_mid_stream_closes_the_client_connection(self) -> None:
        gateway = await self._gateway(post_function(body_filter=(
            "ngx.ctx.n = (ngx.ctx.n or 0) + 1 if ngx.ctx.n == 5 then error('filter broke') end")))
        response = await treq.get((gateway.proxy + "/p/drip/50/0.02").encode(), pool=POOL)
        self.assertEqual(response.code, 200)
        with self.assertRaises(ResponseFailed):
            await response.content()
        await eventually(lambda: self.upstream.resource.lost == ["/drip/50/0.02"])
        self.assertEqual(len(self.flushLoggedErrors(LuaError)), 1)
        self.assertEqual((await gateway.get("/p/stream/2"))[0], 200)

    @deferred
    async def test_a_body_filter_error_at_the_end_closes_the_client_connection(self) -> None:
        gateway = await self._gateway(post_function(body_filter="if ngx.arg[2] then error('at eof') end"))
        response = await treq.get((gateway.proxy + "/p/stream/3").encode(), pool=POOL)
        with self.assertRaises(ResponseFailed):
            await response.content()
        self.assertEqual(len(self.flushLoggedErrors(LuaError)), 1)

    @deferred
    async def test_a_header_filter_error_is_kongs_500(self) -> None:
        gateway = await self._gateway(post_function(header_filter="error('header filter broke')"))
        status, body, headers = await gateway.get("/p/bytes/100000")
        self.assertEqual(status, 500)
        self.assertEqual(body.splitlines()[0], b"An unexpected error occurred")  # renderer B: plain
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertNotIn(b"header filter broke", body)
        self.assertGreaterEqual(len(self.flushLoggedErrors(LuaError)), 1)

    @deferred
    async def test_a_log_error_leaves_the_response_alone(self) -> None:
        gateway = await self._gateway(post_function(log="error('log broke')"))
        status, body, _ = await gateway.get("/p/stream/2")
        self.assertEqual((status, body), (200, b"chunk0;chunk1;"))
        await eventually(lambda: len(self.flushLoggedErrors(LuaError)) == 1)
        self.assertEqual((await gateway.get("/p/stream/2"))[0], 200)
        await eventually(lambda: len(self.flushLoggedErrors(LuaError)) == 1)


class ClientDisconnectTests(_Streaming):
    @deferred
    async def test_leaving_before_the_answer_cancels_the_upstream_request(self) -> None:
        gateway = await self._gateway(
            post_function(log="kong.log.notice('status ', kong.response.get_status())"))
        logged = self._lua_messages()
        client = await gateway.connect()
        client.transport.write(b"GET /p/delay/5 HTTP/1.1\r\nHost: x.test\r\n\r\n")
        await eventually(lambda: self.upstream.resource.received)
        client.transport.loseConnection()
        await eventually(lambda: self.upstream.resource.lost == ["/delay/5"])
        await eventually(lambda: logged == ["status 499"])

    @deferred
    async def test_leaving_mid_stream_closes_the_upstream_connection(self) -> None:
        gateway = await self._gateway(
            post_function(log="kong.log.notice('status ', kong.response.get_status())"))
        logged = self._lua_messages()
        client = await gateway.connect()
        client.transport.write(b"GET /p/stall/1000 HTTP/1.1\r\nHost: x.test\r\n\r\n")
        await client.received(b"\r\n\r\n")
        client.transport.loseConnection()
        await eventually(lambda: self.upstream.resource.lost == ["/stall/1000"])
        await eventually(lambda: logged == ["status 200"])
