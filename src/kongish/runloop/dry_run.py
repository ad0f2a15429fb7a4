"""A dry run: one sample request through the whole proxy flow, for one plugin entity, in memory.

The request goes through kongish's own HTTP server on an in-memory connection
(``kongish.http.memory``), the runloop and every phase of the plugin, exactly as a
proxied request would; the upstream call is answered by a sample response
(``kongish.http.stub.StubUpstream``) and never leaves the process. The plugin is
configured afresh for the run (its own compiled functions and upvalues, closed after),
on the node's own Lua engine with its normal limits. Outbound calls from Lua are refused
unless allowed, and timers always are (they would run after the dry run, unseen).

What comes back: the response the client would get, the request that would have gone
upstream (None if the plugin ended the request first), the lines the functions logged,
and what each function's run cost (``kongish.lua.cost.FunctionCost``).
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from kongish.http.memory import MemoryConnection, WireResponse, read_response
from kongish.http.server import ProxyServerFactory
from kongish.http.stub import StubRequest, StubResponse, StubUpstream
from kongish.lua.cost import OUTBOUND_SLOT, FunctionCost, OutboundUse
from kongish.lua.timers import TIMERS_REFUSED_SLOT
from kongish.plugins.interface import IPlugin
from kongish.plugins.pipeline import ConfiguredPlugin, PluginMap
from kongish.router import Router
from kongish.runloop.context import DRY_RUN_SLOT, RequestContext
from kongish.runloop.error_pages import KongRefusals
from kongish.runloop.flow import FlowSetup
from kongish.runloop.headers import SERVER_TOKEN
from kongish.runloop.resource import ProxyResource

if TYPE_CHECKING:
    from kongish.node import Node

#: What an outbound call gets in a dry run not allowed to call out.
OUTBOUND_REFUSED = "outbound calls are refused in a dry run (set allow_outbound)"
#: What ``ngx.timer.at`` gets in a dry run.
TIMERS_REFUSED = "timers do not run in a dry run"
#: How long a dry run may take (``ngx.sleep``, outbound calls) before its client gives up.
DRY_RUN_TIMEOUT = 60.0
#: nginx's names of ``ngx.log`` levels, as its error log writes them.
LEVEL_NAMES = ("stderr", "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
#: The service a plugin without one is tried against: its host is never called.
_DRY_RUN_HOST = "dry-run.invalid"


@attrs.frozen
class SampleRequest:
    """The client's request: ``target`` is the request target as sent (path and query)."""

    method: str = "GET"
    target: bytes = b"/"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""

    def wire(self) -> bytes:
        """The request as a client sends it: HTTP/1.1, its body framed by Content-Length."""
        lines = [b"%s %s HTTP/1.1" % (self.method.encode("ascii"), self.target)]
        lines += [name + b": " + value for name, value in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(self.body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


@attrs.frozen
class LogLine:
    level: str
    plugin: str
    message: str


@attrs.define
class DryRunResult:
    #: The response the client got; None if it got none whole (the dry run timed out).
    response: WireResponse | None
    #: What would have been sent upstream; None if the request ended before.
    upstream_request: StubRequest | None
    log: list[LogLine]
    functions: list[FunctionCost]
    timed_out: bool = False


@attrs.define(eq=False)
class _Watch:
    """What a dry run sees of its request: its context, the costs and the log lines."""

    allow_outbound: bool
    context: RequestContext | None = None
    costs: list[FunctionCost] = attrs.Factory(list)
    lines: list[LogLine] = attrs.Factory(list)
    done: Deferred[None] = attrs.Factory(Deferred)

    def started(self, context: RequestContext) -> None:
        self.context = context
        context.slots[DRY_RUN_SLOT] = True
        context.slots[TIMERS_REFUSED_SLOT] = TIMERS_REFUSED
        if not self.allow_outbound:
            context.slots[OUTBOUND_SLOT] = OutboundUse(refused=OUTBOUND_REFUSED)

    def ended(self, context: RequestContext) -> None:
        if not self.done.called:
            self.done.callback(None)

    def give_up(self, connection: MemoryConnection) -> None:
        """Past the dry run's time: its client leaves (its Lua ends at its next yield, as for a
        client that leaves), and the answer goes out with what was seen so far."""
        connection.close()
        if not self.done.called:
            self.done.callback(None)

    def cost(self, context: RequestContext | None, cost: FunctionCost) -> None:
        if context is not None and context is self.context:
            self.costs.append(cost)

    def log_event(self, event: LogEvent) -> None:
        if self.context is None or "ngx_level" not in event:
            return
        if event.get("request_id") == self.context.request_id:
            level = event["ngx_level"]
            self.lines.append(LogLine(LEVEL_NAMES[level] if 0 <= level < len(LEVEL_NAMES) else str(level),
                                      event.get("plugin", ""), event.get("text", "")))


def default_target(node: Node, entity: dict[str, Any]) -> tuple[str, str | None]:
    """A path the plugin's route matches (its first plain path, else ``/``), and its first
    plain host (None if it has none): what a dry run's request uses unless told."""
    route = _route_of(node, entity)
    if route is None:
        return "/", None
    paths = [path for path in route.get("paths") or () if not path.startswith("~")]
    hosts = [host for host in route.get("hosts") or () if "*" not in host]
    return (paths[0] if paths else "/"), (hosts[0] if hosts else None)


def _route_of(node: Node, entity: dict[str, Any]) -> dict[str, Any] | None:
    reference = entity.get("route")
    return node.database.tables["routes"].get(reference["id"]) if reference else None


def _scope(node: Node, entity: dict[str, Any]) -> Router:
    """The router a dry run routes with: the plugin's route (and its service) if it has one;
    else a route matching every request, to the plugin's service or to one never called."""
    tables = node.database.tables
    route = _route_of(node, entity)
    if route is not None:
        return Router.build([route], tables["services"])
    reference = entity.get("service")
    service = tables["services"].get(reference["id"]) if reference else None
    if service is None:
        service = {"id": str(uuid.uuid4()), "name": "dry-run", "protocol": "http", "host": _DRY_RUN_HOST,
                   "port": 80, "path": None, "retries": 0, "connect_timeout": 60000, "write_timeout": 60000,
                   "read_timeout": 60000, "enabled": True}
    route = {"id": str(uuid.uuid4()), "name": "dry-run", "protocols": ["http", "https"], "methods": None,
             "hosts": None, "paths": ["/"], "headers": None, "snis": None, "sources": None,
             "destinations": None, "https_redirect_status_code": 426, "regex_priority": 0,
             "strip_path": False, "preserve_host": False, "request_buffering": True,
             "response_buffering": True, "path_handling": "v0", "service": {"id": service["id"]}}
    return Router.build([route], {service["id"]: service})


async def dry_run(node: Node, plugin: IPlugin, entity: dict[str, Any], request: SampleRequest,
                  upstream: StubResponse, *, allow_outbound: bool = False,
                  timeout: float = DRY_RUN_TIMEOUT) -> DryRunResult:
    """Serve ``request`` with ``entity`` (a complete plugin entity) as the only plugin."""
    handlers = plugin.configure(entity)
    watch = _Watch(allow_outbound)
    stub = StubUpstream(lambda sent: upstream, node.reactor)
    setup = FlowSetup(_scope(node, entity), PluginMap([ConfiguredPlugin(plugin, entity, handlers)]),
                      started=watch.started, ended=watch.ended)
    factory = ProxyServerFactory(
        ProxyResource(node, stub, setup=setup), KongRefusals(node.settings.error_default_type),
        SERVER_TOKEN, reactor=node.reactor, max_body_size=node.settings.proxy_max_body_size)
    engine = node.lua_engine
    if engine is not None:
        engine.observers.append(watch.cost)
    log_observer = cast(ILogObserver, watch.log_event)  # a callable of events, as twisted.logger's are
    globalLogPublisher.addObserver(log_observer)
    connection = MemoryConnection.open(factory)
    timer = None
    try:
        connection.send(request.wire())
        if watch.context is None:  # refused before it reached the flow (a 400): answered already
            watch.done.callback(None)
        elif not watch.done.called:
            timer = node.reactor.callLater(timeout, watch.give_up, connection)
            await watch.done
    finally:
        if timer is not None and timer.active():
            timer.cancel()
        timed_out = connection.closed
        connection.close()
        globalLogPublisher.removeObserver(log_observer)
        if engine is not None:
            engine.observers.remove(watch.cost)
        handlers.close()
    response = read_response(connection.transport.value(), head=request.method == "HEAD")
    return DryRunResult(None if timed_out else response, stub.requests[0] if stub.requests else None,
                        watch.lines, watch.costs, timed_out)
