"""How many client connections one process takes: refused cleanly before descriptors run out.

nginx's ``worker_connections`` counts every connection a worker holds, upstream
ones included, and a proxied request holds two (its client's and its
upstream's). kongish admits client connections while they number under half
of ``worker_connections`` (itself kept below the descriptor limit, with room
for the store, logs and idle upstream connections), so that ``accept`` never
meets EMFILE. A connection past the cap is closed at once, unanswered, as
nginx closes one when its connections "are not enough", and the log says so.
The Admin API keeps a share of the cap that proxy clients cannot take, so an
operator can still reach a node that is flooded.
"""
from __future__ import annotations

from collections.abc import Callable, Sized

import attrs
from twisted.logger import Logger

log = Logger()

#: Descriptors kept out of ``worker_connections`` for the store, logs, Lua and idle upstream connections.
RESERVED_DESCRIPTORS = 256
#: Client connections only the Admin API may take, at most (a small cap keeps a part of it).
ADMIN_SHARE = 32
#: At most one "not enough" line per this many seconds, however many connections are refused.
_WARN_EVERY = 1.0


@attrs.define(eq=False)
class ConnectionCap:
    """The client connections of every listener of one process, and the cap on them."""

    #: Client connections taken at most (proxy and Admin API together).
    limit: int
    now: Callable[[], float]
    #: The open connections of each listener (their ``Draining.open`` sets).
    listeners: list[Sized] = attrs.field(factory=list)
    #: Connections refused since start (shown on ``/status``).
    refused: int = 0
    _warned_at: float = attrs.field(default=float("-inf"), init=False)

    @classmethod
    def for_descriptors(cls, descriptors: int, worker_connections: int | None,
                        now: Callable[[], float]) -> ConnectionCap:
        """The cap for a process with ``descriptors`` open files at most; ``worker_connections``
        None is ``auto`` (as many as the descriptors allow)."""
        usable = max(descriptors - RESERVED_DESCRIPTORS, 2)
        if worker_connections is not None and worker_connections > usable:
            log.warn("nginx_events_worker_connections {wanted} exceeds the open file limit "
                     "{descriptors}: using {usable}", wanted=worker_connections,
                     descriptors=descriptors, usable=usable)
        connections = usable if worker_connections is None else min(worker_connections, usable)
        return cls(max(connections // 2, 1), now)

    @property
    def admin_share(self) -> int:
        return min(ADMIN_SHARE, self.limit // 4)

    def admits(self, admin: bool) -> bool:
        """Whether one more client connection may be taken; one refused is counted and logged."""
        taken = sum(len(listener) for listener in self.listeners)
        if taken < (self.limit if admin else self.limit - self.admin_share):
            return True
        self.refused += 1
        if self.now() - self._warned_at >= _WARN_EVERY:
            self._warned_at = self.now()
            log.warn("{limit} client connections are not enough: refused {refused} since start "
                     "(nginx_events_worker_connections, nginx_main_worker_rlimit_nofile)",
                     limit=self.limit, refused=self.refused)
        return False
