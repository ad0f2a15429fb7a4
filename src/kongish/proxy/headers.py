"""Kong's header rules for the upstream request and the downstream response."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, AnyStr

import attrs
from twisted.web.http import datetimeToString
from twisted.web.http_headers import Headers

from kongish import KONG_VERSION

if TYPE_CHECKING:
    from kongish.proxy.forwarded import Forwarded

VIA_TOKEN = f"1.1 kong/{KONG_VERSION}".encode()
SERVER_TOKEN = f"kong/{KONG_VERSION}".encode()

#: Never forwarded in either direction (RFC 9110 section 7.6.1 plus Kong's Proxy* names).
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection", b"proxy",
})
#: Recomputed by kongish for each upstream request (the body's length by the HTTP client).
_RECOMPUTED = frozenset({
    b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    b"x-forwarded-path", b"x-forwarded-prefix", b"x-real-ip", b"via", b"x-kong-request-id",
    b"content-length",
})


def canonical(name: bytes) -> bytes:
    """``name`` as ``Headers`` stores it, for ``GatewayHeaders.put``."""
    probe = Headers()
    probe.setRawHeaders(name, [b""])
    return next(probe.getAllRawHeaders())[0]


try:  # the key Headers keeps a name's values under, as Headers computes (and caches) it
    from twisted.web.http_headers import _nameEncoder
    _key: Callable[[str | bytes], bytes] = _nameEncoder.encode
except ImportError:  # a Twisted without it: the same key, the slow way
    _key = lru_cache(maxsize=4096)(lambda name: canonical(name.encode("iso-8859-1") if isinstance(name, str)
                                                          else name))


class CasedHeaders(Headers):
    """Headers that send each name spelled as it was given, as nginx does.

    Lookups stay case-insensitive: values are kept under the name as ``Headers``
    canonicalizes it, and the spelling a client, an upstream or a plugin gave
    is kept beside it, for ``getAllRawHeaders`` (what the wire writers read).
    ``setRawHeaders`` takes the spelling of its call; ``addRawHeader`` keeps the
    one the header already has. kongish's own names are set canonically spelled.
    """

    __slots__ = ("_given",)

    def __init__(self, rawHeaders: Mapping[AnyStr, Sequence[AnyStr]] | None = None) -> None:
        #: Canonical name -> the spelling given, for names not given canonically.
        self._given: dict[bytes, bytes] = {}
        super().__init__(rawHeaders)

    def _spell(self, key: bytes, name: str | bytes) -> None:
        given = name.encode("iso-8859-1") if isinstance(name, str) else name
        if given == key:
            self._given.pop(key, None)
        else:
            self._given[key] = given

    def setRawHeaders(self, name: str | bytes, values: Sequence[str | bytes]) -> None:
        super().setRawHeaders(name, values)
        self._spell(_key(name), name)

    def addRawHeader(self, name: str | bytes, value: str | bytes) -> None:
        key = _key(name)
        if key not in self._rawHeaders:
            self._spell(key, name)
        super().addRawHeader(name, value)

    def removeHeader(self, name: AnyStr) -> None:
        key = _key(name)
        self._rawHeaders.pop(key, None)
        self._given.pop(key, None)

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        """Every header as (name as given, values)."""
        given = self._given
        if not given:
            return iter(self._rawHeaders.items())
        return ((given.get(key, key), values) for key, values in self._rawHeaders.items())

    def copy(self) -> CasedHeaders:
        copied = self.__class__()
        copied._rawHeaders = {key: list(values) for key, values in self._rawHeaders.items()}
        copied._given = dict(self._given)
        return copied


class GatewayHeaders(CasedHeaders):
    """Headers that also take values kongish formats itself, unchecked.

    ``setRawHeaders`` checks the name and sanitizes every value: right for what
    clients, upstreams and plugins send, wasted on kongish's own digits, tokens
    and request ids, which are most headers of a short-circuit response.
    """

    __slots__ = ()

    def put(self, name: bytes, value: bytes) -> None:
        """Set ``name`` (as ``canonical`` gives it, and so spelled) to ``value``, which kongish
        made or took from Headers that sanitized it already: never to anything else."""
        self._rawHeaders[name] = [value]
        if self._given:
            self._given.pop(name, None)

    def respell(self, name: bytes) -> None:
        """Send ``name`` (as ``canonical`` gives it) so spelled, whoever set it and how."""
        if self._given:
            self._given.pop(name, None)

    def own(self, name: bytes) -> list[bytes] | None:
        """The values under ``name`` (as ``canonical`` gives it), without re-encoding the name."""
        return self._rawHeaders.get(name) or None


SERVER, VIA, CONTENT_TYPE, CONTENT_LENGTH = map(
    canonical, (b"server", b"via", b"content-type", b"content-length"))
HOST, CONNECTION, TE, LOCATION = map(canonical, (b"host", b"connection", b"te", b"location"))
(X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PATH,
 X_FORWARDED_PREFIX, X_REAL_IP) = map(canonical, (
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    b"x-forwarded-path", b"x-forwarded-prefix", b"x-real-ip"))
RESPONSE_LATENCY, UPSTREAM_LATENCY, PROXY_LATENCY, UPSTREAM_STATUS, REQUEST_ID = map(canonical, (
    b"x-kong-response-latency", b"x-kong-upstream-latency", b"x-kong-proxy-latency",
    b"x-kong-upstream-status", b"x-kong-request-id"))


def _tokens(headers: Headers, name: bytes) -> frozenset[bytes]:
    """The comma-separated tokens of all ``name`` headers, lower-cased."""
    tokens: set[bytes] = set()
    for value in headers.getRawHeaders(name, []):
        tokens.update(token.strip().lower() for token in value.split(b","))
    return frozenset(tokens)


def copy_end_to_end(source: Headers, skip: frozenset[bytes] = frozenset()) -> GatewayHeaders:
    """The headers of ``source`` minus hop-by-hop ones and those in ``skip``."""
    dropped = HOP_BY_HOP | _tokens(source, b"connection") | skip
    copied = GatewayHeaders()
    for name, values in source.getAllRawHeaders():
        if name.lower() not in dropped:
            copied.setRawHeaders(name, values)
    return copied


def _appended(existing: Sequence[bytes] | None, value: bytes) -> bytes:
    return b", ".join([*(existing or []), value])


def upstream_headers(incoming: Headers, *, host_header: str, peer_ip: str, client_ip: str,
                     forwarded: Forwarded, request_id: str, http_version: str = "1.1") -> GatewayHeaders:
    """Headers to send upstream, per Kong's proxy rules (X-Forwarded-*, X-Real-IP, Via).

    ``peer_ip`` connected to kongish; ``client_ip`` is who a trusted proxy there says the
    client is (the same address without one). X-Forwarded-For gains the first, and
    starts from the second when the request had none. The client's headers keep their
    names' spelling; those kongish sets are spelled canonically.
    """
    headers = copy_end_to_end(incoming, _RECOMPUTED)
    client = client_ip.encode()
    headers.setRawHeaders(HOST, [host_header.encode("latin-1")])
    headers.setRawHeaders(CONNECTION, [b"keep-alive"])
    if b"trailers" in _tokens(incoming, b"te"):
        headers.setRawHeaders(TE, [b"trailers"])
    sent_for = incoming.getRawHeaders(b"x-forwarded-for")
    headers.setRawHeaders(X_FORWARDED_FOR, [_appended(sent_for, peer_ip.encode()) if sent_for else client])
    headers.setRawHeaders(X_FORWARDED_PROTO, [forwarded.proto])
    headers.setRawHeaders(X_FORWARDED_HOST, [forwarded.host])
    headers.setRawHeaders(X_FORWARDED_PORT, [forwarded.port])
    headers.setRawHeaders(X_FORWARDED_PATH, [forwarded.path])
    if forwarded.prefix is not None:
        headers.setRawHeaders(X_FORWARDED_PREFIX, [forwarded.prefix])
    headers.setRawHeaders(X_REAL_IP, [client])
    via = f"{http_version} kong/{KONG_VERSION}".encode()
    headers.setRawHeaders(VIA, [_appended(incoming.getRawHeaders(b"via"), via)])
    if request_id:
        headers.setRawHeaders(REQUEST_ID, [request_id.encode()])
    return headers


@attrs.frozen
class KongHeaders:
    """Kong's own response headers, as kong.conf's ``headers`` enables them.

    Added after header_filter, as Kong's runloop adds them, so plugins neither
    see nor remove them; which ones is decided once, not per request.
    """

    server: bool
    via: bool
    upstream_latency: bool
    proxy_latency: bool
    response_latency: bool
    request_id: bool
    upstream_status: bool

    @classmethod
    def enabled(cls, names: frozenset[str]) -> KongHeaders:
        """From the lower-case header names ``Settings.headers`` gives."""
        return cls(*(name in names for name in (
            "server", "via", "x-kong-upstream-latency", "x-kong-proxy-latency",
            "x-kong-response-latency", "x-kong-request-id", "x-kong-upstream-status")))

    def add_upstream_status(self, headers: GatewayHeaders, status: int) -> None:
        """Before header_filter, unlike the others, as Kong's runloop sets it."""
        if self.upstream_status:
            headers.put(UPSTREAM_STATUS, b"%d" % status)

    def add_proxied(self, headers: GatewayHeaders, upstream_ms: int, proxy_ms: int,
                    upstream_via: Sequence[bytes] | None, request_id: bytes) -> None:
        """For the upstream's answers and the gateway errors of calling it.

        ``upstream_via`` is the Via the upstream answered with, if it answered.
        """
        if self.upstream_latency:
            headers.put(UPSTREAM_LATENCY, b"%d" % upstream_ms)
        if self.proxy_latency:
            headers.put(PROXY_LATENCY, b"%d" % proxy_ms)
        if self.via:  # 3.8+: the upstream's Via, then kongish's
            headers.put(VIA, _appended(upstream_via, VIA_TOKEN))
        if self.server and not headers.own(SERVER):
            headers.put(SERVER, SERVER_TOKEN)
        if self.request_id:
            headers.put(REQUEST_ID, request_id)

    def add_own(self, headers: GatewayHeaders, response_ms: int, request_id: bytes) -> None:
        """For answers kongish or a plugin made without calling the upstream."""
        if self.response_latency:
            headers.put(RESPONSE_LATENCY, b"%d" % response_ms)
        # a plugin answering as "Via: kong/<version>" keeps its own Server
        if not (self.via and headers.own(VIA) == [SERVER_TOKEN]):
            if self.server:
                headers.put(SERVER, SERVER_TOKEN)
            else:
                headers.removeHeader(b"server")
        if self.request_id:
            headers.put(REQUEST_ID, request_id)


def http_date() -> bytes:
    """The Date header's value now; computed once a second, as nginx does."""
    return _date_of(int(time.time()))


@lru_cache(maxsize=2)
def _date_of(second: int) -> bytes:
    return datetimeToString(second)
