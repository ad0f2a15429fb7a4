"""The node's side of IPluginHost: the reactor, settings, an HTTP client and loggers."""
from __future__ import annotations

from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer

from kongish.plugins.interface import IPluginHost
from kongish.settings import Settings


@implementer(IPluginHost)
@attrs.define(eq=False)
class PluginHost:
    """One per node. The HTTP client's pool is made on first use, so a node whose
    plugins call nobody holds no pool, and ``close`` ends its connections."""

    reactor: Any
    settings: Settings
    _pool: HTTPConnectionPool | None = attrs.field(default=None, init=False)
    _http: HTTPClient | None = attrs.field(default=None, init=False)

    @property
    def http(self) -> HTTPClient:
        if self._http is None:
            self._pool = HTTPConnectionPool(self.reactor)
            self._http = HTTPClient(Agent(self.reactor, pool=self._pool))
        return self._http

    def logger(self, name: str) -> Logger:
        return Logger(namespace=f"kongish.plugins.{name}")

    def close(self) -> Deferred[None]:
        """Close the HTTP client's idle connections (the node is stopping)."""
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()
