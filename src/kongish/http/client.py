"""Calling the upstream service: Kong's timeouts, retries and failure classes.

Requests go through ``twisted.web.client.Agent`` on a persistent pool. treq's
``HTTPClient`` is not used here on purpose: it always adds a cookie jar
(cookies of one client would leak into another's requests) and gzip decoding
(the client would get a decoded body), and a proxy must pass both through.

Kong's timeouts are per phase, as nginx's are: ``connect_timeout`` bounds
connecting, ``write_timeout`` each wait for the upstream to take more of the
request, ``read_timeout`` each wait for the upstream to send something (the
response head here; the body's chunks in ``kongish.runloop.relay``).

A service whose host is an IP literal is connected to directly, not through
``HostnameEndpoint``: that endpoint starts one connection attempt per resolved
address every 0.3 s (its ``attemptDelay``) and only notices that the list has
ended at the next tick, so a refused connection to its only address failed
0.3 s late, on every try. Host names still go through ``HostnameEndpoint``.

The client provides ``kongish.http.interfaces.IUpstreamClient``: the proxy sees
an ``IUpstreamResponse`` whose body ends with a ``BodyEnd``, and Agent's own
ways stay here (``ResponseDone``/``PotentialDataLoss``, a HEAD response's
Content-Length left among the headers, the response's transport as the body's
flow control, the pool's ``closeCachedConnections``).

Header names keep their spelling both ways, as nginx keeps them: the request's
headers are ``CasedHeaders``, which Agent writes as given, and the response's
are parsed into ``CasedHeaders`` too (Twisted's parser lower-cases them).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from typing import Any, BinaryIO, cast

import attrs
from twisted.internet import error as net_errors
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import (
    HEADER,
    STATUS,
    HTTP11ClientProtocol,
    HTTPClientParser,
    RequestNotSent,
    _DataLoss,
)
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    PotentialDataLoss,
    ResponseDone,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from kongish.http.headers import NO_BODY_STATUSES, CasedHeaders
from kongish.http.interfaces import (
    COMPLETE,
    BodyEnd,
    IBodyReceiver,
    IBodyStream,
    IUpstreamClient,
    IUpstreamRequest,
    IUpstreamResponse,
    UpstreamSettings,
)
from kongish.http.tls import UpstreamTLSPolicy
from kongish.router.upstream_path import escape_path

log = Logger()

#: Methods nginx may send again after a failed try (its ``non_idempotent`` list is the rest).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
#: How much of the request body is handed to the upstream connection at a time.
_CHUNK = 65536
#: Kong's ``proxy_buffer_size`` (160k): an upstream's status line and headers must fit in it.
HEAD_LIMIT = 160 * 1024


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


class UpstreamTimeout(Exception):
    """A write or read timeout of one try fired."""


class UpstreamHeadTooLarge(Exception):
    """The upstream's response head outgrew ``HEAD_LIMIT``: nginx's invalid header, not retried."""


def classify(failure_value: BaseException) -> UpstreamFailure:
    """Kong's answer for the last failed try."""
    if isinstance(failure_value, net_errors.DNSLookupError):
        return UpstreamFailure(503, "name resolution failed", "A")
    if isinstance(failure_value, (UpstreamTimeout, net_errors.TimeoutError)):
        return UpstreamFailure(504, "The upstream server is timing out", "B")
    return UpstreamFailure(502, "An invalid response was received from the upstream server", "B")


def settings_for(service: Mapping[str, Any]) -> UpstreamSettings:
    """How to call a Service entity: its timeouts (milliseconds in Kong), retries and tls_verify."""
    return UpstreamSettings(
        connect_timeout=service["connect_timeout"] / 1000, write_timeout=service["write_timeout"] / 1000,
        read_timeout=service["read_timeout"] / 1000, retries=int(service.get("retries") or 0),
        tls_verify=service.get("tls_verify") is True)


