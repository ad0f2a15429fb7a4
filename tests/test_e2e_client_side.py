"""trusted_ips and HTTPS-only routes end to end: what a load balancer in front says counts."""
from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway, start_upstream

_BALANCER_SAYS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example",
                  "X-Forwarded-Port": "443", "X-Forwarded-Path": "/outside/path",
                  "X-Forwarded-Prefix": "/outside"}
_SCHEME = "kong.request.get_forwarded_scheme()"


class ClientSideTests(TestCase):
    async def _gateway(self, route: dict, **settings: str):
        self.upstream = await start_upstream(self)
        gateway = await start_gateway(self, **settings)
        status, _, _ = await gateway.call("POST", "/services", json={"name": "svc", "url": self.upstream.url})
        self.assertEqual(status, 201)
        status, body, _ = await gateway.call("POST", "/services/svc/routes", json={"paths": ["/p"], **route})
        self.assertEqual(status, 201, body)
        return gateway

    def _forwarded(self, body: bytes) -> dict[str, str]:
        headers = json.loads(body)["headers"]
        return {name: headers[name][0] for name in (
            "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-path",
            "x-forwarded-prefix") if name in headers}

    @deferred
    async def test_a_trusted_balancer_describes_the_request(self) -> None:
        gateway = await self._gateway({"protocols": ["https"]}, trusted_ips="127.0.0.1")
        status, body, _ = await gateway.get("/p/x", headers=_BALANCER_SAYS)
        self.assertEqual(status, 200)  # HTTPS-only, but the balancer terminated TLS
        self.assertEqual(self._forwarded(body),
                         {name.lower(): value for name, value in _BALANCER_SAYS.items()})
        self.assertEqual(json.loads(body)["headers"]["x-forwarded-for"], ["127.0.0.1"])

    @deferred
    async def test_repeated_lines_count_together_as_nginx_joins_them(self) -> None:
        gateway = await self._gateway({"protocols": ["https"]}, trusted_ips="127.0.0.1")
        answer = await gateway.raw(b"GET /p/x HTTP/1.0\r\nHost: a.test\r\nX-Forwarded-Proto: http\r\n"
                                   b"X-Forwarded-Proto: https\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.0 426 "), answer[:40])  # "http, https" is not https

    @deferred
    async def test_an_untrusted_client_cannot_say_it(self) -> None:
        gateway = await self._gateway({}, trusted_ips="10.0.0.0/8")
        status, body, _ = await gateway.get("/p/x", headers={**_BALANCER_SAYS, "Host": "Api.Test:8443"})
        self.assertEqual(status, 200)
        port = gateway.service.ports[0].getHost().port
        self.assertEqual(self._forwarded(body), {
            "x-forwarded-proto": "http", "x-forwarded-host": "api.test", "x-forwarded-port": str(port),
            "x-forwarded-path": "/p/x", "x-forwarded-prefix": "/p"})
        status, _, _ = await (await self._gateway({"protocols": ["https"]})).get("/p/x",
                                                                                 headers=_BALANCER_SAYS)
        self.assertEqual(status, 426)

    @deferred
    async def test_a_trusted_balancer_may_send_only_some(self) -> None:
        gateway = await self._gateway({"strip_path": False}, trusted_ips="0.0.0.0/0")
        _, body, _ = await gateway.get("/p/x", headers={"X-Forwarded-Proto": "https", "Host": "a.test"})
        port = gateway.service.ports[0].getHost().port
        self.assertEqual(self._forwarded(body), {
            "x-forwarded-proto": "https", "x-forwarded-host": "a.test", "x-forwarded-port": str(port),
            "x-forwarded-path": "/p/x"})

    @deferred
    async def test_the_client_behind_trusted_proxies(self) -> None:
        gateway = await self._who("ngx.var.remote_addr", trusted_ips="127.0.0.1, 10.0.0.0/8",
                                  real_ip_header="X-Forwarded-For", real_ip_recursive="on")
        chain = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5, 10.0.0.2"}
        _, body, _ = await gateway.get("/who", headers=chain)
        self.assertEqual(body, b"127.0.0.1 203.0.113.5 203.0.113.5\n")
        _, body, _ = await gateway.get("/p/x", headers=chain)
        seen = json.loads(body)["headers"]
        self.assertEqual(seen["x-real-ip"], ["203.0.113.5"])
        self.assertEqual(seen["x-forwarded-for"], ["198.51.100.7, 203.0.113.5, 10.0.0.2, 127.0.0.1"])

    async def _who(self, also: str, **settings: str):
        """A gateway whose /who route answers with get_ip, get_forwarded_ip and the Lua value ``also``."""
        gateway = await self._gateway({}, **settings)
        status, route, _ = await gateway.call("POST", "/services/svc/routes", json={"paths": ["/who"]})
        status, _, _ = await gateway.call("POST", f"/routes/{route['id']}/plugins", json={
            "name": "pre-function", "config": {"access": [
                f"ngx.say(kong.client.get_ip(), ' ', kong.client.get_forwarded_ip(), ' ', {also}) "
                "ngx.exit(200)"]}})
        self.assertEqual(status, 201)
        return gateway

    async def _through_balancer(self, gateway, source: str, *headers: bytes) -> bytes:
        answer = await gateway.raw(b"PROXY TCP4 %s 127.0.0.1 56324 8000\r\nGET /who HTTP/1.0\r\n"
                                   b"Host: x.test\r\n%s\r\n" % (source.encode(), b"".join(
                                       header + b"\r\n" for header in headers)))
        self.assertTrue(answer.startswith(b"HTTP/1.0 200 OK\r\n"), answer[:60])
        return answer.partition(b"\r\n\r\n")[2]

    @deferred
    async def test_proxy_protocol_from_a_trusted_balancer(self) -> None:
        gateway = await self._who(_SCHEME, proxy_listen="127.0.0.1:0 proxy_protocol", trusted_ips="127.0.0.1",
                                  real_ip_header="proxy_protocol")
        self.assertEqual(await self._through_balancer(gateway, "203.0.113.5"),
                         b"127.0.0.1 203.0.113.5 http\n")
        # no PROXY line
        self.assertEqual(await gateway.raw(b"GET /who HTTP/1.0\r\nHost: x.test\r\n\r\n"), b"")

    @deferred
    async def test_a_proxy_line_cannot_make_a_client_trusted(self) -> None:
        gateway = await self._who(_SCHEME, proxy_listen="127.0.0.1:0 proxy_protocol",
                                  trusted_ips="10.0.0.0/8")
        body = await self._through_balancer(gateway, "10.0.0.9", b"X-Real-IP: 6.6.6.6",
                                            b"X-Forwarded-Proto: https")
        self.assertEqual(body, b"127.0.0.1 127.0.0.1 http\n")

    @deferred
    async def test_https_redirect_status_codes(self) -> None:
        gateway = await self._gateway({"protocols": ["https"], "https_redirect_status_code": 301})
        for code in (301, 302, 307, 308):
            status, _, _ = await gateway.call("PATCH", "/routes/" + (await self._route_id(gateway)),
                                              json={"https_redirect_status_code": code})
            self.assertEqual(status, 200)
            answer = await gateway.raw(b"GET /p/x?a=1 HTTP/1.1\r\nHost: Shop.Test:8000\r\n"
                                       b"Connection: close\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            self.assertEqual(lines[0].split(b" ")[1], b"%d" % code)
            self.assertIn(b"Location: https://shop.test/p/x?a=1", lines)
            self.assertIn(b"Content-Length: 0", lines)
            self.assertIn(b"Server: kong/3.9.0", lines)
            self.assertEqual(body, b"")
        self.assertEqual(self.upstream.resource.received, [])

    async def _route_id(self, gateway) -> str:
        _, routes, _ = await gateway.call("GET", "/routes")
        return routes["data"][0]["id"]
