"""Writing a response body that kongish holds as the client's connection takes it.

A body written at once sits whole in the transport's buffer for as long as the
client does not read. ``PacedBody`` is the connection's push producer instead:
it hands over one chunk at a time while the transport asks for more, so what
the process holds is the body (counted by its owner) and at most one buffer's
worth in the transport. As nginx's ``send_timeout``, a client that takes
nothing for ``send_timeout`` seconds is cut off.
"""
from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from kongish.http.interfaces import IProxiedRequest

#: nginx's ``send_timeout`` default, in seconds.
SEND_TIMEOUT = 60.0
#: How much is handed to the transport at a time.
CHUNK = 65536


def send_paced(request: IProxiedRequest, body: bytes, reactor: IReactorTime,
               send_timeout: float = SEND_TIMEOUT) -> Deferred[None] | None:
    """Write ``body``: at once when it is one chunk or less (no more than a paced write would
    hand over), else paced; a Deferred only when the write goes on (callers await it then)."""
    if len(body) <= CHUNK:
        request.write(body)
        return None
    return PacedBody(request, body, reactor, send_timeout).start()


@implementer(IPushProducer)
class PacedBody:
    """One body on its way to one client; ``done`` fires once the transport has it all
    and has drained (or the connection went away)."""

    def __init__(self, request: IProxiedRequest, body: bytes, reactor: IReactorTime,
                 send_timeout: float = SEND_TIMEOUT) -> None:
        self._request, self._body, self._reactor = request, memoryview(body), reactor
        self._send_timeout = send_timeout
        self._offset = 0
        self._paused = False
        self._stall: IDelayedCall | None = None
        self.done: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        self._request.registerProducer(self, True)
        self.resumeProducing()
        return self.done

    def resumeProducing(self) -> None:
        """The transport has room: hand over chunks until it has no more, or the body ends."""
        self._paused = False
        self._cancel_stall()
        request, body = self._request, self._body
        while not self._paused and not self.done.called:
            if request._disconnected:
                return self._end()
            if self._offset >= len(body):
                return self._end()  # handed over, and the transport's buffer is below its mark
            chunk = body[self._offset:self._offset + CHUNK]
            self._offset += len(chunk)
            request.write(bytes(chunk))  # may pause us at once, from within write

    def pauseProducing(self) -> None:
        self._paused = True
        if self._stall is None:
            self._stall = self._reactor.callLater(self._send_timeout, self._stalled)

    def stopProducing(self) -> None:
        """The connection is closing: nothing more is written."""
        self._end()

    def _stalled(self) -> None:
        """The client took nothing for ``send_timeout``: nginx closes such a connection."""
        self._stall = None
        self._end()
        self._request.channel.transport.abortConnection()

    def _cancel_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _end(self) -> None:
        if self.done.called:
            return
        self._cancel_stall()
        self._body = memoryview(b"")
        if not self._request._disconnected:
            self._request.unregisterProducer()
        self.done.callback(None)
