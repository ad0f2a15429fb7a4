"""End-to-end wiring for tests: a real upstream server and a real kongish node on loopback."""
from __future__ import annotations

import gzip
import json
import re
import socket
from typing import Any, cast

import attrs
import treq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IPushProducer, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from kongish.node import Node
from kongish.service import KongishService
from kongish.settings import Settings

LOOPBACK = "tcp:0:interface=127.0.0.1"
#: Test clients open a connection per request, so no socket outlives a test.
POOL = HTTPConnectionPool(reactor, persistent=False)


#: 64 KiB of every byte value, the unit of the large bodies the upstream sends.
BLOCK = bytes(range(256)) * 256


class EchoUpstream(Resource):
    """Answers every request with a JSON description of what it received.

    The first path segment picks another behaviour:

    - ``/status/<code>``: that status; ``/delay/<seconds>``: waits first;
    - ``/stream/<n>``: n chunks (chunked transfer encoding);
    - ``/headers``: repeated headers, cookies and its own ``Server``;
    - ``/gzip``: a gzip-encoded body; ``/mirror``: the request body back, as is;
    - ``/bytes/<n>``: n bytes of ``BLOCK`` with a Content-Length;
    - ``/drip/<n>/<seconds>``: n chunks, one every ``seconds``;
    - ``/stall/<n>``: n bytes, then nothing, never finishing;
    - ``/produce/<n>``: n bytes of ``BLOCK`` written only while the connection
      takes them (``production`` records how far it got and whether it is paused).

    ``lost`` collects the paths of requests whose connection closed before they finished.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.lost: list[str] = []
        self.production: dict[str, Any] = {}

    def render(self, request):
        body = request.content.read()
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "headers": {k.decode().lower(): [v.decode("latin-1") for v in vs]
                        for k, vs in request.requestHeaders.getAllRawHeaders()},
            "body": body.decode("latin-1"),
        }
        self.received.append(seen)
        path = request.path.decode()
        request.notifyFinish().addErrback(lambda _: self.lost.append(path))
        parts = path.strip("/").split("/")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-upstream", b"echo")
        if parts[0] == "status" and len(parts) > 1:
            request.setResponseCode(int(parts[1]))
        behaviour = getattr(self, "path_" + parts[0], None)
        if behaviour is not None:
            return behaviour(request, body, *parts[1:])
        return json.dumps(seen).encode()

    def path_delay(self, request, body, seconds):
        later = reactor.callLater(float(seconds), self._finish, request,
                                  json.dumps(self.received[-1]).encode())
        request.notifyFinish().addErrback(lambda _: later.cancel())
        return NOT_DONE_YET

    def path_stream(self, request, body, count):
        for index in range(int(count)):
            request.write(f"chunk{index};".encode())
        request.finish()
        return NOT_DONE_YET

    def path_headers(self, request, body):
        request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=1; Path=/", b"b=2; HttpOnly"])
        request.responseHeaders.setRawHeaders(b"x-multi", [b"one", b"two"])
        request.responseHeaders.setRawHeaders(b"server", [b"echo-server/1.0"])
        request.responseHeaders.setRawHeaders(b"via", [b"1.1 upstream-cache"])
        request.responseHeaders.setRawHeaders(b"keep-alive", [b"timeout=5"])
        request.responseHeaders.setRawHeaders(b"date", [b"Wed, 01 Jan 2025 00:00:00 GMT"])
        return b"headers"

    def path_gzip(self, request, body):
        request.setHeader(b"content-encoding", b"gzip")
        return gzip.compress(b"compressed payload " * 100, mtime=0)

    def path_mirror(self, request, body):
        request.setHeader(b"content-type", b"application/octet-stream")
        return body

    def path_bytes(self, request, body, size):
        request.setHeader(b"content-type", b"application/octet-stream")
        return blocks(int(size))

    def path_drip(self, request, body, count, seconds):
        def drip(left: int) -> None:
            if request._disconnected:
                return
            if not left:
                request.finish()
                return
            request.write(b"drop;")
            calls.append(reactor.callLater(float(seconds), drip, left - 1))
        calls: list[Any] = []
        request.notifyFinish().addErrback(lambda _: [c.cancel() for c in calls if c.active()])
        drip(int(count))
        return NOT_DONE_YET

    def path_stall(self, request, body, size):
        request.write(blocks(int(size)))
        return NOT_DONE_YET

    def path_produce(self, request, body, size):
        request.channel.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", str(size).encode())
        request.registerProducer(_BlockProducer(request, int(size), self.production), True)
        return NOT_DONE_YET

    def _finish(self, request, data: bytes) -> None:
        if not request.finished and not request._disconnected:
            request.write(data)
            request.finish()


def blocks(size: int) -> bytes:
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


@implementer(IPushProducer)
class _BlockProducer:
    """Writes ``BLOCK``s while the transport takes them: a well-behaved streaming upstream."""

    def __init__(self, request, size: int, stats: dict[str, Any]) -> None:
        self.request, self.size, self.stats = request, size, stats
        stats.update(sent=0, paused=False, pauses=0)
        reactor.callLater(0, self.resumeProducing)

    def pauseProducing(self) -> None:
        self.stats["paused"] = True
        self.stats["pauses"] += 1

    def resumeProducing(self) -> None:
        self.stats["paused"] = False
        request, stats = self.request, self.stats
        while not stats["paused"] and not request._disconnected and stats["sent"] < self.size:
            chunk = BLOCK[:self.size - stats["sent"]]
            stats["sent"] += len(chunk)
            request.write(chunk)
        if stats["sent"] >= self.size and not request.finished and not request._disconnected:
            request.unregisterProducer()
            request.finish()

    def stopProducing(self) -> None:
        self.stats["paused"] = True


def port_number(port: IListeningPort) -> int:
    """The TCP port number ``port`` listens on."""
    return cast(IPv4Address, port.getHost()).port


class _Reset(Protocol):
    def connectionMade(self) -> None:
        cast(ITCPTransport, self.transport).abortConnection()


class FlakySite(Site):
    """Resets the first ``resets`` connections, then serves; counts the connections."""

    def __init__(self, resource: Resource, resets: int) -> None:
        super().__init__(resource)
        self.resets, self.connections = resets, 0

    def buildProtocol(self, addr):
        self.connections += 1
        if self.connections <= self.resets:
            return _Reset()
        return super().buildProtocol(addr)


@attrs.define
class Upstream:
    resource: EchoUpstream
    site: FlakySite
    port: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"


async def start_upstream(case, resets: int = 0) -> Upstream:
    """An ``EchoUpstream`` on loopback that resets its first ``resets`` connections."""
    resource = EchoUpstream()
    site = FlakySite(resource, resets)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    case.addCleanup(port.stopListening)
    return Upstream(resource, site, port)


class _DeafFactory(Factory):
    """Builds ``_Deaf`` protocols and keeps their open transports and the closed count."""

    open: list[Any]
    closed: int


class _Deaf(Protocol):
    """Accepts a connection and never reads from it."""

    def connectionMade(self) -> None:
        cast(IPushProducer, self.transport).pauseProducing()
        cast(_DeafFactory, self.factory).open.append(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        factory = cast(_DeafFactory, self.factory)
        factory.open.remove(self.transport)
        factory.closed += 1


@attrs.define
class DeafUpstream:
    """An upstream that takes connections but reads nothing: requests stall while being written."""

    factory: _DeafFactory
    port: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"


async def start_deaf_upstream(case) -> DeafUpstream:
    factory = _DeafFactory()
    factory.protocol = _Deaf
    factory.open, factory.closed = [], 0
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    case.addCleanup(port.stopListening)
    case.addCleanup(lambda: [transport.abortConnection() for transport in list(factory.open)])
    return DeafUpstream(factory, port)


class _RawServer(Protocol):
    """Records each request head as received and answers it with the factory's raw head lines."""

    factory: _RawServerFactory

    def __init__(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:  # bodiless requests only
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.factory.heads.append(head + b"\r\n\r\n")
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\n" + self.factory.response_lines
                                 + b"Content-Length: 2\r\n\r\nok" + self.factory.after)


