"""Calling the upstream service: Kong's timeouts, retries, keep-alive pools and failure classes.

Requests go out on kongish's own HTTP/1.1 client (:mod:`kongish.http.upstream_connection`,
llhttp through httptools) over Kong's keep-alive pools (:mod:`kongish.http.pool`). treq
and Twisted's Agent are not on this path: Agent's per-request cost (its request and
response objects, its header conversions, a parser in Python) was most of a proxied
request's, and a proxy must pass cookies and gzip through untouched, which treq's
``HTTPClient`` does not.

Kong's timeouts are per phase, as nginx's are: ``connect_timeout`` bounds
connecting, ``write_timeout`` each wait for the upstream to take more of the
request, ``read_timeout`` each wait for the upstream to send something (the
response head here; the body's chunks in ``kongish.runloop.relay``).

Connections go straight to an address: an IP literal, or the next address of a host
name as :mod:`kongish.http.names` keeps them (resolved once per TTL, never per
request). Twisted's ``HostnameEndpoint`` is not used: it starts one attempt per
address every 0.3 s and notices the list has ended at the next tick, so a refused
connection to a name's only address failed 0.3 s late on every try; and a retry
goes to the next address, as Kong's balancer does.

A kept-alive connection the upstream closed while it was idle is found out when
a request is written on it and nothing comes back: an idempotent request is then
sent again on another connection without counting as a try, as a browser would.

Header names keep their spelling both ways, as nginx keeps them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO, cast

import attrs
from twisted.internet import error as net_errors
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kongish.http.interfaces import IUpstreamClient, IUpstreamRequest, IUpstreamResponse, UpstreamSettings
from kongish.http.names import DnsSettings, NameCache
from kongish.http.pool import KeepalivePools, KeepaliveSettings
from kongish.http.tls import UpstreamTLSPolicy
from kongish.http.upstream_connection import (
    HEAD_LIMIT,
    UpstreamClosed,
    UpstreamConnection,
    UpstreamHeadTooLarge,
    UpstreamTimeout,
)
from kongish.router.upstream_path import escape_path

__all__ = ["HEAD_LIMIT", "UpstreamClient", "UpstreamFailure", "UpstreamTimeout", "classify", "settings_for"]

log = Logger()

#: Methods nginx may send again after a failed try (its ``non_idempotent`` list is the rest).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
#: Methods whose request says its length even when the body is empty, as Twisted's client did.
_LENGTH_ALWAYS = frozenset({"POST", "PUT", "PATCH"})
#: Endpoints kept for reuse (one per upstream address, port, TLS check and connect timeout).
_ENDPOINTS_KEPT = 4096


class UpstreamFailure(Exception):
    """The upstream could not answer; ``status`` and ``message`` are Kong's answer."""

    def __init__(self, status: int, message: str, renderer: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: "A" for kongish-built answers (Accept only), "B" for upstream-leg errors.
        self.renderer = renderer

    @property
    def proxied(self) -> bool:
        """Whether the request went as far as an upstream connection: Kong then counts the
        error as proxied (latency headers, Via), unlike a name that never resolved."""
        return self.renderer == "B"


def classify(failure_value: BaseException) -> UpstreamFailure:
    """Kong's answer for the last failed try; its ``__cause__`` is that try's error."""
    if isinstance(failure_value, net_errors.DNSLookupError):
        failure = UpstreamFailure(503, "name resolution failed", "A")
    elif isinstance(failure_value, (UpstreamTimeout, net_errors.TimeoutError)):
        failure = UpstreamFailure(504, "The upstream server is timing out", "B")
    else:
        failure = UpstreamFailure(502, "An invalid response was received from the upstream server", "B")
    failure.__cause__ = failure_value
    return failure


def settings_for(service: Mapping[str, Any]) -> UpstreamSettings:
    """How to call a Service entity: its timeouts (milliseconds in Kong), retries and TLS check."""
    return UpstreamSettings(
        connect_timeout=service["connect_timeout"] / 1000, write_timeout=service["write_timeout"] / 1000,
        read_timeout=service["read_timeout"] / 1000, retries=int(service.get("retries") or 0),
        tls_verify=service.get("tls_verify") is True, tls_verify_depth=service.get("tls_verify_depth"))


def request_head(upstream: IUpstreamRequest, length: int) -> bytes:
    """The request line and headers, names spelled as given; the body's own Content-Length."""
    target = escape_path(upstream.path).encode("utf-8", "surrogateescape")
    if upstream.query is not None:
        target += b"?" + upstream.query.encode("utf-8", "surrogateescape")
    lines = [upstream.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    has_host = False
    for name, values in upstream.headers.getAllRawHeaders():
        lowered = name.lower()
        if lowered == b"content-length":
            continue
        has_host = has_host or lowered == b"host"
        for value in values:
            lines += (name, b": ", value, b"\r\n")
    if not has_host:
        lines += (b"Host: ", _host_header(upstream), b"\r\n")
    if length or upstream.method in _LENGTH_ALWAYS:
        lines += (b"Content-Length: ", str(length).encode("ascii"), b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def _host_header(upstream: IUpstreamRequest) -> bytes:
    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    if upstream.port != (443 if upstream.scheme == "https" else 80):
        host += f":{upstream.port}"
    return _ascii_host(host)


def _ascii_host(host: str) -> bytes:
    """A host as it goes on the wire: IDNA for a name that is not ASCII."""
    return host.encode("ascii") if host.isascii() else host.encode("idna")


@implementer(IUpstreamClient)
@attrs.define(eq=False)
class UpstreamClient:
    """Sends upstream requests over Kong's keep-alive pools."""

    reactor: Any
    keepalive: KeepaliveSettings = KeepaliveSettings()
    pools: KeepalivePools = attrs.field(init=False)
    #: One TLS policy per (tls_verify, tls_verify_depth) in use.
    _tls: dict[tuple[bool, int | None], UpstreamTLSPolicy] = attrs.field(init=False, factory=dict)
    dns: DnsSettings = DnsSettings()
    names: NameCache = attrs.field(init=False)
    _endpoints: dict[tuple[str, str, str, int, bool, int | None, float], IStreamClientEndpoint] = attrs.field(
        init=False, factory=dict)
    _factory: Factory = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.pools = KeepalivePools(self.keepalive)
        self.names = NameCache(self.reactor, self.dns)
        self._factory = Factory.forProtocol(lambda: UpstreamConnection(self.reactor))

    def send(self, request: IUpstreamRequest, settings: UpstreamSettings,
             body: bytes | BinaryIO) -> Deferred[IUpstreamResponse]:
        """Try up to ``retries + 1`` times; fail with UpstreamFailure when every try failed.

        Connection errors and timeouts are retried (nginx's ``error timeout``),
        except for a non-idempotent request that already reached an upstream.
        Cancelling the returned Deferred (the client went away) ends the try
        in progress and fails it with ``CancelledError``.
        """
        return _Call.start(self, request, settings, body)

    def close(self) -> Deferred[None]:
        """Close the idle connections."""
        return self.pools.close()

    def _connect(self, upstream: IUpstreamRequest,
                 settings: UpstreamSettings) -> Deferred[UpstreamConnection]:
        """A new connection: to an IP literal directly, to a name at its next address."""
        host = upstream.host
        if isIPAddress(host) or isIPv6Address(host):
            return self._connect_to(upstream, settings, host)
        return self.names.address(host).addCallback(
            lambda address: self._connect_to(upstream, settings, address))

    def _connect_to(self, upstream: IUpstreamRequest, settings: UpstreamSettings,
                    address: str) -> Deferred[UpstreamConnection]:
        key = (upstream.scheme, upstream.host, address, upstream.port, settings.tls_verify,
               settings.tls_verify_depth, settings.connect_timeout)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= _ENDPOINTS_KEPT:
                self._endpoints.clear()
            endpoint = self._endpoints[key] = self._endpoint(upstream, settings, address)
        return cast(Deferred[UpstreamConnection], endpoint.connect(self._factory))

    def _tls_policy(self, settings: UpstreamSettings) -> UpstreamTLSPolicy:
        key = (settings.tls_verify, settings.tls_verify_depth if settings.tls_verify else None)
        policy = self._tls.get(key)
        if policy is None:
            policy = self._tls[key] = UpstreamTLSPolicy(*key)
        return policy

    def _endpoint(self, upstream: IUpstreamRequest, settings: UpstreamSettings,
                  address: str) -> IStreamClientEndpoint:
        """TCP to ``address`` (TLS for https, the service's host as the server name)."""
        port, timeout = upstream.port, settings.connect_timeout
        endpoint: IStreamClientEndpoint
        if isIPv6Address(address):
            endpoint = TCP6ClientEndpoint(self.reactor, address, port, timeout=timeout)
        else:
            endpoint = TCP4ClientEndpoint(self.reactor, address, port, timeout=timeout)
        if upstream.scheme == "https":
            tls = self._tls_policy(settings)
            return wrapClientTLS(tls.creatorForNetloc(_ascii_host(upstream.host), port), endpoint)
        return endpoint


@attrs.define(eq=False)
class _Call:
    """One ``send``: its tries, each on an idle pooled connection or a new one.

    Callbacks, not a coroutine: a request on a kept-alive connection is one method
    call and one Deferred here, which is most proxied requests.
    """

    client: UpstreamClient
    upstream: IUpstreamRequest
    settings: UpstreamSettings
    body: bytes | BinaryIO
    length: int
    head: bytes
    done: Deferred[IUpstreamResponse] = attrs.field(init=False)
    failed_tries: int = 0
    #: The connection attempt or the exchange in progress.
    _step: Deferred[Any] | None = None
    _cancelled: bool = False

    @classmethod
    def start(cls, client: UpstreamClient, upstream: IUpstreamRequest, settings: UpstreamSettings,
              body: bytes | BinaryIO) -> Deferred[IUpstreamResponse]:
        length = len(body) if isinstance(body, bytes) else body.seek(0, 2)
        call = cls(client, upstream, settings, body, length, request_head(upstream, length))
        call.done = Deferred(call._cancel)
        call._try()
        return call.done

    @property
    def _key(self) -> tuple[str, str, int, bool, int | None]:
        upstream = self.upstream
        settings = self.settings
        return (upstream.scheme, upstream.host, upstream.port, settings.tls_verify, settings.tls_verify_depth)

    def _try(self) -> None:
        connection = self.client.pools.take(self._key)
        if connection is not None:
            self._exchange(connection, reused=True)
            return
        connecting = self._step = self.client._connect(self.upstream, self.settings)
        connecting.addCallbacks(self._exchange, self._failed, callbackArgs=(False,),
                                errbackArgs=(None, False))

    def _exchange(self, connection: UpstreamConnection, reused: bool) -> None:
        self.client.pools.adopt(self._key, connection)
        settings = self.settings
        exchange = self._step = connection.exchange(
            self.head, self.body, self.length, self.upstream.method == "HEAD",
            settings.write_timeout, settings.read_timeout)
        exchange.addCallbacks(self._answered, self._failed, errbackArgs=(connection, reused))

    def _answered(self, response: IUpstreamResponse) -> None:
        self._step = None
        self.done.callback(response)

    def _failed(self, failure: Failure, connection: UpstreamConnection | None, reused: bool) -> None:
        """A try failed: try again, or fail the call with Kong's answer for it."""
        self._step = None
        if self._cancelled:
            return
        error, method, upstream = failure.value, self.upstream.method, self.upstream
        assert error is not None, "a Failure holds its exception"
        if isinstance(error, net_errors.DNSLookupError):
            self.done.errback(classify(error))
            return
        if reused and isinstance(error, UpstreamClosed) and not error.answered and method in _IDEMPOTENT:
            self._try()  # it died while idle in the pool: not a try
            return
        if isinstance(error, UpstreamHeadTooLarge):  # nginx's proxy_next_upstream skips it
            log.error("upstream sent too big header while reading response header from upstream "
                      "{host}:{port} (more than {limit} bytes)", host=upstream.host,
                      port=upstream.port, limit=HEAD_LIMIT)
        elif connection is None or method in _IDEMPOTENT:  # never sent twice once it reached one
            self.failed_tries += 1
            if self.failed_tries <= self.settings.retries:
                self._try()
                return
        self.done.errback(classify(error))

    def _cancel(self, done: Deferred[IUpstreamResponse]) -> None:
        """The client went away: end the try in progress; ``done`` fails with CancelledError."""
        self._cancelled = True
        if self._step is not None:
            self._step.cancel()
