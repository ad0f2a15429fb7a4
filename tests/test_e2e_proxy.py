"""The proxy end to end: real kongish, real upstream, real sockets on loopback."""
from __future__ import annotations

import datetime
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import CertificateOptions
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from tests.harness import EchoUpstream, closed_port, deferred, start_gateway, start_upstream


def self_signed_localhost() -> CertificateOptions:
    """Server TLS options with a fresh self-signed certificate for DNS name localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256()))
    return CertificateOptions(privateKey=crypto.PKey.from_cryptography_key(key),
                              certificate=crypto.X509.from_cryptography(certificate))


class ProxyTests(TestCase):
    async def _gateway(self, service_path: str = "", **route):
        self.upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        status, _, _ = await gateway.call("POST", "/services", json={
            "name": "echo", "url": self.upstream.url + service_path, "retries": 0})
        self.assertEqual(status, 201)
        route = {"paths": ["/echo"], **route}
        status, body, _ = await gateway.call("POST", "/services/echo/routes", json=route)
        self.assertEqual(status, 201, body)
        return gateway

    @deferred
    async def test_proxies_with_kong_headers(self) -> None:
        gateway = await self._gateway("/base")
        status, body, headers = await gateway.get(
            "/echo/a%20b/c?x=1&y=%2F", headers={"X-Forwarded-For": "10.1.1.1", "Connection": "close"})
        self.assertEqual(status, 200)
        seen = json.loads(body)
        self.assertEqual(seen["uri"], "/base/a%20b/c?x=1&y=%2F")
        upstream_headers = seen["headers"]
        port = gateway.service.ports[0].getHost().port
        self.assertEqual(upstream_headers["host"], [f"127.0.0.1:{self.upstream.port.getHost().port}"])
        self.assertEqual(upstream_headers["x-forwarded-for"], ["10.1.1.1, 127.0.0.1"])
        self.assertEqual(upstream_headers["x-forwarded-proto"], ["http"])
        self.assertEqual(upstream_headers["x-forwarded-port"], [str(port)])
        self.assertEqual(upstream_headers["x-forwarded-host"], ["127.0.0.1"])
        self.assertEqual(upstream_headers["x-forwarded-path"], ["/echo/a%20b/c"])
        self.assertEqual(upstream_headers["x-forwarded-prefix"], ["/echo"])
        self.assertEqual(upstream_headers["x-real-ip"], ["127.0.0.1"])
        self.assertEqual(len(upstream_headers["x-kong-request-id"][0]), 32)
        self.assertEqual(upstream_headers["via"], ["1.1 kong/3.9.0"])
        self.assertEqual(headers.getRawHeaders(b"via"), [b"1.1 kong/3.9.0"])
        self.assertEqual(headers.getRawHeaders(b"x-upstream"), [b"echo"])
        self.assertTrue(headers.hasHeader(b"x-kong-upstream-latency"))
        self.assertTrue(headers.hasHeader(b"x-kong-proxy-latency"))

    @deferred
    async def test_request_body_and_method_reach_upstream(self) -> None:
        gateway = await self._gateway()
        status, body, _ = await gateway.request("POST", "/echo/x", data=b"payload=1")
        seen = json.loads(body)
        self.assertEqual((status, seen["method"], seen["body"], seen["path"]),
                         (200, "POST", "payload=1", "/x"))

    @deferred
    async def test_upstream_errors_pass_through(self) -> None:
        gateway = await self._gateway()
        status, body, _ = await gateway.get("/echo/status/503")
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(body)["path"], "/status/503")

    @deferred
    async def test_streamed_body(self) -> None:
        gateway = await self._gateway()
        status, body, _ = await gateway.get("/echo/stream/50")
        self.assertEqual(body, b"".join(f"chunk{i};".encode() for i in range(50)))

    @deferred
    async def test_connection_refused_is_502(self) -> None:
        gateway = await start_gateway(self)
        await gateway.call("POST", "/services", json={
            "name": "down", "url": f"http://127.0.0.1:{closed_port()}", "retries": 2})
        await gateway.call("POST", "/services/down/routes", json={"paths": ["/down"]})
        status, body, headers = await gateway.get("/down", headers={"Accept": "application/json"})
        self.assertEqual(status, 502)
        self.assertIn(b"An invalid response was received from the upstream server", body)

    @deferred
    async def test_refused_ip_literal_retries_then_502(self) -> None:
        """retries = 5 on a refused IP literal: six connection attempts to that address, then Kong's 502."""
        port = closed_port()
        attempts: list[tuple[str, int]] = []
        connect = reactor.connectTCP

        def counting_connect(host, port, factory, *args, **kwargs):
            attempts.append((host, port))
            return connect(host, port, factory, *args, **kwargs)

        gateway = await start_gateway(self)
        await gateway.expose(f"http://127.0.0.1:{port}", "/refused", retries=5)
        self.patch(reactor, "connectTCP", counting_connect)
        status, body, headers = await gateway.get("/refused", headers={"Accept": "application/json"})
        self.assertEqual(status, 502)
        self.assertEqual(json.loads(body)["message"],
                         "An invalid response was received from the upstream server")
        self.assertEqual([attempt for attempt in attempts if attempt[1] == port], [("127.0.0.1", port)] * 6)

    @deferred
    async def test_read_timeout_is_504(self) -> None:
        self.upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.call("POST", "/services", json={
            "name": "slow", "url": self.upstream.url, "read_timeout": 200, "retries": 0})
        await gateway.call("POST", "/services/slow/routes", json={"paths": ["/slow"]})
        status, body, _ = await gateway.get("/slow/delay/2")
        self.assertEqual(status, 504)
        self.assertEqual(body.splitlines()[0], b"The upstream server is timing out")

    @deferred
    async def test_route_without_service_is_503(self) -> None:
        gateway = await start_gateway(self)
        status, _, _ = await gateway.call("POST", "/routes", json={"paths": ["/lonely"]})
        self.assertEqual(status, 201)
        status, body, _ = await gateway.get("/lonely")
        self.assertEqual(status, 503)
        self.assertIn(b"no Service found with those values", body)

    @deferred
    async def test_https_only_route_over_http_is_426(self) -> None:
        gateway = await self._gateway(protocols=["https"])
        answer = await gateway.raw(b"GET /echo HTTP/1.0\r\nHost: x.test\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.0 426 Upgrade Required")
        self.assertIn(b"Upgrade: TLS/1.2, HTTP/1.1", lines)
        self.assertIn(b"Connection: Upgrade", lines)
        self.assertIn(b"Please use HTTPS protocol", body)
        self.assertEqual(self.upstream.resource.received, [])

    @deferred
    async def test_configuration_changes_reach_the_router_at_once(self) -> None:
        gateway = await self._gateway()
        self.assertEqual((await gateway.get("/later"))[0], 404)
        await gateway.call("POST", "/services/echo/routes", json={"paths": ["/later"]})
        self.assertEqual((await gateway.get("/later"))[0], 200)
        await gateway.call("DELETE", "/services/echo/routes/" + (
            await gateway.call("GET", "/services/echo/routes"))[1]["data"][0]["id"])
        await gateway.call("DELETE", "/services/echo/routes/" + (
            await gateway.call("GET", "/services/echo/routes"))[1]["data"][0]["id"])
        self.assertEqual((await gateway.get("/later"))[0], 404)


