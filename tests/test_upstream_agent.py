"""treq over kongish's upstream client (``UpstreamAgent``), against a real upstream on loopback."""
from __future__ import annotations

import json
import socket
from types import SimpleNamespace
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface.verify import verifyObject

from kongish.http.agent import UpstreamAgent
from kongish.http.client import UpstreamClient, UpstreamFailure
from kongish.http.nodelay import no_delay
from tests.harness import deferred, start_gateway


class Echo(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        if request.path == b"/moved":
            request.redirect(b"/echo")
            return b""
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"method": request.method.decode(), "path": request.uri.decode(),
                           "body": request.content.read().decode() if request.content else "",
                           "x-case": [name.decode() for name, _ in request.requestHeaders.getAllRawHeaders()
                                      if name.lower() == b"x-case"]}).encode()


class CountingSite(Site):
    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class UpstreamAgentTests(TestCase):
    async def asyncSetUp(self) -> None:
        self.site = CountingSite(Echo())
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.site)
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.upstream = UpstreamClient(reactor)
        self.addCleanup(self.upstream.close)
        self.http = HTTPClient(UpstreamAgent(self.upstream))

    @deferred
    async def test_treq_rides_the_pool(self) -> None:
        await self.asyncSetUp()
        self.assertTrue(verifyObject(IAgent, UpstreamAgent(self.upstream)))
        response = await self.http.get(self.base + "/echo?a=1", headers=Headers({b"X-Case": [b"v"]}))
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.json(), {"method": "GET", "path": "/echo?a=1", "body": "",
                                                 "x-case": ["X-Case"]})
        response = await self.http.post(self.base + "/echo", json={"k": "v"})
        self.assertEqual((await response.json())["body"], '{"k":"v"}')
        self.assertEqual(self.site.connections, 1, "the second call reused the first's connection")
        self.assertEqual(self.upstream.pools.idle_count(), 1)
        (idle,) = [connection for kept in self.upstream.pools._idle.values() for connection in kept]
        handle = idle.transport.getHandle()  # type: ignore[union-attr]
        self.assertEqual(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1, "nginx's tcp_nodelay")

    @deferred
    async def test_redirects_and_errors(self) -> None:
        await self.asyncSetUp()
        response = await self.http.get(self.base + "/moved")
        self.assertEqual(((await response.json())["path"], response.previousResponse.code), ("/echo", 302))
        closed = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = await closed.listen(Site(Echo()))
        address = port.getHost().port
        await port.stopListening()
        with self.assertRaises(UpstreamFailure) as raised:
            await self.http.get(f"http://127.0.0.1:{address}/")
        self.assertEqual(raised.exception.status, 502)


    @deferred
    async def test_plugins_and_the_proxy_share_the_pools(self) -> None:
        await self.asyncSetUp()
        gateway = await start_gateway(self, database="off")
        host = gateway.node.plugin_host
        assert host is not None
        self.assertIs(gateway.service.client, host.client)
        response = await host.http.get(self.base + "/from-a-plugin")
        self.assertEqual((await response.json())["path"], "/from-a-plugin")
        self.assertEqual(host.client.pools.idle_count(), 1)


class NoDelayTests(SynchronousTestCase):
    def test_found_under_a_tls_wrapper(self) -> None:
        calls: list[bool] = []
        tcp = SimpleNamespace(setTcpNoDelay=calls.append)
        no_delay(SimpleNamespace(transport=tcp))  # as TLSMemoryBIOProtocol wraps TCP
        no_delay(SimpleNamespace(transport=None))  # not TCP (a test's transport): nothing to set
        self.assertEqual(calls, [True])
