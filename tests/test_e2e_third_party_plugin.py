"""A third-party plugin found by its ``kongish.plugins`` entry point, end to end.

The plugin is ``examples/maintenance_plugin`` (the plugin authors' guide's example); the
test makes it installed by writing its distribution metadata into a directory on
``sys.path``, as ``pip install`` would, so the node finds it exactly as it finds any.
"""
from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "maintenance_plugin"


class ThirdPartyPluginTests(TestCase):
    def setUp(self) -> None:
        site = Path(self.mktemp())
        info = site / "kongish_maintenance-1.0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kongish-maintenance\nVersion: 1.0.0\n")
        (info / "entry_points.txt").write_text(
            "[kongish.plugins]\nmaintenance = kongish_maintenance:plugin\n")
        for path in (str(site), str(EXAMPLE)):
            sys.path.insert(0, path)
            self.addCleanup(sys.path.remove, path)

    @deferred
    async def test_enabled_configured_and_answering(self) -> None:
        gateway = await start_gateway(self, plugins="bundled,maintenance")
        _, root, _ = await gateway.call("GET", "/")
        self.assertIn("maintenance", root["plugins"]["available_on_server"])
        await gateway.expose("http://127.0.0.1:1", "/shop")
        status, body, _ = await gateway.call("POST", "/routes/svc-shop/plugins", data={
            "name": "maintenance", "config.status_code": "600"})
        self.assertEqual((status, body["fields"]),
                         (400, {"config": {"status_code": "value should be between 400 and 599"}}))
        status, body, _ = await gateway.call("POST", "/routes/svc-shop/plugins", data={
            "name": "maintenance", "config.retry_after": "120"})
        self.assertEqual((status, body["config"]),
                         (201, {"status_code": 503, "message": "Down for maintenance",
                                "retry_after": 120}))
        status, page, headers = await gateway.get("/shop/cart")
        self.assertEqual((status, page, headers.getRawHeaders("retry-after")),
                         (503, b'{"message": "Down for maintenance"}', ["120"]))

    @deferred
    async def test_not_enabled_means_unknown(self) -> None:
        gateway = await start_gateway(self)
        await gateway.expose("http://127.0.0.1:1", "/shop")
        status, body, _ = await gateway.call("POST", "/routes/svc-shop/plugins", data={"name": "maintenance"})
        self.assertEqual((status, body["fields"]), (400, {
            "name": "plugin 'maintenance' not enabled; add it to the 'plugins' configuration property"}))
