"""One client request on kongish's own proxy listener, and the response to it.

The proxy flow reads and answers requests through the attributes and methods
listed in ``IProxiedRequest``, which ``twisted.web.server.Request`` has too, so
the same flow serves a ``ProxyResource`` mounted in any twisted.web site.
``DownstreamRequest`` is the lean version for ``ProxyConnection``: it does no
resource traversal, no session or argument parsing and no default headers,
which together cost twisted.web more per request than all of kongish's own work.
"""
from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from kongish.http.headers import CONTENT_LENGTH, NO_BODY_STATUSES, CasedHeaders, host_without_port, http_date
from kongish.http.interfaces import IProxiedRequest

if TYPE_CHECKING:
    from twisted.internet.address import IPv4Address, IPv6Address
    from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport

    class IConnectionTransport(ITCPTransport, IConsumer, IPushProducer):
        """What carries a proxy connection: a TCP transport (or TLS or PROXY-protocol over
        one), which, like every Twisted connection, also consumes and produces."""


class Channel(Protocol):
    """What a DownstreamRequest needs of its connection (``ProxyConnection``)."""

    host: IPv4Address | IPv6Address
    secure: bool
    transport: IConnectionTransport

    def request_done(self, request: DownstreamRequest) -> None: ...


@implementer(IProxiedRequest)
class DownstreamRequest:
    """A parsed request and its response, written straight to the connection."""

    __slots__ = ("channel", "method", "uri", "path", "clientproto", "prepath", "_raw_headers",
                 "_headers", "_response_headers", "content", "code", "code_message", "sentLength",
                 "startedWriting", "finished", "_disconnected", "persistent", "_chunked",
                 "_body_allowed", "_waiters", "request_id", "remote_addr", "outbound")

    def __init__(self, channel: Channel, method: bytes, uri: bytes, clientproto: bytes,
                 raw_headers: list[tuple[bytes, bytes]], content: IO[bytes], persistent: bool) -> None:
        self.channel = channel
        self.method = method
        self.uri = uri
        self.path = uri.partition(b"?")[0]
        self.clientproto = clientproto
        self.prepath: list[bytes] = []
        self._raw_headers = raw_headers
        self._headers: Headers | None = None
        self._response_headers: Headers | None = None
        self.content = content
        self.code, self.code_message = 200, b"OK"
        self.sentLength = 0
        self.startedWriting = self.finished = self._disconnected = False
        #: Whether the connection stays open for another request after this one.
        self.persistent = persistent
        self._chunked = False
        self._body_allowed = True
        self._waiters: list[Deferred[None]] = []
        #: For the access log, from the proxy flow: the request's id, and the client's
        #: address when trusted proxies report it (nginx logs ``$remote_addr``).
        self.request_id: str | None = None
        self.remote_addr: str | None = None
        #: The outbound calls of its functions, (count, seconds), for the access log.
        self.outbound: tuple[int, float] | None = None

    # the request

    @property
    def requestHeaders(self) -> Headers:
        """Built on first use: a request answered from a few headers never pays for it.

        Names keep the client's spelling, for the upstream and ``raw`` header reads."""
        if self._headers is None:
            headers = self._headers = CasedHeaders()
            for name, value in self._raw_headers:
                headers.add_parsed(name, value)
        return self._headers

    @property
    def responseHeaders(self) -> Headers:
        """Made on first use: the proxy flow replaces it with its own."""
        if self._response_headers is None:
            self._response_headers = CasedHeaders()
        return self._response_headers

    @responseHeaders.setter
    def responseHeaders(self, headers: Headers) -> None:
        self._response_headers = headers

    def getHeader(self, name: bytes) -> bytes | None:
        if self._headers is not None:
            values = self._headers.getRawHeaders(name)
            return values[-1] if values else None
        name = name.lower()
        for raw_name, value in reversed(self._raw_headers):
            if raw_name.lower() == name:
                return value
        return None

    def getHost(self) -> IPv4Address | IPv6Address:
        return self.channel.host

    def getClientAddress(self) -> IAddress:
        return self.channel.transport.getPeer()

    def isSecure(self) -> bool:
        return self.channel.secure

    def getRequestHostname(self) -> bytes:
        host = self.getHeader(b"host")
        if host is None:
            return self.getHost().host.encode("ascii")
        return host_without_port(host)

    # the response

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code
        self.code_message = message or b""

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("write after finish")
        if self._disconnected:
            return
        out = []
        if not self.startedWriting:
            self.startedWriting = True
            out = self._head()
        if data and self._body_allowed:
            self.sentLength += len(data)
            out += (b"%x\r\n" % len(data), data, b"\r\n") if self._chunked else (data,)
        if out:  # the head and the first data in one write
            self.channel.transport.writeSequence(out)

    def _head(self) -> list[bytes]:
        """Status line and headers, with the framing the body needs.

        Framing is this connection's: a Transfer-Encoding set by a plugin is dropped.
        A response without a Date gets one now, as nginx dates what it sends.
        Names go out spelled as they were given (``CasedHeaders``), as nginx sends them.
        """
        self._body_allowed = self._may_have_body()
        lines = [b"%s %d %s\r\n" % (self.clientproto, self.code, self.code_message)]
        has_length = has_connection = has_date = False
        for name, values in self.responseHeaders.getAllRawHeaders():
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                continue
            has_length = has_length or lowered == b"content-length"
            has_connection = has_connection or lowered == b"connection"
            has_date = has_date or lowered == b"date"
            for value in values:
                lines.append(b"%s: %s\r\n" % (name, value))
        if self._body_allowed and not has_length:
            if self.clientproto == b"HTTP/1.1":
                self._chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:  # an HTTP/1.0 body without a length ends when the connection does
                self.persistent = False
        if not has_date:
            lines.append(b"Date: %s\r\n" % http_date())
        if not has_connection:
            if not self.persistent:
                lines.append(b"Connection: close\r\n")
            elif self.clientproto == b"HTTP/1.0":
                lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return lines

    def finish(self) -> None:
        if self.finished:
            raise RuntimeError("finish called twice")
        if self._disconnected:
            raise RuntimeError("finish after the connection was lost; use notifyFinish")
        if not self.startedWriting:
            if self._may_have_body() and not self.responseHeaders.hasHeader(b"content-length"):
                self.responseHeaders.setRawHeaders(CONTENT_LENGTH, [b"0"])
            self.write(b"")
        if self._chunked:
            self.channel.transport.write(b"0\r\n\r\n")
        self.finished = True
        self.content.close()
        self.channel.request_done(self)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _may_have_body(self) -> bool:
        return self.method != b"HEAD" and self.code not in NO_BODY_STATUSES and not 100 <= self.code < 200

    def notifyFinish(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def connection_lost(self, reason: Failure | None) -> None:
        """The client went away before the response ended."""
        self._disconnected = True
        self.content.close()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(reason)

    def loseConnection(self) -> None:
        self.channel.transport.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.channel.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.channel.transport.unregisterProducer()
