"""The proxy as a twisted.web resource: what kongish's listener (and any twisted.web site
kongish is mounted in) hands each request to; ``ProxyFlow`` (``kongish.runloop.flow``) does
the rest."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

import attrs
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from kongish.http.downstream import DownstreamRequest
from kongish.http.headers import HOST
from kongish.http.interfaces import IProxiedRequest, IUpstreamClient
from kongish.http.target import origin_form
from kongish.runloop.drive import drive
from kongish.runloop.flow import NODE_SETUP, FlowSetup, ProxyFlow

if TYPE_CHECKING:
    from kongish.node import Node


@implementer(IResource)
# No slots: twisted.web's Resource.putChild sets a ``server`` attribute on the child.
@attrs.define(eq=False, slots=False)
class ProxyResource:
    """Serves proxied traffic for one node; mount it as a twisted.web site's root."""

    node: Node
    client: IUpstreamClient
    #: The node's router and plugins, unless a dry run brings its own.
    setup: FlowSetup = attrs.field(default=NODE_SETUP, kw_only=True)
    isLeaf = True

    def getChildWithDefault(self, name: bytes, request: Request) -> ProxyResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the proxy routes every path itself")

    def render(self, request: Request) -> object:
        self.node.counters.total_requests += 1
        mounted = not isinstance(request, DownstreamRequest)  # twisted.web's, in someone's site
        if mounted:
            request.defaultContentType = None  # twisted.web types untyped answers text/html
        if not request.uri.startswith(b"/") and (absolute := origin_form(request.uri)) is not None:
            host, request.uri = absolute
            request.path = request.uri.split(b"?", 1)[0]
            request.requestHeaders.setRawHeaders(HOST, [host])
        # twisted.web's Request provides IProxiedRequest too (tests.test_proxy_server checks it)
        flow = ProxyFlow(self.node, self.client, cast(IProxiedRequest, request), mounted, setup=self.setup)
        drive(flow.run(), flow.crashed)
        return NOT_DONE_YET