class _RawServerFactory(Factory["_RawServer"]):
    protocol = _RawServer

    def __init__(self, response_lines: bytes, after: bytes) -> None:
        self.heads: list[bytes] = []
        self.response_lines = response_lines
        self.after = after


@attrs.define
class RawUpstream:
    """An upstream that keeps the raw bytes of every request head (header names as sent)."""

    factory: _RawServerFactory
    port: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    @property
    def heads(self) -> list[bytes]:
        return self.factory.heads


async def start_raw_upstream(case, response_lines: bytes = b"", after: bytes = b"") -> RawUpstream:
    """A ``RawUpstream`` answering 200 ``ok`` with ``response_lines`` (each ending in CRLF) in its head,
    and ``after`` written right behind the response, in the same write."""
    factory = _RawServerFactory(response_lines, after)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    case.addCleanup(port.stopListening)
    return RawUpstream(factory, port)


class RawClient(Protocol):
    """A hand-driven client connection: write bytes, pause reading, wait for bytes, close."""

    transport: ITCPTransport  # connected over TCP before any test uses it

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: Deferred[bytes] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for marker, waiting in list(self._waiting):
            if marker in self.data:
                self._waiting.remove((marker, waiting))
                waiting.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(bytes(self.data))

    def received(self, marker: bytes) -> Deferred[None]:
        """Fires once ``marker`` has arrived."""
        waiting: Deferred[None] = Deferred()
        if marker in self.data:
            waiting.callback(None)
        else:
            self._waiting.append((marker, waiting))
        return waiting


