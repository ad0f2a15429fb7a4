"""kongish's own HTTP/1.1 server for the proxy listener.

Requests are parsed by httptools (llhttp, the parser of Node.js), which
rejects what request smuggling relies on (conflicting Content-Length and
Transfer-Encoding, bad chunk sizes, bare CR or LF in the head). Bad requests
get nginx's answers in Kong's error format, as Kong's clients see them:
400 ``Bad request``, 414 ``URI too long`` and 400 ``Request header or
cookie too large`` with nginx's default limits, 413 ``Payload too large``
beyond ``nginx_http_client_max_body_size``, 405 ``Method not allowed`` for TRACE.

A connection serves its requests one at a time, in order: pipelined requests
wait, parsed, until the one before them has been answered, and the connection
stops reading while any wait. Bodies are read completely before the request
is handed on, as twisted.web does. The factory is a twisted.web
``HTTPFactory``, so the access log works as for any site.

A client is timed as nginx times it: a request head must arrive whole within
``client_header_timeout`` of its first byte (of the accept, for a connection's
first request), a body may pause at most ``client_body_timeout`` between two
reads, and an idle keep-alive connection closes after the factory's
``timeOut``. A head or body that runs out of time ends the connection with no
answer and a 408 in the access log, as nginx's does: bytes trickled in one at
a time hold a connection no longer than its head's deadline.
"""
from __future__ import annotations

import io
import tempfile
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, cast

import httptools
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPFactory

from kongish.error_log import error_text
from kongish.http import access_log
from kongish.http.connection_cap import ConnectionCap
from kongish.http.downstream import DownstreamRequest
from kongish.http.draining import Draining
from kongish.http.headers import http_date
from kongish.http.nodelay import no_delay

if TYPE_CHECKING:
    from twisted.internet.address import IPv4Address, IPv6Address

    from kongish.http.downstream import IConnectionTransport as _IConnectionTransport

log = Logger()

#: nginx's ``large_client_header_buffers 4 8k``: one line, and the whole head.
MAX_LINE = 8192
MAX_HEAD = 4 * 8192
#: Raw head bytes received before the head completes: the request line and the head,
#: counted while the parser still holds a partial line (an endless header line).
_HEAD_BUFFER = MAX_LINE + MAX_HEAD
#: twisted.web's choice: bodies up to this size stay in memory, larger ones go to a file.
_MEMORY_BODY = 100_000
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: twisted.web's wait, after closing an idle connection, before aborting it.
_ABORT_AFTER = 15
#: nginx's ``client_header_timeout`` and ``client_body_timeout`` defaults, in seconds.
HEADER_TIMEOUT = 60.0
BODY_TIMEOUT = 60.0
_NEVER = float("inf")
#: How long a stopping node waits for the first request of a connection it accepted but has
#: read nothing from: the client may have sent it already (a worker replaced on reload).
FIRST_REQUEST_GRACE = 1.0


