"""One HTTP/1.1 connection to an upstream, one request at a time, parsed by llhttp.

kongish's own client protocol, in place of Twisted's ``HTTP11ClientProtocol``:
the response is parsed with httptools (Node.js's llhttp: strict about framing,
so a response that could smuggle is refused) and its header names keep the
upstream's spelling. The request is written as one head plus the body, the
body as fast as the connection takes it; the connection is the transport's
producer, so it knows when the upstream stops taking more (Kong's write
timeout) and can stop reading while the client takes nothing (backpressure).

An ``_Exchange`` is one request and its response. It ends in one of three ways:
the response ended whole and the connection may be reused (the pool decides),
the connection closed, or the exchange failed or was given up and the
connection is aborted (never reused).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO, cast
from typing import Protocol as Structural

import httptools
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from kongish.http.deadline import Deadline
from kongish.http.headers import NO_BODY_STATUSES, CasedHeaders
from kongish.http.interfaces import COMPLETE, BodyEnd, IBodyReceiver, IBodyStream, IUpstreamResponse
from kongish.http.nodelay import no_delay

#: Kong's ``proxy_buffer_size`` (160k): an upstream's status line and headers must fit in it.
HEAD_LIMIT = 160 * 1024
#: How much of a request body is handed to the connection at a time.
_CHUNK = 65536
#: The headers that frame a response on its connection, consumed here (as Twisted's client does).
_FRAMING = frozenset({b"content-length", b"connection", b"keep-alive", b"te", b"trailers",
                      b"transfer-encoding", b"upgrade", b"proxy-connection"})


class UpstreamHeadTooLarge(Exception):
    """The upstream's response head outgrew ``HEAD_LIMIT``: nginx's invalid header, not retried."""


class UpstreamTimeout(Exception):
    """A write or read timeout of one try fired."""


class UpstreamClosed(Exception):
    """The connection closed before the response head arrived; ``answered`` says whether any
    byte of a response had come (a connection that died while idle in the pool sent none)."""

    def __init__(self, reason: str, answered: bool) -> None:
        super().__init__(reason)
        self.answered = answered


class UpstreamInvalid(Exception):
    """The upstream's response is not valid HTTP/1.1 (llhttp's message says why)."""


class _Wire(Structural):
    """What a connection uses of its transport (TCP, or TLS over TCP)."""

    def write(self, data: bytes) -> None: ...
    def abortConnection(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def registerProducer(self, producer: Any, streaming: bool) -> None: ...


class UpstreamConnection(Protocol):
    """A connection to one upstream; ``exchange`` sends a request on it."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        #: Requests sent on this connection, for the pool's ``max_requests``.
        self.requests = 0
        #: Called once when the connection is lost or aborted (the pool forgets it).
        self.on_lost: Callable[[UpstreamConnection], None] | None = None
        #: Called when the connection can take another request (the pool keeps it); without
        #: it the connection is closed.
        self.on_free: Callable[[UpstreamConnection], None] | None = None
        self.closed: Deferred[None] = Deferred()
        self.lost = False
        self._exchange: _Exchange | None = None
        #: The write or read timeout of the exchange in progress, or the idle timeout of a
        #: connection kept in its pool: one timer for all of them.
        self.deadline = Deadline(reactor, self._timed_out)
        #: Whether the transport told us to stop writing (its buffer is full).
        self.writing_paused = False

    @property
    def wire(self) -> _Wire:
        assert self.transport is not None, "connected"
        return cast(_Wire, self.transport)

    def connectionMade(self) -> None:
        no_delay(self.transport)
        self.wire.registerProducer(self, True)

    def exchange(self, head: bytes, body: bytes | BinaryIO, length: int, head_only: bool,
                 write_timeout: float, read_timeout: float) -> Deferred[IUpstreamResponse]:
        """Send ``head`` and ``length`` bytes of ``body``; fire with the response once its head
        has arrived. ``head_only``: the request was HEAD, no body follows the response head."""
        assert self._exchange is None and not self.lost, "one request at a time"
        self.requests += 1
        exchange = self._exchange = _Exchange(self, head_only, write_timeout, read_timeout)
        exchange.write(head, body, length)
        return exchange.head

    def dataReceived(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None:  # an idle connection has nothing to say: it is not reusable
            self.abort()
            return
        exchange.received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.deadline.stop()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.connection_lost(reason)
        self._forgotten()
        self.closed.callback(None)

    def _timed_out(self) -> None:
        if self._exchange is not None:
            self._exchange.timed_out()
        else:  # idle in its pool past ``upstream_keepalive_idle_timeout``
            self.abort()

    # the transport's producer: it pauses us while it cannot take more of the request

    def pauseProducing(self) -> None:
        self.writing_paused = True
        if self._exchange is not None:
            self._exchange.writing_paused()

    def resumeProducing(self) -> None:
        self.writing_paused = False
        if self._exchange is not None:
            self._exchange.writing_resumed()

    def stopProducing(self) -> None:
        self.writing_paused = True

    # for the exchange and the pool

    def finished(self, exchange: _Exchange, reusable: bool) -> None:
        """``exchange``'s response arrived whole: the connection is free, or done with."""
        if self._exchange is not exchange:
            return
        self._exchange = None
        if not reusable or self.on_free is None:
            self.abort()  # nothing is in flight: no TLS close_notify exchange to wait for
            return
        self.wire.resumeProducing()
        self.on_free(self)

    def abort(self) -> None:
        self.deadline.stop()  # nothing on an aborted connection can time out
        self._forgotten()  # its pool never hands it out again, even before it is lost
        if not self.lost:
            self.wire.abortConnection()

    def _forgotten(self) -> None:
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost(self)

    def pause_reading(self) -> None:
        self.wire.pauseProducing()

    def resume_reading(self) -> None:
        self.wire.resumeProducing()


@implementer(IUpstreamResponse, IBodyStream)
class _Exchange:
    """One request on an ``UpstreamConnection`` and its response: llhttp's callbacks, the
    try's write/read timer, and the response's body stream."""

    def __init__(self, connection: UpstreamConnection, head_only: bool, write_timeout: float,
                 read_timeout: float) -> None:
        self.connection = connection
        self.head_only = head_only
        self.write_timeout, self.read_timeout = write_timeout, read_timeout
        self.head: Deferred[IUpstreamResponse] = Deferred(self._cancel)
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        # the request
        self._source: bytes | BinaryIO = b""
        self._offset = 0
        self._length = 0
        self._written = False
        # the response head
        self.status = 0
        self.reason = b""
        self.headers = CasedHeaders()
        self.content_length: int | None = None
        self._declared: list[bytes] = []
        self._chunked = False
        #: The head's size as parsed, and the bytes fed while it was incomplete.
        self._head_size = 0
        self._head_fed = 0
        self._answered = False
        self._head_done = False
        self._informational = False
        self._keep_alive = False
        # the response body
        self._receiver: IBodyReceiver | None = None
        self._held: deque[bytes] = deque()
        self._paused = False
        self._end: BodyEnd | None = None
        self._ended = False

    # writing the request

    def write(self, head: bytes, body: bytes | BinaryIO, length: int) -> None:
        self._source, self._length = body, length
        if not isinstance(body, bytes):
            body.seek(0)
        self.connection.wire.write(head)
        self._arm(self.read_timeout)
        self._write_more()

    def _write_more(self) -> None:
        connection = self.connection
        while not connection.writing_paused and not self._written and self._is_current():
            if self._offset >= self._length:
                self._written = True
                if not self._head_done:  # an early answer's body is timed by its relay
                    self._arm(self.read_timeout)
                return
            source = self._source
            if isinstance(source, bytes):
                chunk = source[self._offset:self._offset + _CHUNK]
            else:
                chunk = source.read(min(_CHUNK, self._length - self._offset))
            if not chunk:  # the client's body file is shorter than it was
                self._fail(ValueError("request body ended early"))
                return
            self._offset += len(chunk)
            connection.wire.write(chunk)
        if connection.writing_paused and not self._written and not self._head_done:
            self._arm(self.write_timeout)

    def writing_paused(self) -> None:
        if not self._written and not self._head_done:
            self._arm(self.write_timeout)

    def writing_resumed(self) -> None:
        if not self._head_done:
            self._arm(self.read_timeout)
        self._write_more()

    def _is_current(self) -> bool:
        return self.connection._exchange is self

    # the try's one timer: Kong's write timeout while the upstream takes nothing more of the
    # request, its read timeout while the response head is awaited

    def _arm(self, seconds: float) -> None:
        self.connection.deadline.set(seconds)

    def _disarm(self) -> None:
        if self._is_current():  # the connection's timer is its current exchange's
            self.connection.deadline.clear()

    def timed_out(self) -> None:
        self._fail(UpstreamTimeout())

    def _fail(self, error: BaseException) -> None:
        """The try failed before its head arrived: fail it and abort the connection."""
        self._parser = None  # its callbacks hold this exchange (received keeps its own reference)
        self._disarm()
        if not self.head.called:
            self.head.errback(Failure(error))
        self.connection.abort()

    def _cancel(self, head: Deferred[IUpstreamResponse]) -> None:
        self._disarm()
        self.connection.abort()
        head.errback(Failure(CancelledError()))

    # reading the response

    def received(self, data: bytes) -> None:
        self._answered = True
        parser = self._parser
        if parser is None:  # the response ended: the connection is no longer this exchange's
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            self._failed(error.__context__ or error)
        except httptools.HttpParserError as error:
            self._failed(UpstreamInvalid(str(error)))
        else:
            if not self._head_done:  # a head still arriving: its bytes so far, parsed or not
                self._head_fed += len(data)
                if self._head_fed > HEAD_LIMIT:
                    self._failed(UpstreamHeadTooLarge())
        if self._head_done and not self.head.called:
            # told once these bytes are parsed: the body that came with the head (most bodies)
            # is then whole when the response is handed on, and needs no read timer
            self.head.callback(self)

    def _failed(self, error: BaseException) -> None:
        if not self._head_done:
            self._fail(error)
            return
        self._parser = None
        self._finish_body(BodyEnd(False, truncated=True, reason=str(error) or type(error).__name__))
        self.connection.abort()

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > HEAD_LIMIT:
            raise UpstreamHeadTooLarge()

    def on_message_begin(self) -> None:
        if self._end is not None:  # bytes after the response: nginx drops them and the connection
            raise UpstreamInvalid("data after the response")

    def on_status(self, reason: bytes) -> None:
        self._count(len(reason) + 13)
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        lowered = name.lower()
        if lowered not in _FRAMING:
            self.headers.add_parsed(name, value)
        elif lowered == b"content-length":
            self._declared.append(value)
        elif lowered == b"transfer-encoding":
            self._chunked = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None, "parsing"
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # 100 Continue and kin: the real head follows
            self._informational = True
            self.reason, self.headers, self._declared, self._chunked = b"", CasedHeaders(), [], False
            return
        self.status, self._head_done = status, True
        self._keep_alive = parser.should_keep_alive()
        if self.head_only:
            self.content_length = _length(self._declared)
        elif status not in NO_BODY_STATUSES and status >= 200 and not self._chunked:
            self.content_length = _length(self._declared)
        self._disarm()
        if self.head_only or status in NO_BODY_STATUSES:
            self._message_complete()

    def on_body(self, data: bytes) -> None:
        if self._end is not None:  # after a response that has no body (HEAD, 204, 304): not HTTP
            raise UpstreamInvalid("data after a response without a body")
        self._deliver(data)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._end is None:
            self._message_complete()

    def _message_complete(self) -> None:
        # the parser's callbacks hold this exchange: let it go, so refcounting frees both
        self._parser = None
        # the connection is free before the body's end is told: what that starts may reuse it
        self.connection.finished(self, self._keep_alive and self._written)
        self._finish_body(COMPLETE)

    def connection_lost(self, reason: Failure) -> None:
        self._parser = None
        if not self._head_done:
            self._fail(UpstreamClosed(reason.getErrorMessage(), self._answered))
            return
        if self._end is None:
            if self._declared or self._chunked:
                self._finish_body(BodyEnd(False, truncated=True, reason=reason.getErrorMessage()))
            else:  # a body without a length ends when the connection closes
                self._finish_body(COMPLETE)

    # the response as IUpstreamResponse, and its body as IBodyStream

    def deliver_body(self, receiver: IBodyReceiver) -> None:
        self._receiver = receiver
        receiver.body_started(self)
        self._flush()

    def discard(self) -> None:
        self._held.clear()
        if self._end is None:
            self._end = BodyEnd(False, aborted=True, reason="discarded")
            self._ended = True
            self.connection.abort()

    def pause(self) -> None:
        if not self._paused and not self._ended:
            self._paused = True
            if self._end is None and self._is_current():
                self.connection.pause_reading()

    def resume(self) -> None:
        if self._paused and not self._ended:
            self._paused = False
            self._flush()
            if self._end is None and not self._paused and self._is_current():
                self.connection.resume_reading()

    def abort(self) -> None:
        if self._ended:
            return
        self._held.clear()
        if self._end is None and self._is_current():
            self.connection.abort()
        self._end = BodyEnd(False, aborted=True, reason="aborted")
        self._flush()

    def _deliver(self, data: bytes) -> None:
        if self._receiver is not None and not self._paused and not self._held:
            self._receiver.body_data(data)
        else:
            self._held.append(data)

    def _finish_body(self, end: BodyEnd) -> None:
        if self._end is None:
            self._end = end
        self._flush()

    def _flush(self) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        held = self._held
        while held and not self._paused:
            receiver.body_data(held.popleft())
        if self._end is not None and not self._ended and not held:
            self._ended = True
            self._receiver = None  # it holds this stream: refcounting frees both once done
            receiver.body_ended(self._end)


def _length(declared: list[bytes]) -> int | None:
    """A Content-Length's value: one number (repeated identical values count once)."""
    values = {value.strip() for line in declared for value in line.split(b",")}
    if len(values) != 1:
        return None
    (value,) = values
    return int(value) if value.isdigit() else None
