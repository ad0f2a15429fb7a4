"""``LuaHarness``: serverless code run on kongish's real Lua engine, one phase at a time."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.web.http_headers import Headers

from kongish.http.interfaces import IProxiedRequest, IUpstreamClient
from kongish.http.memory import MemoryConnection
from kongish.http.server import ProxyServerFactory
from kongish.lua.engine import LuaEngine
from kongish.lua.settings import LuaSettings
from kongish.runloop.context import RequestContext, UpstreamRequest, new_request_id
from kongish.runloop.error_pages import KongRefusals
from kongish.settings import Settings

#: What ``LuaHarness.request`` parses when given nothing.
DEFAULT_REQUEST = b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


@attrs.define(eq=False)
class _Captured:
    """Stands where the proxy's resource would: keeps each request the listener parsed."""

    requests: list[IProxiedRequest] = attrs.Factory(list)

    def render(self, request: IProxiedRequest) -> None:
        self.requests.append(request)


@attrs.define(eq=False)
class LuaHarness:
    """Lua code run as the serverless plugins run it (kongish's LuaJIT engine with its
    sandbox, its limits and the PDK) against a request parsed by kongish's own listener,
    with no socket and no node; ``ngx.sleep`` and timeouts run on ``reactor``::

        lua = LuaHarness.start({"untrusted_lua_sandbox_requires": "cjson"})
        context = lua.request(b"GET /test?name=Kong HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
        lua.run(["ngx.say('Hello ' .. ngx.req.get_uri_args().name) ngx.exit(200)"], context)
        assert context.response.status == 200 and context.response.body == [b"Hello Kong\\n"]

    ``context.upstream`` is what would be sent upstream (method, path, query, headers
    with ``Host: upstream.test``), for code that changes it.
    """

    engine: LuaEngine
    reactor: MemoryReactorClock
    settings: Settings

    @classmethod
    def start(cls, settings: Mapping[str, str] | None = None, *,
              outbound: IUpstreamClient | None = None) -> LuaHarness:
        """An engine built from kong.conf ``settings`` (``untrusted_lua``, ``lua_*`` limits...);
        ``resty.http`` calls go to ``outbound`` (a ``StubUpstream``, say), or fail without it."""
        reactor = MemoryReactorClock()
        parsed = Settings.load(environ={}, overrides={"database": "off", **(settings or {})})
        engine = LuaEngine(LuaSettings.from_settings(parsed), reactor, node_id="harness-node",
                           outbound=outbound)
        return cls(engine, reactor, parsed)

    def request(self, raw: bytes = DEFAULT_REQUEST, *, phase: str = "access") -> RequestContext:
        """The context of the request ``raw`` (a whole HTTP/1.1 request), in ``phase``."""
        captured = _Captured()
        factory = ProxyServerFactory(captured, KongRefusals(), b"kongish", reactor=self.reactor)
        MemoryConnection.open(factory).send(raw)
        if not captured.requests:
            raise ValueError(f"not a whole HTTP/1.1 request: {raw!r}")
        request = captured.requests[0]
        context = RequestContext(request, phase=phase, real_ip=self.settings.real_ip,
                                 request_id=new_request_id(), started_at=self.reactor.seconds())
        path, mark, query = request.uri.partition(b"?")
        context.upstream = UpstreamRequest(
            method=request.method.decode("latin-1"), path=path.decode("latin-1"),
            query=query.decode("latin-1") if mark else None, host="upstream.test",
            headers=Headers({b"Host": [b"upstream.test"]}))
        return context

    def run(self, sources: Sequence[str], context: RequestContext, *, plugin: str = "pre-function",
            plugin_id: str = "harness-plugin") -> Deferred[None]:
        """Run one phase's functions (``context.phase``) as plugin ``plugin_id`` runs them.

        Fires when they have finished (``ngx.exit`` included); fails with the engine's
        ``LuaError``, or ``LuaLimitError`` for code over a limit, as the proxy would see it.
        """
        functions = self.engine.load(sources)
        result: Deferred[Any] = maybeDeferred(self.engine.run, functions, context, plugin, plugin_id)
        return result
