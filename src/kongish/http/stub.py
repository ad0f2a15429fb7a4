"""``StubUpstream``: an ``IUpstreamClient`` that answers from a Python function, in memory.

A test double (``kongish.testing`` exports it), and the upstream of the Admin API's dry run,
which answers a sample response and never opens a connection.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, BinaryIO, cast

import attrs
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from kongish.http.client import UpstreamFailure, UpstreamTimeout, classify
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

#: How a stubbed body ends: whole, cut short of its Content-Length, or by a broken connection.
BODY_ENDS = ("complete", "truncated", "reset")


@attrs.frozen
class StubRequest:
    """One request as a ``StubUpstream`` received it."""

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: str | None
    #: A copy of the headers sent, their names spelled as given.
    headers: Headers
    body: bytes
    settings: UpstreamSettings

    def header(self, name: str) -> list[str]:
        """The values of header ``name`` (any spelling)."""
        return [value.decode("latin-1") for value in self.headers.getRawHeaders(name.encode("latin-1"), [])]


@attrs.frozen
class StubResponse:
    """What a ``StubUpstream`` handler answers.

    ``body`` is bytes or a sequence of chunks, each bytes or a Deferred firing with
    bytes (the body waits for it: one that never fires stalls the body). ``end``
    is one of ``BODY_ENDS``. ``content_length`` defaults to the body's length for
    a complete body and to ``None`` otherwise; for HEAD no body is delivered.
    """

    status: int = 200
    headers: Sequence[tuple[str | bytes, str | bytes]] = ()
    body: bytes | Sequence[bytes | Deferred[bytes]] = b""
    reason: bytes | None = None
    end: str = "complete"
    content_length: int | None | str = "auto"

    def __attrs_post_init__(self) -> None:
        if self.end not in BODY_ENDS:
            raise ValueError(f"end must be one of {BODY_ENDS}, not {self.end!r}")

    def chunks(self) -> list[bytes | Deferred[bytes]]:
        return [self.body] if isinstance(self.body, bytes) else list(self.body)


#: A StubUpstream's handler: the response for a request, now or later. Raising (or failing)
#: with ``ConnectionRefusedError``, ``DNSLookupError``, ``UpstreamTimeout``... is the upstream
#: failing as a real one would, classified as ``UpstreamClient`` classifies it.
StubHandler = Callable[[StubRequest], "StubResponse | Deferred[StubResponse]"]


def _raw(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


@implementer(IUpstreamClient)
@attrs.define(eq=False)
class StubUpstream:
    """An in-memory ``IUpstreamClient`` answering every request from ``handler``.

    ``requests`` records what it was sent; ``read_timeout`` bounds the wait for the
    handler's answer on ``clock``, as it bounds the wait for a response head (then the
    handler's Deferred is cancelled, and so it is when the caller cancels). It does not
    retry, connect or write: each request is one call of the handler, with the body read
    whole, and ``connect_timeout``, ``write_timeout`` and ``retries`` are only recorded.
    """

    handler: StubHandler
    clock: IReactorTime = attrs.field(factory=Clock)
    requests: list[StubRequest] = attrs.field(factory=list, init=False)
    #: The responses given, for checking how their bodies were read.
    responses: list[StubUpstreamResponse] = attrs.field(factory=list, init=False)
    closed: bool = attrs.field(default=False, init=False)

    def send(self, request: IUpstreamRequest, settings: UpstreamSettings,
             body: bytes | BinaryIO) -> Deferred[IUpstreamResponse]:
        if not isinstance(body, bytes):
            body.seek(0)
            body = body.read()
        headers = CasedHeaders()
        for name, values in request.headers.getAllRawHeaders():
            headers.setRawHeaders(name, list(values))
        received = StubRequest(request.method, request.scheme, request.host, request.port, request.path,
                               request.query, headers, body, settings)
        self.requests.append(received)
        answer = maybeDeferred(self.handler, received)
        timed_out = []

        def expired() -> None:
            timed_out.append(True)
            answer.cancel()

        timer = self.clock.callLater(settings.read_timeout, expired)

        def answered(response: StubResponse) -> IUpstreamResponse:
            given = StubUpstreamResponse.of(response, request.method)
            self.responses.append(given)
            return given

        def failed(failure: Failure) -> Failure:
            if failure.check(CancelledError):
                if timed_out:
                    raise classify(UpstreamTimeout())
                return failure
            if failure.check(UpstreamFailure):
                return failure
            raise classify(cast(BaseException, failure.value))

        def disarm(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        result: Deferred[IUpstreamResponse] = Deferred(lambda _: answer.cancel())
        answer.addBoth(disarm).addCallbacks(answered, failed).chainDeferred(result)
        return result

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


@implementer(IUpstreamResponse)
@attrs.define(eq=False)
class StubUpstreamResponse:
    """A StubResponse as an ``IUpstreamResponse``; ``end`` is how its body ended, once it did."""

    status: int
    reason: bytes
    headers: Headers
    content_length: int | None
    _chunks: deque[bytes | Deferred[bytes]]
    _ending: str
    end: BodyEnd | None = None
    discarded: bool = False
    _receiver: IBodyReceiver | None = None
    _paused: bool = False
    _waiting: Deferred[bytes] | None = None

    @classmethod
    def of(cls, response: StubResponse, method: str) -> StubUpstreamResponse:
        headers = CasedHeaders()
        for name, value in response.headers:
            headers.addRawHeader(_raw(name), _raw(value))
        chunks = response.chunks()
        length = response.content_length
        if length == "auto":
            complete = response.end == "complete" and all(isinstance(chunk, bytes) for chunk in chunks)
            length = sum(len(chunk) for chunk in chunks if isinstance(chunk, bytes)) if complete else None
        if method == "HEAD" or response.status in NO_BODY_STATUSES or response.status < 200:
            chunks, end = [], "complete"
            if method != "HEAD":
                length = None
        else:
            end = response.end
        reason = response.reason
        if reason is None:
            try:
                reason = HTTPStatus(response.status).phrase.encode("ascii")
            except ValueError:
                reason = b"Unknown"
        return cls(response.status, reason, headers, length if isinstance(length, int) else None,
                   deque(chunks), end)

    def deliver_body(self, receiver: IBodyReceiver) -> None:
        self._receiver = receiver
        receiver.body_started(_StubStream(self))
        self._pump()

    def discard(self) -> None:
        self.discarded = True
        self._finish(BodyEnd(False, aborted=True, reason="discarded"))

    def _pump(self) -> None:
        while self.end is None and not self._paused and self._waiting is None:
            if not self._chunks:
                if self._ending == "complete":
                    self._finish(COMPLETE)
                elif self._ending == "truncated":
                    self._finish(BodyEnd(False, truncated=True, reason="the upstream closed the connection "
                                                                      "before the whole body"))
                else:
                    self._finish(BodyEnd(False, reason="connection reset by the upstream"))
                return
            chunk = self._chunks.popleft()
            if isinstance(chunk, Deferred):
                self._waiting = chunk
                chunk.addCallback(self._arrived)
                return
            if chunk:
                assert self._receiver is not None
                self._receiver.body_data(chunk)

    def _arrived(self, chunk: bytes) -> None:
        self._waiting = None
        if self.end is None:
            self._chunks.appendleft(chunk)
            self._pump()

    def _finish(self, end: BodyEnd) -> None:
        if self.end is None:
            self.end = end
            self._chunks.clear()
            receiver, self._receiver = self._receiver, None  # it holds this body: let it go
            if receiver is not None:
                receiver.body_ended(end)


@implementer(IBodyStream)
@attrs.frozen
class _StubStream:
    response: StubUpstreamResponse

    def pause(self) -> None:
        self.response._paused = True

    def resume(self) -> None:
        if self.response._paused:
            self.response._paused = False
            self.response._pump()

    def abort(self) -> None:
        self.response._finish(BodyEnd(False, aborted=True, reason="aborted"))

