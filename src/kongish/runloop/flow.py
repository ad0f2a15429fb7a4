"""Kong's runloop for one proxied request: route it, run the plugin phases, call the
upstream, answer.

The flow follows Kong's runloop: rewrite (global plugins), router, access
(plugins may end the request here, and then the upstream is never called),
upstream call, header_filter, body_filter (per chunk, plus the final call),
log (after the response is finished). Response phases run for every answer,
including kongish's own errors and plugin short-circuits.

The upstream is an ``IUpstreamClient`` (``kongish.http.interfaces``): the
flow only sees its ``IUpstreamResponse``, never a client library's types.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from kongish.error_log import error_text
from kongish.http import access_log
from kongish.http.client import UpstreamFailure, settings_for
from kongish.http.headers import (
    CONTENT_LENGTH,
    CONTENT_TYPE,
    LOCATION,
    NO_BODY_STATUSES,
    CasedHeaders,
    GatewayHeaders,
    copy_end_to_end,
    http_date,
)
from kongish.http.interfaces import IProxiedRequest, IUpstreamClient, IUpstreamResponse
from kongish.http.paced import send_paced
from kongish.plugins.pipeline import PluginChain, PluginMap
from kongish.router.router import Match, Router
from kongish.runloop import error_pages
from kongish.runloop.context import (
    OUTBOUND_SLOT,
    DownstreamResponse,
    RequestContext,
    UpstreamRequest,
    UpstreamResponse,
    new_request_id,
)
from kongish.runloop.forwarded import Forwarded, client_side
from kongish.runloop.headers import upstream_headers
from kongish.runloop.relay import BodyRelay

if TYPE_CHECKING:
    from twisted.internet.address import IPv4Address, IPv6Address

    from kongish.node import Node

log = Logger()

#: nginx's status for a request whose client closed the connection before the answer.
_CLIENT_CLOSED = 499
#: Phases that see the upstream's response on its way out.
_RESPONSE_FILTERS = frozenset({"header_filter", "body_filter"})


@attrs.frozen
class FlowSetup:
    """What a flow serves with in place of its node's own, and who hears of its start and end.

    The proxy uses the node's router and plugins; a dry run (``kongish.runloop.dry_run``)
    brings its own and prepares each request's context before any phase runs.
    """

    router: Router | None = None
    plugin_map: PluginMap | None = None
    #: Called with the request's context before any phase runs.
    started: Callable[[RequestContext], None] | None = None
    #: Called once the flow is over: after its log phase, or once a crashed flow answered.
    ended: Callable[[RequestContext], None] | None = None


#: The node's own router and plugins.
NODE_SETUP = FlowSetup()


@attrs.define(eq=False)
class ProxyFlow:
    """One proxied request from start to log phase."""

    node: Node
    client: IUpstreamClient
    #: A DownstreamRequest, or twisted.web's Request where kongish is mounted in a site.
    request: IProxiedRequest
    #: Served by twisted.web's Request, whose headers twisted.web set before render.
    mounted: bool = False
    context: RequestContext = attrs.field(init=False)
    chain: PluginChain = attrs.field(init=False)
    #: When the upstream call started (the reactor's clock, in seconds).
    proxied_at: float | None = None
    match: Match | None = None
    _sending: Deferred | None = None
    #: A phase whose plugins wait (Lua in ngx.sleep, say); cancelled if the client leaves.
    _waiting: Deferred | None = None
    _client_gone: bool = False
    _forwarded: Forwarded | None = None
    _relay: BodyRelay | None = None
    setup: FlowSetup = attrs.field(default=NODE_SETUP, kw_only=True)

    def __attrs_post_init__(self) -> None:
        self.context = RequestContext(self.request, request_id=new_request_id(),
                                      real_ip=self.node.settings.real_ip, started_at=self._now(),
                                      output=self.node.output)
        self.context.timings.processing_start(self.context.started_at)
        if self.setup.started is not None:
            self.setup.started(self.context)
        access_log.record(self.request, request_id=self.context.request_id)

    @property
    def _routed(self) -> Match:
        """The route match; what asks for it runs after routing."""
        assert self.match is not None, "asked before routing"
        return self.match

    def _now(self) -> float:
        """The clock of the latency headers and of ngx.ctx's KONG_* fields."""
        return self.node.reactor.seconds()

    async def run(self) -> None:
        try:
            await self._run()
        finally:  # however the request ended, the output it held is free
            self.context.output.release(self.context.slots)
            self.context.plan_upstream = None  # it holds this flow: refcounting frees both
        self._ended()  # a flow that raised ends in crashed()

    def _ended(self) -> None:
        if self.setup.ended is not None:
            self.setup.ended(self.context)

    async def _run(self) -> None:
        node, request, context, setup = self.node, self.request, self.context, self.setup
        plugin_map = node.plugin_map if setup.plugin_map is None else setup.plugin_map
        router = node.router if setup.router is None else setup.router
        self.chain = plugin_map.for_request(None, None)
        timings = context.timings
        request.notifyFinish().addErrback(self._client_lost)
        try:
            timings.rewrite_start(self._now())
            if (pending := self._phase("rewrite", stop_on_exit=True)) is not None:
                await pending
            if context.response.exited:
                return await self._respond_from_plugins()
            timings.rewrite_end(self._now())
            timings.access_start(self._now())  # Kong routes at the start of access
            host = request.getHeader(b"host")
            scheme = _scheme(request)
            match = router.match(
                request.method.decode("latin-1"), mounted_target(request),
                host.decode("latin-1") if host is not None else None,
                _HeaderView(request), _local_port(request), scheme)
            if match is None:
                return await self._kong_error(404, "no Route matched with those values")
            context.route, context.service = match.route, match.service
            context.uri_captures = match.uri_captures
            self.match = match
            if _https_only(match.route) and self._client_side().proto != b"https":
                return await self._https_required(match.route)
            self.chain = plugin_map.for_request(
                match.route["id"], match.service["id"] if match.service else None)
            context.plan_upstream = self._upstream_request
            try:
                if (pending := self._phase("access", stop_on_exit=True)) is not None:
                    await pending
            except Exception:  # Kong catches these and answers with kong.response.error
                if self._client_gone:
                    raise
                self._plugin_error(Failure(), renderer="A")
                timings.access_end(self._now(), proxying=False)
                return await self._respond_from_plugins()
            if context.response.exited or match.service is None:
                timings.access_end(self._now(), proxying=False)
            if context.response.exited:
                return await self._respond_from_plugins()
            if match.service is None:
                return await self._kong_error(503, "no Service found with those values")
            await self._proxy(match.service)
        except Exception:
            if self._client_gone:  # what ran for it was cancelled: nginx's 499, and the log phase
                context.response.status = _CLIENT_CLOSED
                await self._finish(complete=False)
                return
            if self.request.startedWriting:
                raise  # too late for an error page: crashed() closes the connection
            failed_in = context.phase
            self._plugin_error(Failure())
            # the filters that just failed on the upstream's response do not run on the 500
            await self._respond_from_plugins(filtered=failed_in not in _RESPONSE_FILTERS)

    # phases

    def _phase(self, phase: str, stop_on_exit: bool = False) -> Deferred | None:
        """Run one phase; a Deferred only when a plugin waits (callers await it then)."""
        waiting = self.chain.run(phase, self.context, stop_on_exit=stop_on_exit)
        if waiting is not None and phase != "log":  # the log phase runs after the client left
            self._waiting = waiting
            waiting.addBoth(self._phase_done)
        return waiting

    def _phase_done(self, result: object) -> object:
        self._waiting = None
        return result

    def _refuse_status(self, status: int) -> None:
        """A plugin's answer whose status is not a final HTTP status (1xx, past 599): Kong's 500,
        never ``100 Continue`` or a 301-digit status line."""
        log.error("plugin answered with status {status}, not a final HTTP status; answering 500 "
                  "(request {request_id})", status=str(status)[:20], request_id=self.context.request_id)
        self._replace_with_500("B")

    def _plugin_error(self, failure: Failure, renderer: str = "B") -> None:
        """Kong's 500 instead of whatever the response was; nginx-level (renderer B) unless
        Kong itself caught the error (an access handler's)."""
        log.failure("unexpected error in phase {phase} (request {request_id}): {error}", failure,
                    phase=self.context.phase, request_id=self.context.request_id, error=error_text(failure))
        self._replace_with_500(renderer)

    def _replace_with_500(self, renderer: str) -> None:
        """Kong's 500 in place of whatever the response was."""
        response = self.context.response
        response.body.clear()
        response.headers = GatewayHeaders()
        response.exited = False
        self._set_kong_error(500, error_pages.default_message(500), renderer=renderer)
        response.source = "error"

    # the client's side

    def _client_side(self) -> Forwarded:
        """What the client asked for, as a trusted proxy in front says or as kongish saw it."""
        if self._forwarded is None:
            self._forwarded = client_side(
                self.request, trusted=self.context.peer_ip in self.node.settings.real_ip.trusted,
                raw_target=mounted_target(self.request), stripped_prefix=self._routed.stripped_prefix)
        return self._forwarded

    async def _https_required(self, route: dict[str, Any]) -> None:
        """An HTTPS-only route reached over HTTP: Kong's 426, or its redirect."""
        status = route.get("https_redirect_status_code") or 426
        if status == 426:
            return await self._kong_error(426, "Please use HTTPS protocol", {
                "Connection": "Upgrade", "Upgrade": "TLS/1.2, HTTP/1.1"})
        response = self.context.response
        response.status, response.source = status, "exit"
        response.headers.setRawHeaders(
            LOCATION, [b"https://" + self._client_side().host + self.request.uri])
        await self._respond_from_plugins()

    # upstream

    def _upstream_request(self) -> UpstreamRequest:
        request, match = self.request, self._routed
        service = match.service or {}
        return UpstreamRequest(
            method=request.method.decode("latin-1"), path=match.upstream_path, query=match.upstream_query,
            scheme="https" if service.get("protocol") == "https" else "http",
            host=service.get("host") or "", port=service.get("port") or 80,
            build_headers=self._upstream_headers)

    def _upstream_headers(self) -> Headers:
        """Built on first use: a request a plugin ends in access never pays for them."""
        request = self.request
        return upstream_headers(
            request.requestHeaders, host_header=self._routed.upstream_host,
            peer_ip=self.context.peer_ip, client_ip=self.context.client_ip, forwarded=self._client_side(),
            request_id=(self.context.request_id
                        if "x-kong-request-id" in self.node.settings.headers_upstream else ""),
            http_version=request.clientproto.decode("latin-1").partition("/")[2])

    async def _proxy(self, service: dict[str, Any]) -> None:
        context, request = self.context, self.request
        self.proxied_at = self._now()
        upstream = context.upstream
        assert upstream is not None, "planned before access"
        body: bytes | BinaryIO = upstream.body if upstream.body is not None else cast(BinaryIO,
                                                                                        request.content)
        settings = settings_for(service)
        self._sending = self.client.send(upstream, settings, body)
        try:
            response = await self._sending
        except UpstreamFailure as failure:
            if failure.proxied:
                self._reached_upstream()
            await self._kong_error(failure.status, failure.message,
                                   renderer=failure.renderer, proxied=failure.proxied)
            return
        except CancelledError:
            self._reached_upstream()
            context.response.status = _CLIENT_CLOSED
            await self._finish(complete=False)
            return
        finally:
            self._sending = None
        self._reached_upstream()
        try:
            filtering = await self._take_response(response)
        except Exception:
            response.discard()
            raise
        self._start_response()
        if not filtering:  # Kong's body_filter runs (with no plugin) as the body passes
            context.timings.body_filter_start(self._now())
        self._relay = BodyRelay(request, self._filter_chunk if filtering else None,
                                settings.read_timeout, self.node.reactor, context.request_id,
                                self.node.settings.send_timeout)
        response.deliver_body(self._relay)
        self._relay.watch()
        complete = await self._relay.done
        if self._relay.unsent_failure is not None:  # nothing was sent: Kong's 500 can still go
            self._plugin_error(self._relay.unsent_failure)
            await self._respond_from_plugins(filtered=False)
            return
        if complete and not filtering:
            context.timings.body_filter_end(self._now())
        await self._finish(complete)

    def _reached_upstream(self) -> None:
        """The upstream call got as far as a connection attempt: Kong's access phase ended
        and its balancer ran, both when the call started (kongish has no balancer phase)."""
        timings, started = self.context.timings, self.proxied_at
        if started is None:
            started = self.proxied_at = self._now()
        timings.access_end(started, proxying=True)
        timings.balancer(started)

    async def _take_response(self, response: IUpstreamResponse) -> bool:
        """Build the downstream head from the upstream's and run header_filter.

        Returns whether the body goes through body_filter.
        """
        context, request = self.context, self.request
        context.upstream_response = UpstreamResponse(response.status, response.headers)
        out = context.response
        out.status, out.source = response.status, "service"
        out.headers = copy_end_to_end(response.headers)  # the client keeps the framing headers out
        self._proxied(response.status)
        await self._header_filter()
        if not _is_final(out.status or 0):
            raise ValueError(f"header_filter set the status to {out.status}, not a final HTTP status")
        filtering = out.replacement_body is not None or self.chain.handles("body_filter")
        if filtering:
            out.headers.removeHeader(b"content-length")
        elif response.content_length is not None and (
                request.method == b"HEAD" or response.status not in NO_BODY_STATUSES):
            # a HEAD response's is the entity's length, passed on as nginx does
            out.headers.setRawHeaders(CONTENT_LENGTH, [str(response.content_length).encode()])
        return filtering

    async def _header_filter(self) -> None:
        timings = self.context.timings
        timings.header_filter_start(self._now())
        if (pending := self._phase("header_filter")) is not None:
            await pending
        timings.header_filter_end(self._now())

    def _client_lost(self, reason: Failure) -> None:
        """The client closed its connection: stop the work done on its behalf."""
        self._client_gone = True
        if self._waiting is not None:
            self._waiting.cancel()
        elif self._sending is not None:
            self._sending.cancel()
        elif self._relay is not None:
            self._relay.client_lost()

    # answers kongish or a plugin produced

    def _set_kong_error(self, status: int, message: str, headers: dict[str, str] | None = None,
                        renderer: str = "A") -> None:
        request, response = self.request, self.context.response
        accepted = request.requestHeaders.getRawHeaders(b"accept")  # Kong joins repeated lines
        accept = None if accepted is None else b",".join(accepted).decode("latin-1")
        if renderer == "A":
            media = error_pages.choose_type(accept)
        else:
            media = error_pages.choose_type(accept, _text(request.getHeader(b"content-type")),
                                            self.node.settings.error_default_type)
        response.status = status
        response.body[:] = [error_pages.render(media, message, self.context.request_id)]
        response.headers.setRawHeaders(CONTENT_TYPE, [f"{media}; charset=utf-8".encode()])
        for name, value in (headers or {}).items():
            response.headers.setRawHeaders(name.encode(), [value.encode()])

    async def _kong_error(self, status: int, message: str, headers: dict[str, str] | None = None,
                          renderer: str = "A", proxied: bool = False) -> None:
        self._set_kong_error(status, message, headers, renderer)
        self.context.response.source = "error"
        if proxied:
            self._proxied(status)
        await self._respond_from_plugins()

    def _proxied(self, upstream_status: int) -> None:
        """The upstream answered, or calling it failed: Kong's proxied answer from here on."""
        self.node.kong_headers.add_upstream_status(self.context.response.headers, upstream_status)

    async def _respond_from_plugins(self, filtered: bool = True) -> None:
        """Send a response that kongish or a plugin built, through the response phases.

        ``filtered`` is False when header_filter or body_filter already failed on
        this request: the error page then goes out as kongish made it.
        """
        response = self.context.response
        if response.status is None:
            response.status = 200
        if not _is_final(response.status):
            self._refuse_status(response.status)
        if not response.body and response.status >= 400:
            self._set_kong_error(response.status, error_pages.default_message(response.status),
                                 renderer="B")
        headers = response.headers
        if response.body and not headers.hasHeader(b"content-type"):
            headers.put(CONTENT_TYPE, b"text/plain; charset=utf-8")
        try:
            if filtered:
                await self._header_filter()
                body = self._filter_chunk(_joined(response.body), eof=True)
                if not isinstance(body, bytes):  # a Deferred
                    body = await body
            else:
                body = _joined(response.body)
        except Exception:
            self._plugin_error(Failure())
            return await self._respond_from_plugins(filtered=False)
        headers.put(CONTENT_LENGTH, b"%d" % len(body))
        response.body.clear()  # the body goes out from here: its chunks are not kept twice
        self._start_response()
        if body and not self.request._disconnected and not self.request.finished:
            # as the client takes it: a client that does not read holds one buffer of it, not all
            paced = send_paced(self.request, body, self.node.reactor, self.node.settings.send_timeout)
            if paced is not None:
                await paced
        self.context.output.release(self.context.slots)
        await self._finish()

    def _filter_chunk(self, chunk: bytes, eof: bool) -> bytes | Deferred[bytes]:
        """Run body_filter on one chunk: the chunk as the plugins left it, now or later."""
        context = self.context
        context.timings.body_filter_start(self._now())
        if context.response.replacement_body is not None:
            chunk = context.response.replacement_body if eof else b""
        elif not self.chain.handles("body_filter"):
            return self._body_filtered(chunk, eof)
        context.body_chunk, context.body_eof = chunk, eof
        pending = self.chain.run("body_filter", context)
        if pending is None:
            return self._body_filtered(context.body_chunk, eof)
        return pending.addCallback(lambda _: self._body_filtered(context.body_chunk, eof))

    def _body_filtered(self, chunk: bytes, eof: bool) -> bytes:
        if eof:
            self.context.timings.body_filter_end(self._now())
        return chunk

    def _start_response(self) -> None:
        request, context = self.request, self.context
        response, timings = context.response, context.timings
        timings.header_filter_start(self._now())  # already, unless header_filter was skipped
        # Kong's latency headers are three of its ngx.ctx fields
        if not timings.proxied:
            self.node.kong_headers.add_own(response.headers, timings.response_latency(),
                                           context.request_id.encode())
        else:
            upstream = context.upstream_response
            self.node.kong_headers.add_proxied(
                response.headers, *timings.proxy_latencies(),
                upstream.headers.getRawHeaders(b"via") if upstream is not None else None,
                context.request_id.encode())
        # nginx writes Content-Type itself, from the type it keeps apart from the header list
        response.headers.respell(CONTENT_TYPE)
        request.setResponseCode(response.status or 200, _reason(response.status or 200))
        if self.mounted:
            request.responseHeaders = _onto_twisted_web(response.headers, request.responseHeaders)
        else:  # kongish's own server sends these headers, framed and dated as it sends them
            request.responseHeaders = response.headers

    def _write(self, data: bytes) -> None:
        if data and not self.request._disconnected and not self.request.finished:
            self.request.write(data)

    async def _finish(self, complete: bool = True) -> None:
        """End the response (unless it was cut off) and run the log phase."""
        if self.node.settings.real_ip.trusted.networks:  # nginx logs the client trusted proxies report
            access_log.record(self.request, remote_addr=self.context.client_ip)
        outbound = self.context.slots.get(OUTBOUND_SLOT)
        if outbound is not None and outbound.calls:
            access_log.record(self.request, outbound=(outbound.calls, outbound.seconds))
        if complete and not self.request._disconnected and not self.request.finished:
            self.request.finish()
        self.context.timings.log_start(self._now())
        try:
            if (pending := self._phase("log")) is not None:
                await pending
        except Exception:
            failure = Failure()
            log.failure("unexpected error in phase log (request {request_id}): {error}", failure,
                        request_id=self.context.request_id, error=error_text(failure))

    def crashed(self, failure: Failure) -> None:
        """Last resort when the flow itself failed: Kong's 500 if nothing was sent, else close."""
        log.failure("proxy request {request_id} failed: {error}", failure,
                    request_id=self.context.request_id, error=error_text(failure))
        try:
            self._answer_crash()
        finally:
            self._ended()

    def _answer_crash(self) -> None:
        request = self.request
        if request._disconnected or request.finished:
            return
        if request.startedWriting:
            request.loseConnection()
            return
        self.context.response = DownstreamResponse(source="error")
        self._set_kong_error(500, error_pages.default_message(500), renderer="B")  # nginx-level
        body = self.context.response.body[0]
        self.context.response.headers.put(CONTENT_LENGTH, b"%d" % len(body))
        self._start_response()
        request.write(body)
        request.finish()


