"""What pre/post-function code changes reaches the upstream and the client; internal errors."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from kongish.runloop import flow
from tests.harness import deferred, start_gateway, start_upstream
from tests.test_e2e_proxy_streaming import post_function, pre_function


class ServiceRequestTests(TestCase):
    async def _gateway(self, *plugins: dict):
        self.upstream = await start_upstream(self)
        self.gateway = await start_gateway(self)
        await self.gateway.expose(self.upstream.url, plugins=plugins)
        return self.gateway

    @deferred
    async def test_service_request_changes_reach_the_upstream(self) -> None:
        gateway = await self._gateway(
            pre_function(access=(
                "kong.service.request.set_header('X-Added', 'yes') "
                "kong.service.request.set_method('PUT') "
                "kong.service.request.set_path('/new path/\u00fc') "
                "kong.service.request.set_raw_query('a=1&b=two') "
                "kong.service.request.set_raw_body('replaced body')")),
            post_function(header_filter=(
                "kong.response.set_header('X-Resp', kong.service.response.get_status()) "
                "kong.response.set_header('X-Upstream', 'overridden')")))
        status, _, headers = await gateway.request("POST", "/p/old?x=1", data=b"original")
        seen = self.upstream.resource.received[-1]
        self.assertEqual(status, 200)
        self.assertEqual(seen["method"], "PUT")
        self.assertEqual(seen["uri"], "/new%20path/%C3%BC?a=1&b=two")
        self.assertEqual(seen["body"], "replaced body")
        self.assertEqual(seen["headers"]["x-added"], ["yes"])
        self.assertEqual(seen["headers"]["content-length"], ["13"])
        self.assertEqual(headers.getRawHeaders(b"x-resp"), [b"200"])
        self.assertEqual(headers.getRawHeaders(b"x-upstream"), [b"overridden"])

    @deferred
    async def test_set_query_encodes_a_table(self) -> None:
        gateway = await self._gateway(pre_function(access="kong.service.request.set_query({a = '1 2'})"))
        status, body, _ = await gateway.get("/p/q?old=1")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.upstream.resource.received[-1]["uri"], "/q?a=1%202")

    @deferred
    async def test_clear_header_and_ngx_var_args(self) -> None:
        gateway = await self._gateway(pre_function(access=(
            "kong.service.request.clear_header('X-Secret') ngx.var.args = nil")))
        await gateway.get("/p/q?a=b", headers={"X-Secret": "s"})
        seen = self.upstream.resource.received[-1]
        self.assertEqual(seen["uri"], "/q")
        self.assertNotIn("x-secret", seen["headers"])


class _BrokenRouter:
    def match(self, *args: object) -> None:
        1 / 0  # noqa: B018 - raises ZeroDivisionError on purpose


class UnexpectedErrorTests(TestCase):
    async def _gateway(self):
        self.upstream = await start_upstream(self)
        self.gateway = await start_gateway(self)
        await self.gateway.expose(self.upstream.url)
        return self.gateway

    def _assert_kong_500(self, status: int, body: bytes, headers) -> None:
        """An nginx-level 500 (Kong's renderer B): plain text for a client that states no type."""
        self.assertEqual(status, 500)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertEqual(body, b"An unexpected error occurred\nrequest_id: %s\n"
                         % headers.getRawHeaders(b"x-kong-request-id")[0])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @deferred
    async def test_a_failing_router_is_kongs_500(self) -> None:
        gateway = await self._gateway()
        self.patch(gateway.service.node, "router", _BrokenRouter())
        self._assert_kong_500(*await gateway.get("/p"))

    @deferred
    async def test_a_failure_after_the_upstream_answered_is_kongs_500(self) -> None:
        gateway = await self._gateway()
        self.patch(flow, "copy_end_to_end", lambda headers: 1 / 0)
        self._assert_kong_500(*await gateway.get("/p/bytes/300000"))

    @deferred
    async def test_a_failing_flow_is_kongs_500(self) -> None:
        gateway = await self._gateway()

        async def broken(flow) -> None:
            1 / 0  # noqa: B018 - raises ZeroDivisionError on purpose
        self.patch(flow.ProxyFlow, "run", broken)
        self._assert_kong_500(*await gateway.get("/p"))
