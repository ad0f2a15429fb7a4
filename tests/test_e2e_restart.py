"""Stop and start keeps the configuration: the SQLite file under ``prefix``."""
from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from kongish.app import KongishService
from kongish.config import Settings
from tests.harness import LOOPBACK, deferred, start_gateway
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
