"""Embedding kongish: its resources mounted with ``putChild`` in another twisted.web site."""
from __future__ import annotations

import json

import treq
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from twisted.web.static import Data
from zope.interface.verify import verifyObject

from kongish.http.client import UpstreamClient
from kongish.runloop import flow
from kongish.service import admin_resource, build_node, proxy_resource
from kongish.settings import Settings
from tests.harness import POOL, RawClient, deferred
from tests.test_e2e_seed import SEED_CODE


class EmbedTests(TestCase):
    async def _site(self) -> str:
        """A site with its own page at /, the proxy under /gateway and the Admin API under /admin."""
        node = await build_node(Settings.load(environ={}, overrides={"database": "off"}), reactor)
        client = UpstreamClient(reactor)
        self.addCleanup(client.close)
        gateway, admin = proxy_resource(node, client), admin_resource(node)
        self.assertTrue(verifyObject(IResource, gateway))
        self.assertTrue(verifyObject(IResource, admin))
        root = Resource()
        root.putChild(b"", Data(b"my application\n", "text/plain"))
        root.putChild(b"gateway", gateway)
        root.putChild(b"admin", admin)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(root))
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    async def _get(self, url: str) -> tuple[int, bytes]:
        response = await treq.get(url.encode(), pool=POOL)
        return response.code, await response.content()

    @deferred
    async def test_mounted_with_put_child(self) -> None:
        base = await self._site()
        self.assertEqual(await self._get(base + "/"), (200, b"my application\n"))
        config = {"_format_version": "3.0", "services": [{
            "name": "plugin-testing", "url": "http://dead.end.com",
            "routes": [{"paths": ["/test"]}],
            "plugins": [{"name": "pre-function", "config": {"access": [SEED_CODE]}}]}]}
        response = await treq.post((base + "/admin/config").encode(), json={"config": json.dumps(config)},
                                   pool=POOL)
        self.assertEqual(response.code, 201, await response.content())
        self.assertEqual(await self._get(base + "/gateway/test?name=Kong"), (200, b"Hello Kong!\n"))
        status, body = await self._get(base + "/admin/status")
        self.assertEqual(status, 200)
        self.assertIn("configuration_hash", json.loads(body))

    @deferred
    async def test_mounted_answers_are_dated_when_sent_and_typed_only_by_kongish(self) -> None:
        base = await self._site()
        config = {"_format_version": "3.0", "services": [{
            "name": "s", "url": "http://dead.end.com", "routes": [
            {"paths": ["/exit"], "plugins": [{"name": "pre-function", "config": {
                "access": ["ngx.exit(200)"]}}]}]}]}
        response = await treq.post((base + "/admin/config").encode(), json={"config": json.dumps(config)},
                                   pool=POOL)
        self.assertEqual(response.code, 201, await response.content())
        # the clock as kongish sends, not as twisted.web began
        sending_time = b"Thu, 01 Jan 2099 00:00:00 GMT"
        self.patch(flow, "http_date", lambda: sending_time)
        response = await treq.get((base + "/gateway/exit").encode(), pool=POOL)
        self.assertEqual((response.code, await response.content()), (200, b""))
        self.assertEqual(response.headers.getRawHeaders(b"date"), [sending_time])
        self.assertIsNone(response.headers.getRawHeaders(b"content-type"))
        self.assertEqual(response.headers.getRawHeaders(b"server"), [b"kong/3.9.0"])
        client = RawClient()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", int(base.rsplit(":", 1)[1])).connect(
            Factory.forProtocol(lambda: client))
        client.transport.write(b"GET /gateway/nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head = (await client.closed).partition(b"\r\n\r\n")[0].split(b"\r\n")
        self.assertEqual(head[0], b"HTTP/1.1 404 Not Found")
        self.assertIn(b"Connection: close", head)  # as twisted.web decided it before kongish answered

    @deferred
    async def test_mounted_answers_keep_header_names_as_given(self) -> None:
        base = await self._site()
        config = {"_format_version": "3.0", "services": [{
            "name": "s", "url": "http://dead.end.com", "routes": [
            {"paths": ["/exit"], "plugins": [{"name": "pre-function", "config": {
                "access": ['kong.response.exit(200, "x", {["X-PL"] = "exit"})'],
                "header_filter": ['ngx.header["x-lower"] = "lua"']}}]}]}]}
        response = await treq.post((base + "/admin/config").encode(), json={"config": json.dumps(config)},
                                   pool=POOL)
        self.assertEqual(response.code, 201, await response.content())
        client = RawClient()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", int(base.rsplit(":", 1)[1])).connect(
            Factory.forProtocol(lambda: client))
        assert client.transport is not None
        client.transport.write(b"GET /gateway/exit HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head = (await client.closed).partition(b"\r\n\r\n")[0].split(b"\r\n")
        self.assertEqual(head[0], b"HTTP/1.1 200 OK")
        for line in (b"X-PL: exit", b"x-lower: lua", b"Connection: close", b"Server: kong/3.9.0"):
            self.assertIn(line, head)