@implementer(IUpstreamClient)
@attrs.define(eq=False)
class UpstreamClient:
    """Sends upstream requests through Agent over one persistent connection pool."""

    reactor: Any
    pool: HTTPConnectionPool = attrs.field(default=None)
    _tls: dict[bool, UpstreamTLSPolicy] = attrs.field(
        init=False, factory=lambda: {verify: UpstreamTLSPolicy(verify) for verify in (False, True)})

    def __attrs_post_init__(self) -> None:
        if self.pool is None:
            self.pool = _UpstreamPool(self.reactor, persistent=True)
            self.pool.maxPersistentPerHost = 64

    def send(self, request: IUpstreamRequest, settings: UpstreamSettings,
             body: bytes | BinaryIO) -> Deferred[IUpstreamResponse]:
        """Try up to ``retries + 1`` times; fail with UpstreamFailure when every try failed.

        Connection errors and timeouts are retried (nginx's ``error timeout``),
        except for a non-idempotent request that already reached an upstream.
        Cancelling the returned Deferred (the client went away) ends the try
        in progress and fails it with ``CancelledError``.
        """
        return ensureDeferred(self._send(request, settings, body))

    def close(self) -> Deferred[None]:
        """Close the pool's idle connections."""
        return self.pool.closeCachedConnections()

    async def _send(self, upstream: IUpstreamRequest, settings: UpstreamSettings,
                    body: bytes | BinaryIO) -> IUpstreamResponse:
        last: BaseException | None = None
        for _ in range(1 + settings.retries):
            attempt = _Attempt(self.reactor, self.pool, settings, self._tls[settings.tls_verify])
            try:
                return _AgentResponse.of(await attempt.run(upstream, body), upstream.method)
            except net_errors.DNSLookupError as failure:
                raise classify(failure) from None
            except CancelledError:
                raise
            except Exception as failure:  # each try's failure decides whether to retry
                last = failure
                if _head_too_large(failure):  # as nginx's proxy_next_upstream, which skips invalid_header
                    log.error("upstream sent too big header while reading response header from upstream "
                              "{host}:{port} (more than {limit} bytes)", host=upstream.host,
                              port=upstream.port, limit=HEAD_LIMIT)
                    break
                if attempt.sent and upstream.method not in _IDEMPOTENT:
                    break
        assert last is not None, "the loop runs at least once"
        raise classify(last) from None


@attrs.define(eq=False)
class _Attempt:
    """One try: an Agent request with Kong's write and read timeouts armed around it.

    It stands in for the pool towards ``Agent`` (which only calls
    ``getConnection`` and reads ``persistent``) to learn when the connection
    is up: from then on the request counts as sent, and the timeouts apply.
    """

    reactor: Any
    pool: HTTPConnectionPool
    settings: UpstreamSettings
    tls: UpstreamTLSPolicy
    sent: bool = False
    timed_out: bool = False
    _pending: Deferred[IResponse] | None = None
    _timer: IDelayedCall | None = None

    @property
    def persistent(self) -> bool:
        return self.pool.persistent

    def getConnection(self, key: Hashable, endpoint: IStreamClientEndpoint) -> Deferred[Any]:
        # Verified and unverified TLS connections to one address are never shared.
        return self.pool.getConnection((key, self.tls.verify), endpoint).addCallback(self._connected)

    async def run(self, upstream: IUpstreamRequest, body: bytes | BinaryIO) -> IResponse:
        endpoints = _Endpoints(self.reactor, self.tls, self.settings.connect_timeout)
        agent = Agent.usingEndpointFactory(self.reactor, endpoints, pool=self)
        url = f"{upstream.scheme}://{_url_host(upstream.host)}:{upstream.port}{escape_path(upstream.path)}"
        if upstream.query is not None:
            url += "?" + upstream.query
        headers = upstream.headers
        if headers.hasHeader(b"content-length"):  # Agent writes the body's own
            headers = headers.copy()
            headers.removeHeader(b"content-length")
        self._pending = agent.request(upstream.method.encode("ascii"), url.encode("utf-8", "surrogateescape"),
                                      headers, _BodyProducer.of(body, self))
        try:
            return await self._pending
        except RequestNotSent:
            self.sent = False
            raise
        except Exception as failure:
            if self.timed_out:
                raise UpstreamTimeout() from None
            if _cancelled(failure):  # by the caller: the client went away
                raise CancelledError() from None
            raise
        finally:
            self.disarm()

    def _connected(self, connection: Any) -> Any:
        self.sent = True
        self.arm(self.settings.read_timeout)
        return connection

    def arm(self, seconds: float) -> None:
        """(Re)start the one timer of this try."""
        if self._timer is not None and self._timer.active():
            self._timer.reset(seconds)
        else:
            self._timer = self.reactor.callLater(seconds, self._expired)

    def disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def _expired(self) -> None:
        self.timed_out = True
        if self._pending is not None:
            self._pending.cancel()


