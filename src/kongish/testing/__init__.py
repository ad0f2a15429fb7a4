"""Tools for testing kongish and plugins written for it, as ``treq.testing`` is for treq.

``SchemaOnlyPlugin`` validates like a real plugin and runs nothing: what Admin API,
schema and storage tests need of a plugin, without a Lua engine.

``StubUpstream`` is an ``IUpstreamClient`` that answers from a Python function,
in memory: a ``ProxyResource`` built with one runs the whole proxy flow without
a socket. Its timeouts run on the clock it is given (a ``Clock`` in tests)::

    def handler(request: StubRequest) -> StubResponse:
        return StubResponse(200, [("Content-Type", "text/plain")], [b"hello ", b"world"])

    upstream = StubUpstream(handler, clock)

``ProxyHarness`` puts both together: a node with a declarative configuration and the
plugins under test, serving one in-memory client connection through kongish's own
HTTP/1.1 server, on a ``MemoryReactorClock``.

``LuaHarness`` runs serverless code on kongish's real Lua engine (sandbox, limits, PDK)
against one parsed request, one phase at a time, and leaves its effects in the
request's ``RequestContext`` for the test to read.
"""

from kongish.testing.lua import LuaHarness
from kongish.testing.plugins import SchemaOnlyPlugin, serverless_schema_plugin
from kongish.testing.proxy import ProxyHarness
from kongish.testing.upstream import BODY_ENDS, StubHandler, StubRequest, StubResponse, StubUpstream

__all__ = ["BODY_ENDS", "LuaHarness", "ProxyHarness", "SchemaOnlyPlugin", "StubHandler", "StubRequest",
           "StubResponse", "StubUpstream", "serverless_schema_plugin"]
