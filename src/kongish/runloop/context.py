"""Per-request state shared by the proxy, the plugin pipeline and the Lua PDK.

One ``RequestContext`` lives for one proxied request. Plugins never touch the
Twisted request to change what is sent upstream or downstream: they change
``upstream`` (before the upstream call) and ``response`` (after it, or instead
of it), and the proxy acts on those.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.web.http_headers import Headers
from zope.interface import implementer

from kongish.http.headers import GatewayHeaders
from kongish.http.interfaces import IProxiedRequest, IUpstreamRequest
from kongish.http.peer import socket_peer
from kongish.runloop.output import UNBOUNDED, OutputLedger
from kongish.runloop.timing import KongTimings

if TYPE_CHECKING:
    from kongish.http.realip import RealIp

#: Phases in the order they run for one request.
PHASES = ("rewrite", "access", "header_filter", "body_filter", "log")


class _RequestIds:
    """32 hex digits from the system's random source, like nginx's ``$request_id``.

    Unpredictable (ids are sent to clients, so a seeded generator would give its state
    away), yet one system call per 256 ids: the bytes are read 4 KiB at a time.
    """

    __slots__ = ("_pool", "_offset")

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)  # a child must not repeat its parent's ids

    def reset(self) -> None:
        self._pool, self._offset = b"", 0

    def next(self) -> str:
        offset = self._offset
        if offset >= len(self._pool):
            self._pool, offset = os.urandom(4096), 0
        self._offset = offset + 16
        return self._pool[offset:offset + 16].hex()


new_request_id = _RequestIds().next


@attrs.define
class OutboundUse:
    """What a request (or a timer run) has spent of its outbound budget (``resty.http``),
    across its functions and phases; the access log tells it.

    ``refused`` is the error every outbound call gets instead (a dry run not asked to call out).
    """

    calls: int = 0
    seconds: float = 0.0
    refused: str | None = None


#: The ``RequestContext.slots`` key of a request's ``OutboundUse``.
OUTBOUND_SLOT = "outbound"
#: The ``RequestContext.slots`` key that marks a dry run's request (not real traffic).
DRY_RUN_SLOT = "dry_run"


@implementer(IUpstreamRequest)
@attrs.define
class UpstreamRequest:
    """What the proxy will send upstream; plugins may change any of it in access."""

    method: str
    #: Path to send, not yet percent-escaped (the proxy escapes it with Kong's rule).
    path: str
    #: Raw query string without the ``?``; ``None`` means no query at all.
    query: str | None
    #: Headers to send upstream (Host and X-Forwarded-* filled in by the proxy); read
    #: through the ``headers`` property, which builds them on first use.
    _headers: Headers | None = attrs.field(default=None, alias="headers")
    #: Replacement body; ``None`` means send the client's body unchanged.
    body: bytes | None = None
    scheme: str = "http"
    host: str = ""
    port: int = 80
    #: Builds the headers when first needed: a request a plugin ends in access never pays for them.
    build_headers: Callable[[], Headers] = attrs.field(default=Headers, repr=False)

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = self.build_headers()
            self.build_headers = Headers  # the builder holds the flow: let it go once used
        return self._headers

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self._headers = headers


@attrs.define
class DownstreamResponse:
    """The response as it will reach the client.

    ``exited`` is set when a plugin ended the request (``ngx.exit``,
    ``kong.response.exit``) or an error did; then ``body`` holds what the
    plugins produced and the upstream is never called.
    """

    status: int | None = None
    headers: GatewayHeaders = attrs.Factory(GatewayHeaders)
    #: Body chunks produced by plugins (``ngx.say``/``ngx.print``/``kong.response.exit``).
    body: list[bytes] = attrs.Factory(list)
    exited: bool = False
    #: ``"service"`` (from the upstream), ``"exit"`` (a plugin), ``"error"`` (kongish).
    source: str | None = None
    #: Body that kong.response.set_body chose; replaces the upstream's body.
    replacement_body: bytes | None = None


@attrs.define
class UpstreamResponse:
    """The upstream's answer as received, for ``kong.service.response.*``."""

    status: int
    headers: Headers


@attrs.define(eq=False)
class RequestContext:
    """Everything the phases of one request share."""

    request: IProxiedRequest
    #: Matched route and its service, as Admin API dicts (``None`` before routing).
    route: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    #: The request to proxy, once routed; read through ``upstream``, which makes it
    #: with ``plan_upstream`` on first use.
    _upstream: UpstreamRequest | None = attrs.field(default=None, alias="upstream")
    #: Set by the proxy once routed: a request a plugin ends without looking at what
    #: would be proxied never pays for building it.
    plan_upstream: Callable[[], UpstreamRequest] | None = None
    response: DownstreamResponse = attrs.Factory(DownstreamResponse)
    upstream_response: UpstreamResponse | None = None
    #: Regex captures of the matched route path: ``{"unnamed": [...], "named": {...}}``.
    uri_captures: dict[str, Any] = attrs.Factory(dict)
    #: 32 hex characters, sent as X-Kong-Request-Id.
    request_id: str = ""
    started_at: float = attrs.Factory(time.time)
    #: Kong's ``ngx.ctx.KONG_*`` timing fields, set by the proxy as the phases pass.
    timings: KongTimings = attrs.Factory(KongTimings)
    #: The phase now running (``ngx.get_phase()``).
    phase: str = "rewrite"
    #: In body_filter: the chunk being filtered and whether it is the last call.
    body_chunk: bytes = b""
    body_eof: bool = False
    #: How to find the client behind trusted proxies; None: whoever connected is the client.
    real_ip: RealIp | None = None
    _client_ip: str | None = attrs.field(default=None, init=False)
    _peer_ip: str | None = attrs.field(default=None, init=False)
    #: Free slots for components that keep per-request state (the Lua engine keeps
    #: its ``ngx.ctx``/``kong.ctx`` tables here), keyed by the component's name.
    slots: dict[str, Any] = attrs.Factory(dict)
    #: Counts the output this request holds for its client, with every other request's.
    output: OutputLedger = UNBOUNDED

    @property
    def upstream(self) -> UpstreamRequest | None:
        if self._upstream is None and self.plan_upstream is not None:
            self._upstream = self.plan_upstream()
            self.plan_upstream = None  # it holds the flow: let it go once used
        return self._upstream

    @upstream.setter
    def upstream(self, upstream: UpstreamRequest | None) -> None:
        self._upstream = upstream

    @property
    def peer_ip(self) -> str:
        """The address of whoever connected: the client, or a proxy in front (``$realip_remote_addr``)."""
        if self._peer_ip is None:  # asked a few times a request; each getPeer makes an address
            self._peer_ip = socket_peer(self.request)
        return self._peer_ip

    @property
    def client_ip(self) -> str:
        """The client's address, as a trusted proxy in front reports it (``$remote_addr``)."""
        if self._client_ip is None:
            peer = self.peer_ip
            self._client_ip = peer if self.real_ip is None else self.real_ip.client_ip(peer, self.request)
        return self._client_ip

    def upstream_if_made(self) -> UpstreamRequest | None:
        """The upstream request if anything has asked for it yet (and so may have changed it)."""
        return self._upstream

    def exit(self, status: int, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> None:
        """End the request from a plugin: no more access handlers, no upstream call."""
        self.response.status = status
        if body is not None:
            self.response.body.append(body)
        for name, value in (headers or {}).items():
            self.response.headers.setRawHeaders(name, [value])
        self.response.exited = True
        if self.response.source is None:
            self.response.source = "exit"
