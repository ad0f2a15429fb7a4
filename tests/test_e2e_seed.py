"""The seed demo, end to end through real sockets: Admin API calls, then a proxied request."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway

SEED_CODE = ("local qs=ngx.req.get_uri_args()if qs and qs.name then ngx.say('Hello '..qs.name..'!')"
             "else ngx.say('Hello Serverless Functions!')end;ngx.exit(200)")


class SeedDemoTests(TestCase):
    async def _seed(self, field: str):
        gateway = await start_gateway(self)
        status, service, _ = await gateway.call(
            "POST", "/services/", data={"name": "plugin-testing", "url": "http://dead.end.com"})
        self.assertEqual(status, 201)
        self.assertEqual((service["host"], service["port"], service["path"]), ("dead.end.com", 80, None))
        status, route, _ = await gateway.call(
            "POST", "/services/plugin-testing/routes", data={"paths[]": "/test"})
        self.assertEqual(status, 201)
        self.assertEqual(route["service"], {"id": service["id"]})
        status, plugin, _ = await gateway.call(
            "POST", "/services/plugin-testing/plugins",
            data={"name": "pre-function", f"config.{field}[]": SEED_CODE})
        self.assertEqual(status, 201, plugin)
        return gateway

    @deferred
    async def test_functions_form(self) -> None:
        gateway = await self._seed("functions")
        status, body, headers = await gateway.get("/test?name=Kong")
        self.assertEqual((status, body), (200, b"Hello Kong!\n"))
        self.assertTrue(headers.hasHeader(b"x-kong-response-latency"))
        status, body, _ = await gateway.get("/test")
        self.assertEqual((status, body), (200, b"Hello Serverless Functions!\n"))

    @deferred
    async def test_access_form(self) -> None:
        gateway = await self._seed("access")
        status, body, _ = await gateway.get("/test?name=Kong")
        self.assertEqual((status, body), (200, b"Hello Kong!\n"))

    @deferred
    async def test_no_route(self) -> None:
        gateway = await start_gateway(self)
        status, body, headers = await gateway.get("/nothing", headers={"Accept": "application/json"})
        self.assertEqual(status, 404)
        self.assertIn(b'"message":"no Route matched with those values"', body)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json; charset=utf-8"])
