"""kong.conf's ``headers`` and ``headers_upstream`` end to end, and when kongish adds its headers."""
from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from kongish.http.client import UpstreamFailure
from tests.harness import closed_port, deferred, start_gateway, start_upstream

_KONG_HEADERS = (b"server", b"via", b"x-kong-upstream-latency", b"x-kong-proxy-latency",
                 b"x-kong-response-latency", b"x-kong-request-id", b"x-kong-upstream-status")


class KongHeadersTests(TestCase):
    async def _gateway(self, **settings: str):
        self.upstream = await start_upstream(self)
        gateway = await start_gateway(self, **settings)
        status, _, _ = await gateway.call("POST", "/services", json={"name": "svc", "url": self.upstream.url})
        self.assertEqual(status, 201)
        status, _, _ = await gateway.call("POST", "/services/svc/routes", json={"paths": ["/proxied"]})
        self.assertEqual(status, 201)
        status, route, _ = await gateway.call("POST", "/services/svc/routes", json={"paths": ["/exited"]})
        status, _, _ = await gateway.call("POST", f"/routes/{route['id']}/plugins", json={
            "name": "pre-function", "config": {"access": ["ngx.say('bye') ngx.exit(200)"]}})
        self.assertEqual(status, 201)
        return gateway

    def _present(self, headers) -> set[bytes]:
        """kongish's headers in ``headers``; an upstream's own Server does not count."""
        present = {name for name in _KONG_HEADERS if headers.hasHeader(name)}
        if headers.getRawHeaders(b"server", [b"kong/3.9.0"]) != [b"kong/3.9.0"]:
            present.remove(b"server")
        return present

    @deferred
    async def test_defaults(self) -> None:
        gateway = await self._gateway()
        _, body, headers = await gateway.get("/proxied/x")
        self.assertEqual(self._present(headers), {b"via", b"x-kong-upstream-latency",
                                                  b"x-kong-proxy-latency", b"x-kong-request-id"})
        self.assertTrue(headers.getRawHeaders(b"server")[0].startswith(b"TwistedWeb"))  # the upstream's
        self.assertEqual(json.loads(body)["headers"]["x-kong-request-id"],
                         [headers.getRawHeaders(b"x-kong-request-id")[0].decode()])
        _, _, headers = await gateway.get("/exited")
        self.assertEqual(self._present(headers),
                         {b"server", b"x-kong-response-latency", b"x-kong-request-id"})

    @deferred
    async def test_off_sends_none_of_them(self) -> None:
        gateway = await self._gateway(headers="off", headers_upstream="off")
        _, body, headers = await gateway.get("/proxied/x", headers={"X-Kong-Request-Id": "from-client"})
        self.assertEqual(self._present(headers), set())
        self.assertNotIn("x-kong-request-id", json.loads(body)["headers"])
        _, body, headers = await gateway.get("/exited")
        self.assertEqual((body, self._present(headers)), (b"bye\n", set()))

    @deferred
    async def test_single_headers_by_name(self) -> None:
        gateway = await self._gateway(headers="X-Kong-Upstream-Status, via")
        status, _, headers = await gateway.get("/proxied/status/404")
        self.assertEqual(status, 404)
        self.assertEqual(self._present(headers), {b"via", b"x-kong-upstream-status"})
        self.assertEqual(headers.getRawHeaders(b"x-kong-upstream-status"), [b"404"])
        _, _, headers = await gateway.get("/exited")
        self.assertEqual(self._present(headers), set())

    @deferred
    async def test_gateway_errors_count_as_proxied(self) -> None:
        gateway = await self._gateway(headers="server_tokens, latency_tokens, X-Kong-Request-Id, "
                                              "X-Kong-Upstream-Status")
        await gateway.call("POST", "/services", json={
            "name": "down", "url": f"http://127.0.0.1:{closed_port()}", "retries": 0})
        await gateway.call("POST", "/services/down/routes", json={"paths": ["/down"]})
        status, _, headers = await gateway.get("/down")
        self.assertEqual(status, 502)
        self.assertEqual(self._present(headers), {
            b"server", b"via", b"x-kong-upstream-latency", b"x-kong-proxy-latency", b"x-kong-request-id",
            b"x-kong-upstream-status"})
        self.assertEqual((headers.getRawHeaders(b"via"), headers.getRawHeaders(b"x-kong-upstream-status")),
                         ([b"1.1 kong/3.9.0"], [b"502"]))
        self.assertTrue(UpstreamFailure(502, "", "B").proxied)
        self.assertFalse(UpstreamFailure(503, "name resolution failed", "A").proxied)  # Kong's DNS failure

    @deferred
    async def test_added_after_header_filter_as_kong_does(self) -> None:
        gateway = await self._gateway()
        status, route, _ = await gateway.call("POST", "/services/svc/routes", json={"paths": ["/filtered"]})
        status, _, _ = await gateway.call("POST", f"/routes/{route['id']}/plugins", json={
            "name": "post-function", "config": {"access": ["ngx.exit(204)"], "header_filter": [
                "kong.response.clear_header('Server') "
                "kong.response.set_header('X-Saw-Request-Id', "
                "tostring(kong.response.get_header('X-Kong-Request-Id')))"]}})
        self.assertEqual(status, 201)
        status, _, headers = await gateway.get("/filtered")
        self.assertEqual(status, 204)
        self.assertEqual(headers.getRawHeaders(b"server"), [b"kong/3.9.0"])
        self.assertEqual(headers.getRawHeaders(b"x-saw-request-id"), [b"nil"])
        self.assertTrue(headers.hasHeader(b"x-kong-request-id"))
