"""Stop and start: the configuration survives (the SQLite file under ``prefix``), and a
stopping node answers the requests it has already read."""
from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from kongish.service import KongishService
from kongish.settings import Settings
from tests.harness import (
    LOOPBACK,
    RawClient,
    deferred,
    eventually,
    port_number,
    start_gateway,
    start_upstream,
)
from tests.test_e2e_seed import SEED_CODE


class RestartTests(TestCase):
    @deferred
    async def test_configuration_survives_restart(self) -> None:
        prefix = self.mktemp()
        first = await start_gateway(self, prefix=prefix)
        await first.call("POST", "/services", data={"name": "plugin-testing", "url": "http://dead.end.com"})
        await first.call("POST", "/services/plugin-testing/routes", data={"paths[]": "/test"})
        await first.call("POST", "/services/plugin-testing/plugins",
                         data={"name": "pre-function", "config.access[]": SEED_CODE})
        await first.service.stopService()
        second = await start_gateway(self, prefix=prefix)
        status, body, _ = await second.get("/test?name=again")
        self.assertEqual((status, body), (200, b"Hello again!\n"))
        status, services, _ = await second.call("GET", "/services")
        self.assertEqual([s["name"] for s in services["data"]], ["plugin-testing"])

    @deferred
    async def test_stop_during_start_releases_everything(self) -> None:
        prefix = self.mktemp()
        service = KongishService(Settings.load(environ={}, overrides={
            "prefix": prefix, "proxy_listen": LOOPBACK, "admin_listen": LOOPBACK}), reactor)
        service.startService()
        await service.stopService()  # the SQLite store is still opening on its thread
        await service.ready
        self.assertEqual(service.ports, [])
        self.assertEqual([t.name for t in threading.enumerate() if prefix in t.name], [])

    @deferred
    async def test_stop_answers_requests_in_flight_then_refuses(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.call("POST", "/services", json={"name": "slow", "url": upstream.url})
        await gateway.call("POST", "/services/slow/routes", json={"paths": ["/slow"]})
        port = port_number(gateway.service.ports[0])
        client = await gateway.connect()
        client.transport.write(b"GET /slow/delay/0.3 HTTP/1.1\r\nHost: x.test\r\n\r\n")
        await eventually(lambda: upstream.resource.received)
        stopped = gateway.service.stopService()
        answer = await client.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:40])
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        await stopped
        with self.assertRaises(ConnectionRefusedError):
            await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(Protocol))

    @deferred
    async def test_stop_closes_kept_alive_admin_connections(self) -> None:
        gateway = await start_gateway(self)
        client = RawClient()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port_number(gateway.service.ports[1])).connect(
            Factory.forProtocol(lambda: client))
        client.transport.write(b"GET /status HTTP/1.1\r\nHost: admin\r\n\r\n")
        await client.received(b"}")
        await gateway.service.stopService()
        self.assertTrue((await client.closed).startswith(b"HTTP/1.1 200 OK\r\n"))

