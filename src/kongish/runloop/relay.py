"""Streaming an upstream response body to the client.

The relay is the client request's producer: a client that reads slowly
pauses the upstream connection, so kongish holds about a socket buffer of
the body, never all of it. A body_filter that waits (``ngx.sleep``) pauses
it too. ``read_timeout`` bounds each wait for the upstream's next chunk, as
nginx's does, and ``send_timeout`` each wait for the client to take more: a
client that stops reading is cut off, which frees the upstream connection.
Once the response head is out, a failure (timeout, upstream reset, body_filter
error, client gone) can only end the client connection:
the relay closes both sides and reports the body as cut. A body_filter that
fails before anything of the response was written leaves the client
connection to the flow, which answers Kong's 500 instead (``unsent_failure``).

The relay only knows the upstream through ``kongish.http.interfaces``: it is
the body's ``IBodyReceiver`` and controls it through its ``IBodyStream``.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kongish.error_log import error_text
from kongish.http.interfaces import BodyEnd, IBodyReceiver, IBodyStream, IProxiedRequest
from kongish.http.paced import SEND_TIMEOUT

log = Logger()

#: body_filter for one chunk (``eof`` on the last call): the chunk to send, now or later.
BodyFilter = Callable[[bytes, bool], "bytes | Deferred[bytes]"]


@implementer(IPushProducer, IBodyReceiver)
class BodyRelay:
    """Delivers one upstream body to ``request``; ``done`` fires True when it was complete."""

    def __init__(self, request: IProxiedRequest, body_filter: BodyFilter | None, read_timeout: float,
                 reactor: Any, request_id: str, send_timeout: float = SEND_TIMEOUT) -> None:
        self.request = request
        self.body_filter = body_filter
        self.read_timeout = read_timeout
        self.reactor = reactor
        self.request_id = request_id
        self.done: Deferred[bool] = Deferred()
        self.send_timeout = send_timeout
        self._timer: IDelayedCall | None = None
        #: Armed while the client takes nothing (nginx's ``send_timeout``).
        self._stall: IDelayedCall | None = None
        self._client_paused = False
        self._filtering = False
        self._upstream_paused = False
        self._upstream_ended = False
        self._cut = False
        self._queue: deque[tuple[bytes, bool]] = deque()
        self._stream: IBodyStream | None = None
        #: A body_filter failure that came before any of the response was written.
        self.unsent_failure: Failure | None = None

    # the upstream side (IBodyReceiver)

    def body_started(self, stream: IBodyStream) -> None:
        self._stream = stream
        if self._client_gone():
            self._cut = True
            stream.abort()
            return
        self.request.registerProducer(self, True)

    def watch(self) -> None:
        """Once the stream delivered what it had: time the upstream's silence from here (nginx's
        ``proxy_read_timeout``), unless the body is over already, as most are by now."""
        if self._upstream_ended or self._cut or self._upstream_paused:
            return
        if self._timer is None or not self._timer.active():
            self._timer = self.reactor.callLater(self.read_timeout, self._timed_out)

    def body_data(self, data: bytes) -> None:
        if self._cut:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.read_timeout)
        if self.body_filter is None:
            self.request.write(data)
            return
        self._queue.append((data, False))
        self._filter_queued()

    def body_ended(self, end: BodyEnd) -> None:
        self._upstream_ended = True
        self._stop_timer()
        if not self._client_gone():
            self.request.unregisterProducer()
        if self._cut:
            self._end(False)
        elif not end.complete:
            log.warn("upstream connection failed while sending the response body "
                     "(request {request_id}): {reason}", request_id=self.request_id,
                     reason=end.reason)
            self._cut_off()
        elif self.body_filter is None:
            self._end(True)
        else:
            self._queue.append((b"", True))
            self._filter_queued()

    # the client side (IPushProducer)

    def pauseProducing(self) -> None:
        self._client_paused = True
        if self._stall is None and not self._cut:
            self._stall = self.reactor.callLater(self.send_timeout, self._client_stalled)
        self._flow_control()

    def resumeProducing(self) -> None:
        self._client_paused = False
        self._stop_stall()
        self._flow_control()

    def stopProducing(self) -> None:
        """The client connection is closing."""
        self._cut_off()

    def client_lost(self) -> None:
        """The client disconnected."""
        self._cut_off()

    # body_filter

    def _filter_queued(self) -> None:
        assert self.body_filter is not None, "only a filtered body is queued"
        while self._queue and not self._filtering and not self._cut:
            data, eof = self._queue.popleft()
            try:
                result = self.body_filter(data, eof)
            except Exception:
                self._filter_failed(Failure())
                return
            if isinstance(result, Deferred):
                self._filtering = True
                self._flow_control()
                result.addCallbacks(self._filtered, self._filter_failed, callbackArgs=(eof,))
                return
            self._emit(result, eof)

    def _filtered(self, chunk: bytes, eof: bool) -> None:
        self._filtering = False
        if self._cut:
            if self._upstream_ended:
                self._end(False)
            return
        self._emit(chunk, eof)
        self._flow_control()
        self._filter_queued()

    def _emit(self, chunk: bytes, eof: bool) -> None:
        if chunk and not self._client_gone():
            self.request.write(chunk)
        if eof:
            self._end(True)

    def _filter_failed(self, failure: Failure) -> None:
        self._filtering = False
        if not self.request.startedWriting and not self._client_gone():
            self.unsent_failure = failure  # the flow logs it and answers 500
            self._cut_off(close_client=False)
            return
        log.failure("unexpected error in phase body_filter (request {request_id}): {error}", failure,
                    request_id=self.request_id, error=error_text(failure))
        self._cut_off()

    # ending

    def _client_stalled(self) -> None:
        """The client took nothing for ``send_timeout``: nginx closes such a connection; it is
        aborted, since a client that does not read never lets a graceful close finish."""
        self._stall = None
        log.info("client timed out while sending the response body (request {request_id})",
                 request_id=self.request_id)
        self._cut_off()
        self.request.channel.transport.abortConnection()

    def _stop_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _timed_out(self) -> None:
        log.warn("upstream timed out while reading the response body (request {request_id})",
                 request_id=self.request_id)
        self._cut_off()

    def _cut_off(self, close_client: bool = True) -> None:
        """Close both connections; ``done`` fires False once the upstream one is gone."""
        if self._cut or self.done.called:
            return
        self._cut = True
        self._queue.clear()
        self._stop_timer()
        self._stop_stall()
        if close_client:
            self.request.loseConnection()
        if self._upstream_ended:
            self._end(False)
        else:
            self.stream.abort()

    def _end(self, complete: bool) -> None:
        self._stop_stall()  # from here the connection's own timers bound a client that does not read
        if not self.done.called and not self._filtering:
            self.done.callback(complete)

    # helpers

    def _flow_control(self) -> None:
        """Pause the upstream while the client or a filter cannot take more, and only then."""
        wanted = self._client_paused or self._filtering
        if self._upstream_ended or self._cut or wanted == self._upstream_paused:
            return
        self._upstream_paused = wanted
        if wanted:
            self.stream.pause()
            self._stop_timer()
        else:
            self._timer = self.reactor.callLater(self.read_timeout, self._timed_out)
            self.stream.resume()  # what it held back may come now, and the end with it

    @property
    def stream(self) -> IBodyStream:
        assert self._stream is not None, "body_started comes first"
        return self._stream

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def _client_gone(self) -> bool:
        return bool(self.request._disconnected or self.request.finished)

