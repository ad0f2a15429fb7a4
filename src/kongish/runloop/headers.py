"""Kong's header rules for the upstream request and the downstream response."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
from twisted.web.http_headers import Headers

from kongish import KONG_VERSION
from kongish.http.headers import (
    CONNECTION,
    HOST,
    PROXY_LATENCY,
    REQUEST_ID,
    RESPONSE_LATENCY,
    SERVER,
    TE,
    UPSTREAM_LATENCY,
    UPSTREAM_STATUS,
    VIA,
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    X_FORWARDED_PATH,
    X_FORWARDED_PORT,
    X_FORWARDED_PREFIX,
    X_FORWARDED_PROTO,
    X_REAL_IP,
    GatewayHeaders,
    copy_end_to_end,
    header_tokens,
)

if TYPE_CHECKING:
    from kongish.runloop.forwarded import Forwarded

VIA_TOKEN = f"1.1 kong/{KONG_VERSION}".encode()
SERVER_TOKEN = f"kong/{KONG_VERSION}".encode()

#: Recomputed by kongish for each upstream request (the body's length by the HTTP client).
_RECOMPUTED = frozenset({
    b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    b"x-forwarded-path", b"x-forwarded-prefix", b"x-real-ip", b"via", b"x-kong-request-id",
    b"content-length",
})


#: Via's value per client HTTP version, made once.
_VIA = {version: f"{version} kong/{KONG_VERSION}".encode() for version in ("1.0", "1.1")}


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
    # values the client sent (sanitized by Headers when parsed) or kongish made
    put = headers.put
    put(HOST, host_header.encode("latin-1"))
    put(CONNECTION, b"keep-alive")
    if b"trailers" in header_tokens(incoming, b"te"):
        put(TE, b"trailers")
    sent_for = incoming.getRawHeaders(b"x-forwarded-for")
    put(X_FORWARDED_FOR, _appended(sent_for, peer_ip.encode()) if sent_for else client)
    put(X_FORWARDED_PROTO, forwarded.proto)
    put(X_FORWARDED_HOST, forwarded.host)
    put(X_FORWARDED_PORT, forwarded.port)
    put(X_FORWARDED_PATH, forwarded.path)
    if forwarded.prefix is not None:
        put(X_FORWARDED_PREFIX, forwarded.prefix)
    put(X_REAL_IP, client)
    via = _VIA.get(http_version) or f"{http_version} kong/{KONG_VERSION}".encode()
    put(VIA, _appended(incoming.getRawHeaders(b"via"), via))
    if request_id:
        put(REQUEST_ID, request_id.encode())
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
