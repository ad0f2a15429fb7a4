"""client_side: a trusted proxy's X-Forwarded-* win, anyone else's never do."""
from __future__ import annotations

from typing import cast

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocol, ITransport
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kongish.http.interfaces import IProxiedRequest
from kongish.http.peer import socket_peer
from kongish.http.realip import RealIp, TrustedNetworks
from kongish.runloop.forwarded import Forwarded, client_side

_FIELDS = ("proto", "host", "port", "path", "prefix")
_VALUES = st.binary(min_size=0, max_size=12).filter(lambda value: b"\r" not in value and b"\n" not in value)


@attrs.define
class _Request:
    """The parts of IProxiedRequest client_side reads."""

    headers: dict[bytes, bytes]
    secure: bool = False

    def isSecure(self) -> bool:
        return self.secure

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name)

    @property
    def requestHeaders(self) -> Headers:
        return Headers({name: [value] for name, value in self.headers.items()})

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 8000)


class ClientSideTests(SynchronousTestCase):
    @given(st.dictionaries(st.sampled_from(_FIELDS), _VALUES), st.booleans(), st.booleans(),
           st.sampled_from([None, "/", "/api"]))
    def test_trusted_headers_win_field_by_field(self, sent: dict[str, bytes], trusted: bool,
                                                secure: bool, stripped: str | None) -> None:
        headers = {b"x-forwarded-" + name.encode(): value for name, value in sent.items()}
        request = cast(IProxiedRequest, _Request({b"host": b"Api.Test:8443", **headers}, secure))
        seen = client_side(request, trusted=trusted, raw_target=b"/api/x?q=1", stripped_prefix=stripped)
        own = Forwarded(b"https" if secure else b"http", b"api.test", b"8000", b"/api/x",
                        b"/api" if stripped == "/api" else None)
        for field in _FIELDS:
            expected = sent[field] if trusted and field in sent else getattr(own, field)
            self.assertEqual(getattr(seen, field), expected, field)

    def test_no_host_header_is_kongs_server_name(self) -> None:
        seen = client_side(cast(IProxiedRequest, _Request({})), trusted=False, raw_target=b"/",
                           stripped_prefix=None)
        self.assertEqual(seen.host, b"kong")


_TRUSTED = TrustedNetworks.parse("10.0.0.0/8, 127.0.0.1")


@attrs.define
class _Sent:
    """A request's header lines and the address its listener reports (a PROXY line's source)."""

    lines: list[tuple[bytes, bytes]]
    reported: str = "192.0.2.200"

    @property
    def requestHeaders(self) -> Headers:
        headers = Headers()
        for name, value in self.lines:
            headers.addRawHeader(name, value)
        return headers

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", self.reported, 40000)


class RealIpTests(SynchronousTestCase):
    def _client(self, real_ip: RealIp, peer: str, *lines: bytes) -> str:
        name = real_ip.header or b"-"
        return real_ip.client_ip(peer, cast(IProxiedRequest, _Sent([(name, line) for line in lines])))

    def test_the_rightmost_address_of_a_trusted_peer(self) -> None:
        xff = RealIp(_TRUSTED, b"x-forwarded-for")
        chain = b"203.0.113.5, 198.51.100.7, 10.0.0.2"
        self.assertEqual(self._client(xff, "127.0.0.1", chain), "10.0.0.2")
        self.assertEqual(self._client(attrs.evolve(xff, recursive=True), "127.0.0.1", chain), "198.51.100.7")
        self.assertEqual(self._client(attrs.evolve(xff, recursive=True), "192.0.2.9", chain), "192.0.2.9")
        self.assertEqual(self._client(RealIp(TrustedNetworks()), "10.1.1.1", b"192.0.2.1"), "10.1.1.1")

    def test_lines_and_separators_as_nginx_reads_them(self) -> None:
        recursive = RealIp(_TRUSTED, b"x-forwarded-for", recursive=True)
        self.assertEqual(self._client(recursive, "127.0.0.1", b"192.0.2.7, 10.0.0.3", b"10.0.0.2"),
                         "192.0.2.7")
        self.assertEqual(self._client(recursive, "127.0.0.1", b"192.0.2.1 10.0.0.5"), "192.0.2.1")
        self.assertEqual(self._client(RealIp(_TRUSTED), "10.1.1.1", b"192.0.2.1", b"192.0.2.2"), "192.0.2.1")

    def test_address_forms(self) -> None:
        real_ip = RealIp(_TRUSTED)
        for sent, found in [(b"192.0.2.1:8080", "192.0.2.1"), (b"[2001:db8::1]:443", "2001:db8::1"),
                            (b"2001:db8::1", "2001:db8::1"), (b"::ffff:192.0.2.1", "::ffff:192.0.2.1"),
                            (b"[2001:db8::1]", "10.1.1.1"), (b"192.0.2.1:abc", "10.1.1.1"),
                            (b"192.0.2.1:", "10.1.1.1"), (b"192.0.2.1:0", "10.1.1.1"),
                            (b"192.0.2.1:99999", "10.1.1.1"), (b"fe80::1%eth0", "10.1.1.1"),
                            (b"not an ip", "10.1.1.1")]:
            self.assertEqual(self._client(real_ip, "10.1.1.1", sent), found, sent)

    def test_proxy_protocol_counts_from_a_trusted_balancer_only(self) -> None:
        real_ip = RealIp(_TRUSTED, None)
        self.assertEqual(self._client(real_ip, "10.1.1.1"), "192.0.2.200")
        self.assertEqual(self._client(real_ip, "203.0.113.1"), "203.0.113.1")

    @given(st.lists(st.sampled_from(["10.0.0.1", "10.9.9.9", "127.0.0.1", "203.0.113.5", "198.51.100.7"]),
                    max_size=5),
           st.sampled_from(["127.0.0.1", "10.2.3.4", "203.0.113.77"]), st.booleans())
    def test_a_walk_from_the_right_that_only_trusted_hops_continue(
            self, chain: list[str], peer: str, recursive: bool) -> None:
        found = self._client(RealIp(_TRUSTED, b"x-forwarded-for", recursive), peer, ", ".join(chain).encode())
        expected, hops = peer, 0
        for hop in reversed(chain):
            if expected not in _TRUSTED or (hops and not recursive):
                break
            expected, hops = hop, hops + 1
        self.assertEqual(found, expected)


class SocketPeerTests(SynchronousTestCase):
    def _request(self, transport: object) -> IProxiedRequest:
        channel = type("Channel", (), {"transport": transport})()
        claimed = IPv4Address("TCP", "6.6.6.6", 1)  # what a PROXY line would claim
        return cast(IProxiedRequest,
                    type("Request", (), {"channel": channel, "getClientAddress": lambda self: claimed})())

    def test_beneath_every_wrapper(self) -> None:
        socket = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 40000))
        # Only the transport chain matters here: no factory and no wrapped protocol.
        inner = ProtocolWrapper(WrappingFactory(None), cast(IProtocol, None))
        outer = ProtocolWrapper(WrappingFactory(None), cast(IProtocol, None))
        inner.transport, outer.transport = socket, cast(ITransport, inner)
        self.assertEqual(socket_peer(self._request(outer)), "10.0.0.1")
        self.assertEqual(socket_peer(self._request(socket)), "10.0.0.1")

    def test_a_stream_without_a_transport_of_its_own(self) -> None:
        self.assertEqual(socket_peer(self._request(None)), "6.6.6.6")  # HTTP/2: the connection's

