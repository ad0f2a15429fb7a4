"""End-to-end wiring for tests: a real upstream server and a real kongish node on loopback."""
from __future__ import annotations

import json
from typing import Any

import attrs
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from kongish.app import KongishService
from kongish.config import Settings

LOOPBACK = "tcp:0:interface=127.0.0.1"
#: Test clients open a connection per request, so no socket outlives a test.
POOL = HTTPConnectionPool(reactor, persistent=False)


class EchoUpstream(Resource):
    """Answers every request with a JSON description of what it received.

    ``/status/<code>`` answers with that status; ``/delay/<seconds>`` waits first;
    ``/stream/<n>`` sends n chunks.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []

    def render(self, request):
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "headers": {k.decode().lower(): [v.decode("latin-1") for v in vs]
                        for k, vs in request.requestHeaders.getAllRawHeaders()},
            "body": request.content.read().decode("latin-1"),
        }
        self.received.append(seen)
        parts = request.path.decode().strip("/").split("/")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-upstream", b"echo")
        if parts[0] == "status" and len(parts) > 1:
            request.setResponseCode(int(parts[1]))
        if parts[0] == "delay":
            later = reactor.callLater(float(parts[1]), self._finish, request, seen)
            request.notifyFinish().addErrback(lambda _: later.cancel())
            return NOT_DONE_YET
        if parts[0] == "stream":
            for index in range(int(parts[1])):
                request.write(f"chunk{index};".encode())
            request.finish()
            return NOT_DONE_YET
        return json.dumps(seen).encode()

    def _finish(self, request, seen) -> None:
        if not request.finished and not request._disconnected:
            request.write(json.dumps(seen).encode())
            request.finish()


@attrs.define
class Upstream:
    resource: EchoUpstream
    port: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"


async def start_upstream(case) -> Upstream:
    resource = EchoUpstream()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(resource))
    case.addCleanup(port.stopListening)
    return Upstream(resource, port)


class _Raw(Protocol):
    def __init__(self, received: Deferred) -> None:
        self.received, self.data = received, b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.received.callback(self.data)


@attrs.define
class Gateway:
    service: KongishService

    def _port(self, index: int) -> int:
        return self.service.ports[index].getHost().port

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

    async def get(self, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        """A proxied call: (status, raw body, response headers)."""
        response = await treq.get((self.proxy + path).encode(), pool=POOL, **kwargs)
        return response.code, await response.content(), response.headers

    async def raw(self, request: bytes) -> bytes:
        """Send raw bytes to the proxy and return everything it answers (HTTP/1.0, so it closes)."""
        received = Deferred()
        protocol = _Raw(received)
        await TCP4ClientEndpoint(reactor, "127.0.0.1", self.service.ports[0].getHost().port).connect(
            Factory.forProtocol(lambda: protocol))
        protocol.transport.write(request)
        return await received

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        response = await treq.request(method, (self.proxy + path).encode(), pool=POOL, **kwargs)
        return response.code, await response.content(), response.headers


async def start_gateway(case, prefix: str | None = None, **settings: str) -> Gateway:
    """Start a real KongishService on loopback ports with its store under ``prefix``."""
    values = {"prefix": prefix or case.mktemp(), "proxy_listen": LOOPBACK, "admin_listen": LOOPBACK}
    values.update(settings)
    service = KongishService(Settings.load(environ={}, overrides=values), reactor)
    service.startService()
    case.addCleanup(service.stopService)
    await service.ready
    return Gateway(service)


def deferred(coroutine_function):
    """Let trial run ``async def`` test methods."""
    def test(self):
        return ensureDeferred(coroutine_function(self))
    test.__name__ = coroutine_function.__name__
    return test


