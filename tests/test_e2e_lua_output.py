"""Lua output for clients that do not read, through a real ``twist kongish`` (issue 9, item 7):
the process holds at most ``lua_output_limit`` of it, one buffer per connection goes to the
transport at a time, and a client that takes nothing for ``nginx_http_send_timeout`` is cut."""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater

from tests.harness import RawClient, deferred
from tests.test_e2e_hostile_lua import _Gateway

MIB = 1024 * 1024
BIG = 24 * MIB
BIG_ROUTE = f"ngx.print(string.rep('x', {BIG})) return ngx.exit(200)"


class LuaOutputTests(_Gateway):
    def _rss(self) -> int:
        assert self.process.transport is not None
        with open(f"/proc/{self.process.transport.pid}/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    async def _deaf_client(self) -> RawClient:
        """A client that asks for the big body and never reads."""
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        self.addCleanup(client.transport.abortConnection)
        IPushProducer(client.transport).pauseProducing()  # a TCP transport is its own producer
        client.transport.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        return client

    def _access_logged(self, status: int) -> int:
        return sum(1 for line in self.process.output.splitlines() if b"GET /big HTTP/1.1" in line
                   and f" {status} ".encode() in line)

    @deferred
    async def test_deaf_clients_hold_no_more_than_the_output_limit(self) -> None:
        await self._start(lua_memory_limit=str(96 * MIB), lua_output_limit="40m",
                          nginx_http_send_timeout="2s")
        await self._route("big", BIG_ROUTE)
        code, body = await self._get("/big")  # warm: a client that reads gets it all
        self.assertEqual((code, len(body)), (200, BIG), self.process.output[-3000:])
        before = self._rss()
        deaf = [await self._deaf_client() for _ in range(10)]
        # one body fits the process's 40 MiB; the others end with 500 at once
        await self._until(lambda: self._access_logged(500) == 9, "nine 500s")
        await self._until(lambda: b"exceeded the output limit" in self.process.output, "output limit logged")
        await self._healthy("ten deaf clients")
        # ten 24 MiB bodies held for their clients were 240 MiB; one, and a buffer each, remain
        self.assertLess(self._rss() - before, 120 * MIB)
        # the one client given a body took nothing: cut at the send timeout, and its output is free
        for _ in range(100):
            code, body = await self._get("/big")
            if code == 200:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual((code, len(body)), (200, BIG))
        for client in deaf:  # reading again, the one cut sees its connection gone; the others are open
            IPushProducer(client.transport).resumeProducing()
        await self._until(lambda: any(client.closed.called for client in deaf), "the one given a body is cut")
        self.assertEqual(sum(client.closed.called for client in deaf), 1)