class _Refused(Exception):
    """A request kongish answers itself with an error, then closes the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Ignored(Exception):
    """Bytes after the request that ends the connection, which nginx ignores too."""


class ProxyConnection(Protocol):
    """One client connection to the proxy."""

    factory: ProxyServerFactory
    transport: _IConnectionTransport
    #: The keep-alive timeout, which HTTPFactory.buildProtocol sets from its own.
    timeOut: float | None = None

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._in_head = True
        self._ended_a_request = False
        self._body: IO[bytes] | None = None
        #: The body length the head declared (None: none or chunked), and whether chunked.
        self._length: int | None = None
        self._chunked = False
        self._body_size = 0
        #: The version the head named, as its answer's status line will.
        self._clientproto = b"HTTP/1.1"
        #: Whether the parser delivered body bytes or ended a chunk during this read, and the
        #: bytes read since it last did: chunk extensions and trailers are bounded like a head.
        self._progress = False
        self._stalled = 0
        #: An Upgrade request whose body the parser leaves to us, and how much of it is missing.
        self._upgrading: DownstreamRequest | None = None
        self._upgrade_left = 0
        self._waiting: deque[DownstreamRequest] = deque()
        self._active: DownstreamRequest | None = None
        self._advancing = False
        self._paused = False
        #: A 100 Continue owed to the request being read, once those before it are answered.
        self._continue_owed = False
        #: Whether more requests may follow; not after a non-persistent or malformed one.
        self._reading = True
        #: The error answer owed to a malformed request, after those before it.
        self._refusal: int | None = None
        self._closed = False
        self._abort: IDelayedCall | None = None
        #: Whether a request has begun arriving, and whether the node is stopping.
        self._in_message = False
        self._draining = False
        #: When the head being read began (the accept, for the first), how many heads began,
        #: and when the timer next fires (it is re-armed only to fire sooner).
        self._head_started = 0.0
        self._heads = 0
        self._fires_at = _NEVER
        self._timer: IDelayedCall | None = None
        #: Until when a draining connection that has read nothing waits for its first request.
        self._first_request_by = _NEVER

    def connectionMade(self) -> None:
        self.factory.connections.opened(self)
        #: Asked once: each getHost() of a TCP transport is a system call. A TCP
        #: transport's address is an IPv4Address or IPv6Address (Twisted types it IAddress).
        self.host = cast("IPv4Address | IPv6Address", self.transport.getHost())
        self.secure = ISSLTransport.providedBy(self.transport)
        no_delay(self.transport)
        self._now = self.factory.reactor.seconds
        self._last_read = self._head_started = self._now()
        self._expect(self._head_started + self.factory.header_timeout)
        if self.factory.connections.stopping:  # accepted as the node stops: nothing to answer yet
            self.drain()

    @property
    def connection_state(self) -> str:
        """nginx's stub_status state: answering a request, reading a head, or idle."""
        if self._active is not None or self._waiting:
            return "writing"
        return "reading" if self._in_message else "waiting"

    def dataReceived(self, data: bytes) -> None:
        # Noted rather than rescheduling the idle timer on every read: timeoutConnection
        # re-arms it for what is left.
        self._last_read = self._now()
        if self._upgrading is not None:
            self._read_upgrade_body(data)
            return
        if not self._reading:
            return
        self._ended_a_request = self._progress = False
        try:
            self._parser.feed_data(data)
            if self._ended_a_request or self._progress:
                self._stalled = 0
            else:  # all of ``data`` belongs to one head, chunk header or trailer section
                self._stalled += len(data)
                if self._stalled > _HEAD_BUFFER:
                    raise _Refused(494)
        except _Refused as refused:
            self._refuse(refused.status)
        except httptools.HttpParserUpgrade as upgrade:
            # kongish does not switch protocols: the request is served as is and the
            # connection closes after it; what follows its head is its body, if any.
            if self._upgrading is not None:
                self._read_upgrade_body(data[upgrade.args[0]:])
        except httptools.HttpParserError as error:
            if not self._reading:
                pass  # bytes after a request that ends the connection are ignored, as nginx does
            elif isinstance(error.__context__, _Refused):
                self._refuse(error.__context__.status)
            else:
                self._refuse(400)

    # parser callbacks

    def on_message_begin(self) -> None:
        self._in_message = True
        self._heads += 1
        if self._heads > 1:  # the first head's time counts from the accept
            self._head_started = self._now()
            self._expect(self._head_started + self.factory.header_timeout)

    def on_url(self, url: bytes) -> None:
        if not self._reading:  # the request before ended the connection; stop parsing
            self._in_message = False
            raise _Ignored()
        self._url += url
        if len(self._url) > MAX_LINE:
            raise _Refused(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._head_size += size
        if size > MAX_LINE or self._head_size > MAX_HEAD:
            raise _Refused(494)
        if self._in_head:  # trailers of a chunked body are dropped, as nginx and twisted.web do
            self._headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        clientproto = _CLIENTPROTOS.get(self._parser.get_http_version())
        if clientproto is None:  # nginx: HTTP/2.0 in text is 505
            raise _Refused(505)
        self._clientproto = clientproto
        # Only framing and Expect matter here; most requests have neither.
        fields = {lowered: value for name, value in self._headers
                  if (lowered := name.lower()) in _FRAMING_FIELDS}
        length = fields.get(b"content-length")
        self._chunked = b"transfer-encoding" in fields
        self._length = int(length) if length is not None and not self._chunked else None
        if self._parser.get_method() == b"TRACE":
            raise _Refused(405)
        if self._length is not None and self._length > self.factory.max_body_size > 0:
            raise _Refused(413)  # before any 100 Continue, as nginx
        if self._chunked:  # length unknown: memory first, so small bodies take no file
            self._body = tempfile.SpooledTemporaryFile(_MEMORY_BODY)
        elif self._length is not None and self._length >= _MEMORY_BODY:
            self._body = tempfile.TemporaryFile()
        else:
            self._body = io.BytesIO()
        if self._chunked or self._length:
            self._expect(self._now() + self.factory.body_timeout)
        if fields.get(b"expect", b"").lower() == b"100-continue" and clientproto == b"HTTP/1.1":
            if self._active is None:
                self.transport.write(_CONTINUE)
            else:  # not in the middle of the response before it
                self._continue_owed = True

    def on_body(self, body: bytes) -> None:
        assert self._body is not None
        self._progress = True
        self._body_size += len(body)
        if self._body_size > self.factory.max_body_size > 0:  # only a chunked body gets here
            raise _Refused(413)
        self._body.write(body)

    def on_chunk_complete(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        parser, body = self._parser, self._body
        assert body is not None
        upgrade = parser.should_upgrade()
        if upgrade and self._chunked:  # a body the parser leaves unread, with no length to read it by
            raise _Refused(400)
        persistent = parser.should_keep_alive() and not upgrade and not self._draining
        self._in_message = False
        request = DownstreamRequest(
            self, parser.get_method(), self._url, self._clientproto, self._headers, body, persistent)
        self._body = None
        self._url, self._headers, self._head_size, self._body_size = b"", [], 0, 0
        self._in_head, self._stalled, self._ended_a_request = True, 0, True
        self._continue_owed = False  # the body came without it
        self._reading = self._reading and persistent
        if upgrade and self._length:
            # The parser stops at an Upgrade head; nginx ignores the Upgrade and reads the body.
            self._upgrading, self._upgrade_left = request, self._length
            return
        body.seek(0)
        self._waiting.append(request)
        self._advance()
        if self._waiting and not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _read_upgrade_body(self, data: bytes) -> None:
        """The body of an Upgrade request, which the parser does not read; then serve it."""
        request = self._upgrading
        assert request is not None
        taken = data[:self._upgrade_left]
        request.content.write(taken)
        self._upgrade_left -= len(taken)
        if self._upgrade_left:
            return
        self._upgrading = None
        request.content.seek(0)
        self._waiting.append(request)
        self._advance()

    # requests

    def _advance(self) -> None:
        """Start waiting requests in order, then owe the client nothing more when idle.

        A loop rather than recursion: a response may end within ``render``, and a
        client may pipeline thousands of requests in one read.
        """
        if self._advancing:
            return
        self._advancing = True
        try:
            while self._active is None and self._waiting and not self._closed:
                self._start(self._waiting.popleft())
        finally:
            self._advancing = False
        if self._closed:
            return
        if self._active is None and self._refusal is not None:
            self._send_refusal(self._refusal)
            return
        if self._active is None and self._continue_owed:
            self._continue_owed = False
            self.transport.write(_CONTINUE)
        if self._paused and not self._waiting:
            self._paused = False
            self.transport.resumeProducing()

    def _start(self, request: DownstreamRequest) -> None:
        self._active = request
        try:
            self.factory.resource.render(request)
        except Exception:
            failure = Failure()
            log.failure("proxy request failed before it started: {error}", failure, error=error_text(failure))
            self._reading, self._closed = False, True
            self.transport.abortConnection()

    def request_done(self, request: DownstreamRequest) -> None:
        """The active request's response ended: close, or go on with the next request."""
        self._active = None
        self._last_read = self._now()  # idle from the end of the answer, not from the request
        if self._in_message:  # a pipelined head is timed from when its turn came, as nginx reads it
            self._head_started = self._last_read
        self._expect(self._deadline())
        # HTTPFactory.log only hands the request to its logFormatter, access_log.kong, which
        # reads IProxiedRequest; Twisted types it as a twisted.web Request.
        self.factory.log(request)  # type: ignore[arg-type]
        if request.persistent:
            self._advance()
        else:
            self._close()

    def _refuse(self, status: int) -> None:
        """Answer a request that cannot be parsed, after those before it, then close."""
        self._reading = self._in_message = False
        self._refusal = status
        self._advance()

    def _send_refusal(self, status: int) -> None:
        # Kong's renderer B, from what was parsed of the head: Accept, Content-Type, the default
        def sent(field: bytes) -> str | None:  # repeated lines joined, as Kong reads Accept
            values = [value for name, value in self._headers if name.lower() == field]
            return b",".join(values).decode("latin-1") if values else None
        media, body, request_id = self.factory.refusal_page(status, sent(b"accept"), sent(b"content-type"))
        code = 400 if status == 494 else status
        self.transport.writeSequence([
            b"HTTP/1.1 %d %s\r\n" % (code, _REASONS[status]),
            b"Server: %s\r\nDate: %s\r\n" % (self.factory.server_token, http_date()),
            b"Content-Type: %s; charset=utf-8\r\n" % media.encode(),
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body), body])
        self._log_refusal(code, len(body), request_id)
        self._close()

    def _log_refusal(self, code: int, length: int, request_id: str | None) -> None:
        """An access log line for a refused request, as nginx writes one, with what was parsed of it."""
        # the parser names a method only once the target follows it, a version once it read one
        method = self._parser.get_method() if self._url else b"-"
        version = self._parser.get_http_version()
        refused = DownstreamRequest(self, method, self._url or b"-",
                                    b"-" if version == "0.0" else b"HTTP/" + version.encode(),
                                    self._headers, io.BytesIO(), persistent=False)
        refused.code, refused.sentLength, refused.request_id = code, length, request_id
        self.factory.log(refused)  # type: ignore[arg-type]  # as in request_done

    def _close(self) -> None:
        """Close after what was written; nothing more is read or answered."""
        self._reading, self._closed = False, True
        self.transport.loseConnection()

    def _deadline(self) -> float:
        """When what the connection is waiting for runs out of time; a request being
        answered is bounded by its service's timeouts instead."""
        if self._active is not None or self._waiting:
            return _NEVER
        if self._upgrading is not None or (self._in_message and not self._in_head):
            return self._last_read + self.factory.body_timeout
        if self._in_message:
            return self._head_started + self.factory.header_timeout
        if self._heads == 0:
            return min(self._head_started + self.factory.header_timeout, self._first_request_by)
        return _NEVER if self.timeOut is None else self._last_read + self.timeOut

    def _expect(self, deadline: float) -> None:
        """Have the timer fire by ``deadline``; a later one is looked at when it fires."""
        if deadline < self._fires_at:
            if self._timer is not None:
                self._timer.cancel()
            self._fires_at = deadline
            delay = max(deadline - self._now(), 0.0)
            self._timer = self.factory.reactor.callLater(delay, self._timed_out)

    def _timed_out(self) -> None:
        now, deadline = self._now(), self._deadline()
        self._timer, self._fires_at = None, _NEVER
        if deadline > now:
            self._expect(deadline)
            return
        if self._in_message or self._upgrading is not None:
            # nginx's 408: logged, never sent (the client is not sending, so likely not reading)
            self._log_refusal(408, 0, None)
        self._close()
        # A client that stops reading would keep the connection open for ever.
        self._abort = self.factory.reactor.callLater(_ABORT_AFTER, self.transport.abortConnection)

    def drain(self, first_request_grace: float = 0.0) -> None:
        """Take no more requests: answer those read or being read, the last with Connection:
        close, then close. An idle connection closes at once, unless it has read nothing
        yet: that one waits ``first_request_grace`` for its first request, and answers it."""
        self._draining = True
        if self._in_message:
            return  # on_message_complete makes it the last
        if self._heads == 0 and first_request_grace > 0:
            self._first_request_by = self._now() + first_request_grace
            self._expect(self._first_request_by)
            return
        self._reading = False
        if self._refusal is not None:
            return  # owed after the requests before it, and it closes the connection
        last = self._upgrading or (self._waiting[-1] if self._waiting else self._active)
        if last is None:
            self._close()
        else:
            last.persistent = False

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.factory.connections.closed(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._reading, self._closed = False, True
        if self._body is not None:
            self._body.close()
            self._body = None
        for request in [self._active, self._upgrading, *self._waiting]:
            if request is not None:
                request.connection_lost(reason)
        self._active = self._upgrading = None
        self._waiting.clear()


#: ``(status, Accept, Content-Type)`` of a refused request -> ``(media type, body, request id)``.
RefusalPage = Callable[[int, "str | None", "str | None"], "tuple[str, bytes, str]"]

_REASONS = {400: b"Bad Request", 405: b"Not Allowed", 413: b"Request Entity Too Large",
            414: b"Request-URI Too Large", 494: b"Bad Request", 505: b"HTTP Version Not Supported"}
#: The versions served, as the parser names them and as a status line writes them.
_CLIENTPROTOS = {"1.0": b"HTTP/1.0", "1.1": b"HTTP/1.1"}
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"expect"})