@implementer(IUpstreamResponse)
@attrs.define(eq=False)
class _AgentResponse:
    """Agent's ``IResponse`` as an ``IUpstreamResponse``."""

    response: IResponse
    status: int
    reason: bytes
    headers: Any
    content_length: int | None

    @classmethod
    def of(cls, response: IResponse, method: str) -> _AgentResponse:
        headers = response.headers
        length: int | None
        if method == "HEAD":
            # Agent leaves a HEAD response's Content-Length among the headers (no body follows)
            declared = headers.getRawHeaders(b"content-length")
            headers.removeHeader(b"content-length")
            length = _length(declared)
        elif response.code in NO_BODY_STATUSES or response.code < 200:
            length = None
        else:
            length = response.length if isinstance(response.length, int) else None
        return cls(response, response.code, response.phrase, headers, length)

    def deliver_body(self, receiver: IBodyReceiver) -> None:
        self.response.deliverBody(_BodyProtocol(receiver))

    def discard(self) -> None:
        self.response.deliverBody(_Discard())


def _length(declared: list[bytes] | None) -> int | None:
    """A Content-Length's value: one number (repeated identical values count once)."""
    if not declared:
        return None
    values = {value.strip() for line in declared for value in line.split(b",")}
    if len(values) != 1:
        return None
    (value,) = values
    return int(value) if value.isdigit() else None


class _Discard(Protocol):
    def connectionMade(self) -> None:
        cast(IPushProducer, self.transport).stopProducing()


@implementer(IBodyStream)
class _BodyProtocol(Protocol):
    """Delivers Agent's body callbacks to an ``IBodyReceiver`` and is its ``IBodyStream``.

    Agent hands over what it had buffered right after ``connectionMade``, even
    when the receiver paused there: such data waits here until ``resume()``.
    """

    def __init__(self, receiver: IBodyReceiver) -> None:
        self.receiver = receiver
        self._paused = False
        self._aborted = False
        self._held: deque[bytes] = deque()
        self._end: BodyEnd | None = None
        self._ended = False

    def connectionMade(self) -> None:
        self.receiver.body_started(self)

    def dataReceived(self, data: bytes) -> None:
        if self._ended or self._aborted:
            return
        if self._paused or self._held:
            self._held.append(data)
        else:
            self.receiver.body_data(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        assert reason is not None, "Agent always says why"
        if self._aborted:
            end = BodyEnd(False, aborted=True, reason="aborted")
        elif reason.check(ResponseDone, PotentialDataLoss):
            end = COMPLETE  # PotentialDataLoss: a body without a length, ended by the close
        else:
            end = BodyEnd(False, truncated=_truncated(reason), reason=reason.getErrorMessage())
        self._end = end
        self._flush()

    def pause(self) -> None:
        if not self._paused and not self._ended:
            self._paused = True
            if self._end is None:
                self._producer().pauseProducing()

    def resume(self) -> None:
        if self._paused and not self._ended:
            self._paused = False
            self._flush()
            if self._end is None and not self._paused:
                self._producer().resumeProducing()

    def abort(self) -> None:
        if self._ended or self._aborted:
            return
        self._aborted = True
        self._held.clear()
        if self._end is not None:  # the body ended while held back
            self._end = BodyEnd(False, aborted=True, reason="aborted")
            self._flush()
        else:
            self._producer().stopProducing()

    def _producer(self) -> IPushProducer:
        """The response's transport: Agent's producer of the body."""
        return cast(IPushProducer, self.transport)

    def _flush(self) -> None:
        while self._held and not self._paused and not self._aborted:
            self.receiver.body_data(self._held.popleft())
        if self._end is not None and not self._held and not self._ended:
            self._ended = True
            self.receiver.body_ended(self._end)


def _head_too_large(failure: BaseException) -> bool:
    """Whether Agent's failure came from a response head past ``HEAD_LIMIT``."""
    return any(reason.check(UpstreamHeadTooLarge) for reason in getattr(failure, "reasons", ()))


def _truncated(failure: Failure) -> bool:
    """Whether Agent's failure says the connection closed before the announced length arrived."""
    reasons = getattr(failure.value, "reasons", ())
    return any(reason.check(_DataLoss) for reason in reasons)


class _CasedClientParser(HTTPClientParser):
    """Twisted's response parser, with the response's header names spelled as received and
    the head bounded as nginx bounds it (``proxy_buffer_size``)."""

    MAX_LENGTH = HEAD_LIMIT
    _head_size = 0

    def lineReceived(self, line: bytes) -> None:
        if self.state in (STATUS, HEADER):
            self._head_size += len(line) + 1
            if self._head_size > HEAD_LIMIT:
                raise UpstreamHeadTooLarge()
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        raise UpstreamHeadTooLarge()

    def headerReceived(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if self.isConnectionControlHeader(lowered):
            self.connHeaders.addRawHeader(lowered, value)
        else:
            self.headers.addRawHeader(name, value)


class _CasedClientProtocol(HTTP11ClientProtocol):
    """An upstream connection whose responses keep their header names' spelling."""

    def request(self, request: Any) -> Deferred[IResponse]:
        before = self._parser
        result = super().request(request)
        parser = self._parser
        # A new parser is made for each request sent, before any byte of its response
        # arrives (they come from the reactor, later): what it will parse is still ahead.
        if parser is not None and parser is not before and type(parser) is HTTPClientParser:
            parser.__class__ = _CasedClientParser
            parser.headers = CasedHeaders()
        return result


class _CasedClientFactory(_HTTP11ClientFactory):
    def buildProtocol(self, addr: Any) -> HTTP11ClientProtocol:
        return _CasedClientProtocol(self._quiescentCallback)


class _UpstreamPool(HTTPConnectionPool):
    """The pool of upstream connections; they keep header names as the upstream spelled them."""

    _factory = _CasedClientFactory


@implementer(IAgentEndpointFactory)
@attrs.frozen
class _Endpoints:
    """Agent's endpoints: TCP (TLS for https) straight to an IP literal, else via name resolution."""

    reactor: Any
    tls: UpstreamTLSPolicy
    connect_timeout: float

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the upstream host {uri.host!r} is not ASCII") from None
        endpoint: IStreamClientEndpoint
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self.reactor, host, uri.port, timeout=self.connect_timeout)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self.reactor, host, uri.port, timeout=self.connect_timeout)
        else:
            endpoint = HostnameEndpoint(self.reactor, host, uri.port, timeout=self.connect_timeout)
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            return wrapClientTLS(self.tls.creatorForNetloc(uri.host, uri.port), endpoint)
        raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")


