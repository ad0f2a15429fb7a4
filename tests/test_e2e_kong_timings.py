"""ngx.ctx.KONG_* timing fields through the gateway, as Kong's plugins read them."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway, start_upstream
from tests.test_e2e_proxy_streaming import post_function, pre_function

# What a phase saw: each field's Lua type, "nil" when unset.
_FIELDS = ("KONG_PROCESSING_START", "KONG_REWRITE_START", "KONG_REWRITE_ENDED_AT", "KONG_ACCESS_START",
           "KONG_ACCESS_ENDED_AT", "KONG_BALANCER_START", "KONG_PROXIED", "KONG_WAITING_TIME",
           "KONG_PROXY_LATENCY", "KONG_RESPONSE_LATENCY", "KONG_HEADER_FILTER_START")
_SEEN = "".join(f"kong.response.set_header('X-Type-{name}', type(ngx.ctx.{name})) " for name in _FIELDS)


def seen(headers) -> dict[str, str]:
    return {name: headers.getRawHeaders("x-type-" + name.replace("_", "-"))[0] for name in _FIELDS}


class KongTimingTests(TestCase):
    @deferred
    async def test_kong_how_to_copies_the_proxy_latency_into_a_header(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, plugins=(post_function(header_filter=(
            'kong.response.set_header("X-Proxy-Latency", ngx.ctx.KONG_PROXY_LATENCY) '
            'kong.response.set_header("X-Upstream-Latency", ngx.ctx.KONG_WAITING_TIME) '
            "local c = ngx.ctx "
            "kong.response.set_header('X-Ordered', tostring(c.KONG_PROCESSING_START <= c.KONG_ACCESS_START "
            "and c.KONG_ACCESS_START <= c.KONG_ACCESS_ENDED_AT "
            "and c.KONG_ACCESS_ENDED_AT <= c.KONG_BALANCER_START "
            "and c.KONG_BALANCER_ENDED_AT <= c.KONG_HEADER_FILTER_START)) " + _SEEN)),))
        status, body, headers = await gateway.get("/p/x")
        self.assertEqual(status, 200, body)
        proxy_latency = headers.getRawHeaders(b"x-proxy-latency")[0]
        self.assertTrue(proxy_latency.isdigit(), proxy_latency)
        # the same field as Kong's own headers
        self.assertEqual(headers.getRawHeaders(b"x-kong-proxy-latency"), [proxy_latency])
        self.assertEqual(headers.getRawHeaders(b"x-kong-upstream-latency"),
                         headers.getRawHeaders(b"x-upstream-latency"))
        self.assertEqual(headers.getRawHeaders(b"x-ordered"), [b"true"])
        self.assertEqual(seen(headers), {**{name: "number" for name in _FIELDS},
                                         "KONG_PROXIED": "boolean", "KONG_RESPONSE_LATENCY": "nil"})

    @deferred
    async def test_access_short_circuit_has_no_waiting_time(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, plugins=(
            pre_function(access=_SEEN.replace("X-Type-", "X-Access-")
                         + "return kong.response.exit(200, 'done')"),
            post_function(header_filter=_SEEN + (
                'kong.response.set_header("X-Response-Latency", ngx.ctx.KONG_RESPONSE_LATENCY)'))))
        status, body, headers = await gateway.get("/p/x")
        self.assertEqual((status, body), (200, b"done"))
        self.assertEqual(upstream.resource.received, [])
        self.assertEqual(headers.getRawHeaders(b"x-kong-response-latency"),
                         headers.getRawHeaders(b"x-response-latency"))
        nil = ("KONG_BALANCER_START", "KONG_PROXIED", "KONG_WAITING_TIME", "KONG_PROXY_LATENCY")
        self.assertEqual(seen(headers), {name: "nil" if name in nil else "number" for name in _FIELDS})
        # in access, what Kong has by then
        in_access = {name: headers.getRawHeaders("x-access-" + name.replace("_", "-"))[0] for name in _FIELDS}
        self.assertEqual(in_access, {name: "number" if name in (
            "KONG_PROCESSING_START", "KONG_REWRITE_START", "KONG_REWRITE_ENDED_AT", "KONG_ACCESS_START")
            else "nil" for name in _FIELDS})