class ProxyServerFactory(HTTPFactory):
    """Serves ``resource`` (a ``ProxyResource``) over kongish's own HTTP/1.1 connections.

    ``max_body_size`` caps request bodies (0: no cap), as nginx's client_max_body_size;
    ``header_timeout`` and ``body_timeout`` are nginx's ``client_header_timeout`` and
    ``client_body_timeout``, and ``timeout`` its ``keepalive_timeout``; ``cap``, when
    given, refuses connections past the process's limit;
    ``refusal_page`` renders the answer to a request refused before it reached
    ``resource`` (Kong's error page: ``kongish.runloop.error_pages.KongRefusals``), and
    ``server_token`` is its ``Server`` header.
    """

    # Twisted types HTTPFactory.protocol as its HTTP/2-negotiating factory function; any
    # protocol factory serves (buildProtocol only sets callLater and timeOut, the keep-alive
    # timeout, on what it makes).
    protocol = ProxyConnection  # type: ignore[assignment]

    def __init__(self, resource: Any, refusal_page: RefusalPage, server_token: bytes,
                 max_body_size: int = 0, header_timeout: float = HEADER_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT, cap: ConnectionCap | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**{"logFormatter": access_log.kong, **kwargs})
        self.resource = resource
        self.max_body_size = max_body_size
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.refusal_page = refusal_page
        self.server_token = server_token
        self.connections: Draining[ProxyConnection] = Draining(self.reactor)
        self.cap = cap
        if cap is not None:
            cap.listeners.append(self.connections.open)

    def buildProtocol(self, addr: Any) -> ProxyConnection | None:  # type: ignore[override]
        """A connection, or None past the cap: Twisted then closes the socket unanswered."""
        if self.cap is not None and not self.cap.admits(admin=False):
            return None
        return cast(ProxyConnection, super().buildProtocol(addr))

    def drain(self, timeout: float) -> Deferred[None]:
        """A graceful stop, once the port no longer listens: fires when every connection
        has answered what it had read and closed; those still open after ``timeout`` are cut."""
        return self.connections.stop(timeout, lambda connection: connection.drain(FIRST_REQUEST_GRACE),
                                     lambda connection: connection.transport.abortConnection())
