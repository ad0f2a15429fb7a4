"""Kong's upstream keep-alive pools: idle connections kept per upstream, for the next request.

A pool is one upstream as Kong segments them (scheme, address, port, TLS server
name and whether the certificate is checked): a verified and an unverified TLS
connection are never shared. The most recently freed connection is reused
first, as nginx's keepalive module does, so the least used ones age out.
"""
from __future__ import annotations

from collections.abc import Hashable

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed

from kongish.http.upstream_connection import UpstreamConnection


@attrs.frozen
class KeepaliveSettings:
    """Kong's ``upstream_keepalive_*`` settings; 0 means what Kong says it means."""

    #: Idle connections kept per upstream; 0: none, each request opens a connection.
    pool_size: int = 512
    #: Requests one connection carries before it is closed; 0: no limit.
    max_requests: int = 10000
    #: Seconds an idle connection is kept; 0: for ever.
    idle_timeout: float = 60.0


@attrs.define(eq=False)
class KeepalivePools:
    """Every upstream's idle connections, each closed after ``idle_timeout`` unused."""

    settings: KeepaliveSettings = KeepaliveSettings()
    _idle: dict[Hashable, list[UpstreamConnection]] = attrs.Factory(dict)

    def take(self, key: Hashable) -> UpstreamConnection | None:
        """An idle connection to ``key``'s upstream, now in use; None when there is none."""
        idle = self._idle.get(key)
        if not idle:
            return None
        connection = idle.pop()
        if not idle:
            del self._idle[key]
        connection.deadline.clear()
        connection.on_lost = connection.on_free = None
        return connection

    def adopt(self, key: Hashable, connection: UpstreamConnection) -> None:
        """Have ``connection`` come back to ``key``'s pool whenever it is free again."""
        settings = self.settings
        if settings.pool_size == 0:
            return
        if settings.max_requests and connection.requests >= settings.max_requests:
            return

        def free(freed: UpstreamConnection) -> None:
            self._keep(key, freed)
        connection.on_free = free

    def _keep(self, key: Hashable, connection: UpstreamConnection) -> None:
        settings = self.settings
        idle = self._idle.setdefault(key, [])
        if len(idle) >= settings.pool_size or (
                settings.max_requests and connection.requests >= settings.max_requests):
            connection.abort()
            return
        idle.append(connection)
        connection.on_free = None
        connection.on_lost = lambda lost: self._forget(key, lost)
        if settings.idle_timeout:  # the connection's own timer: an idle one past it aborts
            connection.deadline.set(settings.idle_timeout)

    def _forget(self, key: Hashable, connection: UpstreamConnection) -> None:
        """An idle connection closed (the upstream's keep-alive ran out, or ours did)."""
        idle = self._idle.get(key, [])
        if connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[key]

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> Deferred[None]:
        """Close every idle connection; fires once all are closed."""
        closing = [connection for idle in self._idle.values() for connection in idle]
        for connection in closing:
            connection.abort()
        if not closing:
            return succeed(None)
        done: Deferred[None] = DeferredList([connection.closed for connection in closing]).addCallback(
            lambda _: None)
        return done