def _joined(chunks: list[bytes]) -> bytes:
    """One body from its chunks; a single one (``kong.response.exit``) is not copied."""
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _onto_twisted_web(headers: Headers, preset: Headers) -> CasedHeaders:
    """The response's headers onto those twisted.web set on its Request: its Connection
    stays, its Server goes unless kongish sends one, and its Date (of the request's
    start) is renewed, as nginx dates what it sends. twisted.web writes the names of
    the ``CasedHeaders`` returned as they were given."""
    sent = CasedHeaders()
    for name, values in preset.getAllRawHeaders():
        sent.setRawHeaders(name, values)
    if not headers.hasHeader(b"server"):
        sent.removeHeader(b"server")
    if not headers.hasHeader(b"date"):
        sent.setRawHeaders(b"date", [http_date()])
    for name, values in headers.getAllRawHeaders():
        sent.setRawHeaders(name, values)
    return sent


def _local_port(request: IProxiedRequest) -> int:
    """The port the request arrived on: the proxy listens on TCP."""
    return cast("IPv4Address | IPv6Address", request.getHost()).port


def mounted_target(request: IProxiedRequest) -> bytes:
    """The request target below the point where this resource is mounted."""
    if not request.prepath:
        return request.uri
    rest = request.uri[len(b"/" + b"/".join(request.prepath)):]
    return rest if rest.startswith(b"/") else b"/" + rest


class _HeaderView(Mapping[str, list[str]]):
    """Request headers as the router reads them, decoded only if a route looks at them."""

    __slots__ = ("_request", "_decoded")

    def __init__(self, request: IProxiedRequest) -> None:
        self._request = request
        self._decoded: dict[str, list[str]] | None = None

    def _headers(self) -> dict[str, list[str]]:
        if self._decoded is None:
            self._decoded = {name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
                             for name, values in self._request.requestHeaders.getAllRawHeaders()}
        return self._decoded

    def __getitem__(self, name: str) -> list[str]:
        return self._headers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())


def _is_final(status: int) -> bool:
    """Whether ``status`` may end a response: 200-599 (a 1xx is never final)."""
    return 200 <= status <= 599


def _scheme(request: IProxiedRequest) -> str:
    return "https" if request.isSecure() else "http"


def _https_only(route: dict[str, Any]) -> bool:
    protocols = route.get("protocols") or ()
    return "https" in protocols and "http" not in protocols


_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown Status")


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