@implementer(IBodyProducer)
@attrs.define(eq=False)
class _BodyProducer:
    """Writes the request body as fast as the upstream takes it.

    While the connection's buffer is full (the producer is paused), the
    try's timer runs with ``write_timeout``; once the whole body is out it
    runs with ``read_timeout``. The source file is left open: a retry and
    the log phase read it again.
    """

    source: BinaryIO | None
    data: bytes
    length: int
    attempt: _Attempt
    _consumer: IConsumer | None = None
    _done: Deferred[None] | None = None
    _offset: int = 0
    _paused: bool = False

    @classmethod
    def of(cls, body: bytes | BinaryIO, attempt: _Attempt) -> _BodyProducer | None:
        if isinstance(body, bytes):
            return cls(None, body, len(body), attempt) if body else None
        length = body.seek(0, 2)
        body.seek(0)
        return cls(body, b"", length, attempt) if length else None

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self._consumer, self._done = consumer, Deferred(self._cancelled)
        if self.source is not None:
            self.source.seek(0)
        self._write_more()
        return self._done

    def _write_more(self) -> None:
        while not self._paused and self._done is not None and not self._done.called:
            if self._offset >= self.length:
                self.attempt.arm(self.attempt.settings.read_timeout)
                self._done.callback(None)
                return
            if self.source is not None:
                chunk = self.source.read(_CHUNK)
            else:
                chunk = self.data[self._offset:self._offset + _CHUNK]
            if not chunk:  # the client's body file is shorter than it was
                self._done.errback(ValueError("request body ended early"))
                return
            self._offset += len(chunk)
            assert self._consumer is not None, "startProducing came first"
            self._consumer.write(chunk)

    def pauseProducing(self) -> None:
        self._paused = True
        self.attempt.arm(self.attempt.settings.write_timeout)

    def resumeProducing(self) -> None:
        self._paused = False
        self.attempt.arm(self.attempt.settings.read_timeout)
        self._write_more()

    def stopProducing(self) -> None:
        self._paused = True

    def _cancelled(self, done: Deferred[None]) -> None:
        self._paused = True


def _cancelled(failure: BaseException) -> bool:
    """Whether ``failure`` is how Agent reports a cancelled request, in any of its states."""
    if isinstance(failure, (CancelledError, net_errors.ConnectingCancelledError)):
        return True
    return any(reason.check(CancelledError) for reason in getattr(failure, "reasons", ()))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

