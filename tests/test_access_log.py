"""Access log lines in nginx's combined format."""
from __future__ import annotations

import re

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kongish.http.access_log import combined, kong

_NOW = "[25/Nov/2026:12:00:00 +0000]"
#: nginx's combined format, with every field escaped so that it cannot hold a quote or a newline.
_COMBINED = re.compile(r'^\S+ - \S+ \[[^]]+\] "[^"\\]*(\\x[0-9A-F]{2}[^"\\]*)*" \d{3} \d+ "[^"]*" "[^"]*"$')


@attrs.define
class _Logged:
    """What the formatters read of a request: its connection's transport gives the address."""

    method: bytes = b"GET"
    uri: bytes = b"/a?b=1"
    clientproto: bytes = b"HTTP/1.1"
    code: int = 200
    sentLength: int = 12
    headers: dict[bytes, bytes] = attrs.Factory(dict)
    address: object = IPv4Address("TCP", "192.0.2.1", 40000)
    remote_addr: str | None = None
    request_id: str | None = None
    outbound: tuple[int, float] | None = None

    @property
    def channel(self) -> object:
        return self

    @property
    def transport(self) -> StringTransport:
        return StringTransport(peerAddress=self.address)

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


class CombinedTests(SynchronousTestCase):
    def test_nginx_line(self) -> None:
        self.assertEqual(combined(_NOW, _Logged(headers={b"user-agent": b"curl/8.5.0"})),
                         '192.0.2.1 - - [25/Nov/2026:12:00:00 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "-" '
                         '"curl/8.5.0"')

    def test_no_body_and_no_address(self) -> None:
        line = combined(_NOW, _Logged(code=204, sentLength=0, address=UNIXAddress(None)))
        self.assertTrue(line.startswith('- - - [') and '" 204 0 "' in line, line)

    def test_remote_user_from_basic_credentials(self) -> None:
        for authorization, user in [(b"Basic dXNlcjpwYXNz", "user"), (b"basic dXNlcjo=", "user"),
                                    (b"Basic dXNlcjpwYQ", "user"), (b"Basic YWxpY2U=", "-"),
                                    (b"Bearer abc", "-"), (b"Basic !!!", "-"), (b"Basic OnBhc3M=", "-")]:
            line = combined(_NOW, _Logged(headers={b"authorization": authorization}))
            self.assertTrue(line.startswith(f"192.0.2.1 - {user} ["), (authorization, line))

    def test_the_client_a_trusted_proxy_reported(self) -> None:
        logged = _Logged(remote_addr="203.0.113.9")
        self.assertTrue(combined(_NOW, logged).startswith("203.0.113.9 - - "))

    def test_kongs_proxy_format_ends_with_the_request_id(self) -> None:
        logged = _Logged(request_id="0123456789abcdef0123456789abcdef")
        self.assertEqual(kong(_NOW, logged),
                         combined(_NOW, logged) + ' kong_request_id: "0123456789abcdef0123456789abcdef"')

    def test_outbound_calls_follow_the_request_id(self) -> None:
        logged = _Logged(request_id="ab" * 16, outbound=(2, 0.2034))
        self.assertEqual(kong(_NOW, logged), combined(_NOW, logged)
                         + f' kong_request_id: "{"ab" * 16}" kongish_outbound: "2 203ms"')

    @given(st.binary(max_size=30), st.binary(max_size=30), st.binary(max_size=30))
    def test_anything_a_client_sends_stays_inside_its_field(self, uri: bytes, agent: bytes,
                                                            method: bytes) -> None:
        line = combined(_NOW, _Logged(method=method or b"GET", uri=uri, headers={b"user-agent": agent}))
        self.assertRegex(line, _COMBINED)
        self.assertNotIn("\n", line)
