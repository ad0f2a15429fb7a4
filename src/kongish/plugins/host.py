"""The node's side of IPluginHost: the reactor, settings, an HTTP client and loggers."""
from __future__ import annotations

from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from kongish.http.agent import UpstreamAgent
from kongish.http.client import UpstreamClient
from kongish.plugins.interface import IPluginHost
from kongish.settings import Settings


@implementer(IPluginHost)
@attrs.define(eq=False)
class PluginHost:
    """One per node. ``client`` is the node's upstream client: the proxy sends through it,
    and a plugin's treq calls (``http``) ride the same keep-alive pools; ``close`` ends
    their idle connections."""

    reactor: Any
    settings: Settings
    client: UpstreamClient = attrs.field(init=False)
    _http: HTTPClient | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.client = UpstreamClient(self.reactor, self.settings.upstream_keepalive, self.settings.dns)

    @property
    def http(self) -> HTTPClient:
        if self._http is None:
            self._http = HTTPClient(UpstreamAgent(self.client))
        return self._http

    def logger(self, name: str) -> Logger:
        return Logger(namespace=f"kongish.plugins.{name}")

    def close(self) -> Deferred[None]:
        """Close the idle upstream connections (the node is stopping)."""
        return self.client.close()
