"""client_side: a trusted proxy's X-Forwarded-* win, anyone else's never do."""
from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kongish.proxy.forwarded import Forwarded, RealIp, TrustedNetworks, client_side

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
        request = _Request({b"host": b"Api.Test:8443", **headers}, secure)
        seen = client_side(request, trusted=trusted, raw_target=b"/api/x?q=1", stripped_prefix=stripped)
        own = Forwarded(b"https" if secure else b"http", b"api.test", b"8000", b"/api/x",
                        b"/api" if stripped == "/api" else None)
        for field in _FIELDS:
            expected = sent[field] if trusted and field in sent else getattr(own, field)
            self.assertEqual(getattr(seen, field), expected, field)

    def test_no_host_header_is_kongs_server_name(self) -> None:
        seen = client_side(_Request({}), trusted=False, raw_target=b"/", stripped_prefix=None)
        self.assertEqual(seen.host, b"kong")


_TRUSTED = TrustedNetworks.parse("10.0.0.0/8, 127.0.0.1")
_ADDRESSES = st.sampled_from(["10.0.0.1", "10.9.9.9", "203.0.113.5", "198.51.100.7", "bogus", "",
                              "[2001:db8::1]:443", "192.0.2.1:8080"])


class RealIpTests(SynchronousTestCase):
    def _client(self, real_ip: RealIp, peer: str, **headers: bytes) -> str:
        return real_ip.client_ip(peer, {name.replace("_", "-").encode(): value
                                        for name, value in headers.items()}.get)

    def test_nginx_realip_examples(self) -> None:
        xff = RealIp(_TRUSTED, b"x-forwarded-for")
        chain = b"203.0.113.5, 198.51.100.7, 10.0.0.2"
        self.assertEqual(self._client(xff, "127.0.0.1", x_forwarded_for=chain), "10.0.0.2")
        recursive = attrs.evolve(xff, recursive=True)
        self.assertEqual(self._client(recursive, "127.0.0.1", x_forwarded_for=chain), "198.51.100.7")
        self.assertEqual(self._client(recursive, "192.0.2.9", x_forwarded_for=chain), "192.0.2.9")
        self.assertEqual(self._client(RealIp(_TRUSTED), "10.1.1.1", x_real_ip=b"192.0.2.1:8080"), "192.0.2.1")
        self.assertEqual(self._client(RealIp(_TRUSTED), "10.1.1.1", x_real_ip=b"not an ip"), "10.1.1.1")
        self.assertEqual(self._client(RealIp(_TRUSTED, None), "10.1.1.1", x_real_ip=b"192.0.2.1"), "10.1.1.1")
        self.assertEqual(self._client(RealIp(TrustedNetworks()), "10.1.1.1", x_real_ip=b"192.0.2.1"), "10.1.1.1")

    @given(st.lists(_ADDRESSES, max_size=5), st.sampled_from(["127.0.0.1", "10.2.3.4", "203.0.113.77"]),
           st.booleans())
    def test_a_walk_from_the_right_that_only_trusted_hops_continue(
            self, chain: list[str], peer: str, recursive: bool) -> None:
        real_ip = RealIp(_TRUSTED, b"x-forwarded-for", recursive)
        found = self._client(real_ip, peer, x_forwarded_for=", ".join(chain).encode())
        if peer not in _TRUSTED:
            self.assertEqual(found, peer)
            return
        hops = [peer]  # the addresses the walk may stop at, right to left
        for item in reversed([item for item in chain if item]):
            if hops[-1] not in _TRUSTED or (len(hops) > 1 and not recursive):
                break
            address = item.strip("[").split("]")[0] if item.startswith("[") else item.split(":")[0]
            if address not in ("10.0.0.1", "10.9.9.9", "203.0.113.5", "198.51.100.7", "2001:db8::1", "192.0.2.1"):
                break
            hops.append(address)
        self.assertEqual(found, hops[-1])