class TLSUpstreamTests(TestCase):
    """https services: Kong checks upstream certificates only when ``tls_verify`` is true."""

    async def _gateway(self, **service):
        options = self_signed_localhost()
        self.server_names: list[bytes | None] = []
        options.getContext().set_tlsext_servername_callback(
            lambda connection: self.server_names.append(connection.get_servername()))
        upstream = EchoUpstream()
        port = await SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(Site(upstream))
        self.addCleanup(port.stopListening)
        gateway = await start_gateway(self)
        status, body, _ = await gateway.call("POST", "/services", json={
            "name": "secure", "url": f"https://localhost:{port.getHost().port}", "retries": 0, **service})
        self.assertEqual(status, 201, body)
        status, body, _ = await gateway.call("POST", "/services/secure/routes", json={"paths": ["/s"]})
        self.assertEqual(status, 201, body)
        return gateway

    @deferred
    async def test_self_signed_upstream_by_default_with_sni(self) -> None:
        gateway = await self._gateway()
        status, body, _ = await gateway.get("/s/x")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["path"], "/x")
        self.assertEqual(self.server_names, [b"localhost"])

    @deferred
    async def test_tls_verify_refuses_an_untrusted_certificate(self) -> None:
        gateway = await self._gateway(tls_verify=True)
        status, body, _ = await gateway.get("/s/x", headers={"Accept": "application/json"})
        self.assertEqual(status, 502)
        self.assertEqual(json.loads(body)["message"],
                         "An invalid response was received from the upstream server")
