"""client_side: a trusted proxy's X-Forwarded-* win, anyone else's never do."""
from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from kongish.proxy.forwarded import Forwarded, client_side

_FIELDS = ("proto", "host", "port", "path", "prefix")
_VALUES = st.binary(min_size=0, max_size=12).filter(lambda value: b"\r" not in value and b"\n" not in value)


@attrs.define
class _Request:
    """The three IProxiedRequest methods client_side reads."""

    headers: dict[bytes, bytes]
    secure: bool = False

    def isSecure(self) -> bool:
        return self.secure

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name)

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
