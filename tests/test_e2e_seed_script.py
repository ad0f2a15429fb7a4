"""``examples/seed_demo.sh`` runs again, and after README's demo, without a collision."""
from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway
from tests.test_admin_body import SEED_CODE

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "seed_demo.sh"


class SeedScriptTests(TestCase):
    @deferred
    async def test_after_readme_demo_and_twice(self) -> None:
        gateway = await start_gateway(self)
        for path, data in [("/services", {"name": "plugin-testing", "url": "http://dead.end.com"}),
                           ("/services/plugin-testing/routes", {"paths[]": "/test"}),
                           ("/services/plugin-testing/plugins",
                            {"name": "pre-function", "config.access[]": SEED_CODE})]:
            status, body, _ = await gateway.call("POST", path, data=data)
            self.assertEqual(status, 201, body)
        environment = {**os.environ, "ADMIN": gateway.admin, "PROXY": gateway.proxy}
        for _ in range(2):
            out, err, code = await getProcessOutputAndValue("bash", [str(SCRIPT)], env=environment,
                                                            reactor=reactor)
            self.assertEqual(code, 0, err)
            self.assertTrue(out.endswith(b"Hello Kong!\n"), out)
            self.assertNotIn(b'"code":', out)  # no Admin API error body on any call
        _, routes, _ = await gateway.call("GET", "/routes")
        self.assertEqual(sorted(path for route in routes["data"] for path in route["paths"]),
                         ["/seed-demo", "/test"])
        self.assertEqual((await gateway.get("/test?name=Kong"))[:2], (200, b"Hello Kong!\n"))
