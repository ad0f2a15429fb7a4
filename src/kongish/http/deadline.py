"""A timer whose deadline moves later for free.

A connection's timeout is set again on each request it carries and cleared when
the answer comes: with a Twisted ``DelayedCall`` that is a ``callLater`` and a
``cancel`` per request, and every cancelled call stays in the reactor's heap until
it is swept. A ``Deadline`` keeps one call per connection and only records a later
deadline; when the call comes due it checks the deadline and waits on if it moved.
Only a deadline brought sooner touches the reactor.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall


@attrs.define(eq=False)
class Deadline:
    """Calls ``expired`` once the deadline last ``set`` passes, unless ``clear``ed first."""

    reactor: Any
    expired: Callable[[], None]
    _at: float | None = attrs.field(default=None, init=False)
    _call: IDelayedCall | None = attrs.field(default=None, init=False)

    def set(self, seconds: float) -> None:
        """Expire ``seconds`` from now (and not at any earlier deadline)."""
        at = self._at = self.reactor.seconds() + seconds
        call = self._call
        if call is None:
            self._call = self.reactor.callLater(seconds, self._due)
        elif call.getTime() > at:
            call.reset(seconds)

    def clear(self) -> None:
        """No deadline; the call left in the reactor finds none when it comes due."""
        self._at = None

    @property
    def armed(self) -> bool:
        return self._at is not None

    def stop(self) -> None:
        """No deadline and no call in the reactor (the connection is gone)."""
        self._at = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _due(self) -> None:
        self._call = None
        if self._at is None:
            return
        left = self._at - self.reactor.seconds()
        if left > 0:
            self._call = self.reactor.callLater(left, self._due)
            return
        self._at = None
        self.expired()
