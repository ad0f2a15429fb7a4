"""The Admin API as a twisted.web resource."""
from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import attrs
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from kongish import errors
from kongish.admin.body import BodyRejected
from kongish.admin.call import AdminCall
from kongish.admin.declarative import config_endpoints
from kongish.admin.dispatch import Endpoint, EndpointTable
from kongish.admin.dry_run import dry_run_endpoints
from kongish.admin.entities import entity_endpoints
from kongish.admin.info import info_endpoints, status
from kongish.admin.metrics import metrics_endpoints
from kongish.admin.respond import AdminHeaders, send
from kongish.admin.tags import tag_endpoints
from kongish.error_log import error_text

if TYPE_CHECKING:
    from kongish.node import Node

log = Logger()
_UNEXPECTED = {"message": "An unexpected error occurred"}


async def list_endpoints(call: AdminCall) -> tuple[int, object]:
    return 200, {"data": admin_endpoint_table().templates()}


def admin_endpoint_table() -> EndpointTable:
    own = [Endpoint("/endpoints", {"GET": list_endpoints})]
    return EndpointTable(tuple(own + info_endpoints() + metrics_endpoints() + config_endpoints()
                                 + entity_endpoints() + tag_endpoints() + dry_run_endpoints()))


def status_endpoint_table() -> EndpointTable:
    """What Kong's status listener (``status_listen``) serves: ``/status``, and ``/metrics``."""
    return EndpointTable((Endpoint("/status", {"GET": status}), *metrics_endpoints()))


@implementer(IResource)
# No slots: twisted.web's Resource.putChild sets a ``server`` attribute on the child.
@attrs.define(eq=False, slots=False)
class AdminResource:
    """Serves the Admin API of one node; mount it anywhere in a twisted.web site."""

    node: Node
    table: EndpointTable = attrs.Factory(admin_endpoint_table)
    headers: AdminHeaders = attrs.Factory(lambda self: AdminHeaders.from_settings(self.node.settings),
                                          takes_self=True)
    isLeaf = True

    def getChildWithDefault(self, name: bytes, request: Request) -> AdminResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the Admin API has a fixed endpoint table")

    def render(self, request: Request) -> object:
        started = time.monotonic()
        # twisted.web's Site sets postpath before it renders; the stubs allow None for a bare Request.
        postpath = cast("list[bytes]", request.postpath)
        segments = [unquote(s.decode("utf-8", "replace")) for s in postpath if s]
        found = self.table.find(segments)
        method = request.method.decode("ascii", "replace")
        if found is None:
            self._answer(request, started, 404, {"message": "Not found"})
            return NOT_DONE_YET
        endpoint, params = found
        if method == "OPTIONS":
            methods = ", ".join(endpoint.allowed).encode()
            request.setHeader(b"allow", methods)
            request.setHeader(b"access-control-allow-methods", methods)
            request.setHeader(b"access-control-allow-headers",
                              request.getHeader(b"access-control-request-headers") or b"Content-Type")
            self._answer(request, started, 204, None)
            return NOT_DONE_YET
        handler = endpoint.methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            self._answer(request, started, 405, {"message": "Method not allowed"})
            return NOT_DONE_YET
        call = AdminCall(request, self.node, params)
        # Every handler is an ``async def``: its Awaitable (dispatch.Handler) is a coroutine.
        coroutine = cast("Coroutine[Any, Any, tuple[int, Any]]", handler(call))
        ensureDeferred(coroutine).addCallbacks(
            lambda result: self._answer(request, started, *result),
            lambda failure: self._fail(request, started, failure))
        return NOT_DONE_YET

    def _answer(self, request: Request, started: float, status: int, body: object,
                raw: bytes | None = None) -> None:
        self.headers.apply(request, latency_ms=int((time.monotonic() - started) * 1000))
        send(request, status, body, raw=raw)

    def _fail(self, request: Request, started: float, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, BodyRejected):
            self._answer(request, started, error.status, None, raw=error.body)
        elif isinstance(error, errors.KongError):
            self._answer(request, started, error.status, error.body())
        else:
            log.failure("Admin API {method} {uri} failed: {error}", failure,
                        method=request.method.decode("latin-1"), uri=request.uri.decode("latin-1"),
                        error=error_text(failure))
            self._answer(request, started, 500, _UNEXPECTED)
