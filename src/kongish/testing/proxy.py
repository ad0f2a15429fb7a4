"""``ProxyHarness``: a whole node serving one in-memory client connection."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import attrs
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from kongish.http.memory import MemoryConnection
from kongish.http.stub import StubHandler, StubUpstream
from kongish.plugins.interface import IPlugin

_T = TypeVar("_T")


@attrs.define(eq=False)
class ProxyHarness:
    """A DB-less node serving one in-memory client connection: the whole proxy flow
    (kongish's HTTP/1.1 server, routing, plugins, Kong's answers) with no socket, on a
    ``MemoryReactorClock``, calling a ``StubUpstream``::

        harness = ProxyHarness.start({"_format_version": "3.0", "services": [...]}, handler,
                                     plugins=[MyPlugin()])
        answer = harness.get(b"/path", b"X-Client: c1")   # the raw bytes sent back so far
        harness.reactor.advance(2)                         # timeouts run on its clock
    """

    node: Any
    reactor: MemoryReactorClock
    upstream: StubUpstream
    transport: StringTransport
    connection: Any
    #: The temporary prefix ``start`` made (none was given), which ``close`` removes.
    made_prefix: str | None = None

    @classmethod
    def start(cls, config: Mapping[str, Any], handler: StubHandler, *, plugins: Sequence[IPlugin] = (),
              settings: Mapping[str, str] | None = None, prefix: str | None = None) -> ProxyHarness:
        """Load ``config`` (a declarative document) into a node that has ``plugins`` besides
        the bundled ones enabled; ``settings`` are kong.conf values; ``prefix`` holds the
        node id (a fresh temporary directory when not given)."""
        from kongish.http.server import ProxyServerFactory
        from kongish.runloop.error_pages import KongRefusals
        from kongish.runloop.headers import SERVER_TOKEN
        from kongish.service import build_node, proxy_resource  # the whole node: loaded only here
        from kongish.settings import Settings

        reactor = MemoryReactorClock()
        made_prefix = None if prefix else tempfile.mkdtemp(prefix="kongish-harness-")
        values = {"database": "off", "declarative_config_string": json.dumps(config),
                  "prefix": prefix or made_prefix,
                  "plugins": ",".join(["bundled", *(plugin.name for plugin in plugins)]),
                  **(settings or {})}
        building = ensureDeferred(build_node(Settings.load(environ={}, overrides=values), reactor,
                                             extra_plugins=plugins))
        try:
            node = _result(building)
        except BaseException:
            if made_prefix is not None:
                shutil.rmtree(made_prefix, ignore_errors=True)
            raise
        upstream = StubUpstream(handler, reactor)
        refusals = KongRefusals(node.settings.error_default_type)
        factory = ProxyServerFactory(proxy_resource(node, upstream), refusals, SERVER_TOKEN, reactor=reactor)
        memory = MemoryConnection.open(factory)
        return cls(node, reactor, upstream, memory.transport, memory.protocol, made_prefix)

    def send(self, data: bytes) -> bytes:
        """Feed raw client bytes; return everything sent back so far."""
        self.connection.dataReceived(data)
        return self.transport.value()

    def get(self, path: bytes, *headers: bytes, host: bytes = b"gateway.test") -> bytes:
        """A ``GET`` with ``headers`` (``b"Name: value"``); everything sent back so far."""
        return self.send(b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
                         + b"".join(header + b"\r\n" for header in headers) + b"\r\n")

    def close(self) -> Deferred[None]:
        """Release what the node holds (its plugins' HTTP client) and the prefix ``start`` made."""
        if self.made_prefix is not None:
            shutil.rmtree(self.made_prefix, ignore_errors=True)
            self.made_prefix = None
        host = self.node.plugin_host
        return host.close() if host is not None else succeed(None)


def _result(deferred: Deferred[_T]) -> _T:
    """A Deferred that has fired, as its result (or its failure, raised)."""
    outcome: list[Any] = []
    deferred.addBoth(outcome.append)
    if not outcome:
        raise RuntimeError("the node did not build without waiting")
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return cast(_T, outcome[0])
