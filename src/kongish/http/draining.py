"""A stopping listener's open connections: when they have all closed, or their deadline.

A node stops as nginx quits gracefully: each connection finishes what it is
answering and closes; one still open at the deadline is cut. The proxy's
factory and the Admin API's site each keep their connections in one of these.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from kongish.error_log import error_text

log = Logger()

Connection = TypeVar("Connection")


class Draining(Generic[Connection]):
    """Open connections, and who waits for the last of them to close."""

    def __init__(self, reactor: IReactorTime) -> None:
        self.open: set[Connection] = set()
        #: Connections accepted since start (nginx's ``accepts``, shown on ``/status``).
        self.accepted = 0
        #: Once stopping, a connection still accepted closes as soon as it can.
        self.stopping = False
        self._reactor = reactor
        self._waiters: list[Deferred[None]] = []
        self._deadline: IDelayedCall | None = None

    def stop(self, timeout: float, wind_down: Callable[[Connection], None],
             cut: Callable[[Connection], None]) -> Deferred[None]:
        """``wind_down`` each connection now and ``cut`` those open after ``timeout``;
        fires once none is open."""
        self.stopping = True
        self._each(wind_down)
        if not self.open:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if self._deadline is None or not self._deadline.active():
            self._deadline = self._reactor.callLater(timeout, self._each, cut)
        return waiter

    def _each(self, act: Callable[[Connection], None]) -> None:
        """``act`` on every open connection; one that fails does not spare the others."""
        for connection in list(self.open):
            try:
                act(connection)
            except Exception:
                failure = Failure()
                log.failure("closing {connection} failed: {error}", failure,
                            connection=str(connection), error=error_text(failure))

    def opened(self, connection: Connection) -> None:
        self.open.add(connection)
        self.accepted += 1

    def closed(self, connection: Connection) -> None:
        self.open.discard(connection)
        if self._waiters and not self.open:
            if self._deadline is not None and self._deadline.active():
                self._deadline.cancel()
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