@attrs.define
class Gateway:
    service: KongishService

    @property
    def node(self) -> Node:
        """The running node (a started gateway always has one)."""
        assert self.service.node is not None
        return self.service.node

    def _port(self, index: int) -> int:
        return port_number(self.service.ports[index])

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self._port(0)}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self._port(1)}"

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        """An Admin API call: (status, decoded JSON body or None, response headers)."""
        response = await treq.request(method, (self.admin + path).encode(), pool=POOL, **kwargs)
        body = await response.content()
        return response.code, (json.loads(body) if body.strip() else None), response.headers

    async def expose(self, url: str, path: str = "/p", route: dict[str, Any] | None = None,
                     plugins: tuple[dict[str, Any], ...] = (), **service: Any) -> None:
        """A service at ``url`` (``retries`` 0 unless given), a route at ``path``, plugins on the route."""
        name = "svc" + re.sub(r"[^A-Za-z0-9_.~-]", "-", path)
        status, body, _ = await self.call("POST", "/services", json={
            "name": name, "url": url, "retries": 0, **service})
        assert status == 201, body
        status, body, _ = await self.call("POST", f"/services/{name}/routes", json={
            "name": name, "paths": [path], **(route or {})})
        assert status == 201, body
        for plugin in plugins:
            status, body, _ = await self.call("POST", f"/routes/{name}/plugins", json=plugin)
            assert status == 201, body

    async def get(self, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        """A proxied call: (status, raw body, response headers)."""
        response = await treq.get((self.proxy + path).encode(), pool=POOL, **kwargs)
        return response.code, await response.content(), response.headers

    async def connect(self) -> RawClient:
        """A raw connection to the proxy, closed at the end of the test."""
        client = RawClient()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port_number(self.service.ports[0])).connect(
            Factory.forProtocol(lambda: client))
        return client

    async def raw(self, request: bytes) -> bytes:
        """Send raw bytes to the proxy and return everything it answers (HTTP/1.0, so it closes)."""
        client = await self.connect()
        client.transport.write(request)
        return await client.closed

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        response = await treq.request(method, (self.proxy + path).encode(), pool=POOL, **kwargs)
        return response.code, await response.content(), response.headers


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def start_gateway(case, prefix: str | None = None, **settings: str) -> Gateway:
    """Start a real KongishService on loopback ports with its store under ``prefix``."""
    values = {"prefix": prefix or case.mktemp(), "proxy_listen": LOOPBACK, "admin_listen": LOOPBACK}
    values.update(settings)
    service = KongishService(Settings.load(environ={}, overrides=values), reactor)
    service.startService()
    case.addCleanup(service.stopService)
    await service.ready
    return Gateway(service)


async def eventually(check, seconds: float = 5.0) -> None:
    """Wait until ``check()`` is true, polling the reactor; fail after ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError(f"still false after {seconds}s: {check}")


def deferred(coroutine_function):
    """Let trial run ``async def`` test methods."""
    def test(self):
        return ensureDeferred(coroutine_function(self))
    test.__name__ = coroutine_function.__name__
    return test


