"""Twisted's ``IAgent`` on kongish's upstream client, so treq rides the same keep-alive pools.

Code that calls out (Python plugins, tests, Lua's outbound HTTP) speaks treq:
``treq.HTTPClient(UpstreamAgent(client))`` sends through kongish's own client,
its pools and its timeouts, instead of a second stack of connections. The request
body is read whole before it is sent (outbound calls carry small bodies); the
response body streams, with pause and resume passed through to the connection.
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import URI, ResponseDone, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IClientRequest, IResponse
from zope.interface import implementer

from kongish.http.headers import CasedHeaders
from kongish.http.interfaces import (
    BodyEnd,
    IBodyReceiver,
    IBodyStream,
    IUpstreamClient,
    IUpstreamRequest,
    UpstreamSettings,
)

#: What an outbound call gets unless told otherwise: lua-resty-http's 60 s, no retry,
#: certificates checked.
OUTBOUND = UpstreamSettings(connect_timeout=60, write_timeout=60, read_timeout=60, retries=0, tls_verify=True)


@implementer(IUpstreamRequest)
@attrs.frozen
class OutboundRequest:
    """An ``IUpstreamRequest`` of a call out (an agent's URI, a Lua ``resty.http`` call)."""

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: str | None
    headers: Headers


@implementer(IClientRequest)
@attrs.frozen
class _SentRequest:
    """What ``IResponse.request`` tells of the request (treq's redirects read it)."""

    method: bytes
    absoluteURI: bytes
    headers: Headers


@implementer(IAgent)
@attrs.define(eq=False)
class UpstreamAgent:
    """``IAgent.request`` through an ``IUpstreamClient``; ``settings`` bound every call."""

    client: IUpstreamClient
    settings: UpstreamSettings = OUTBOUND

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        parsed = URI.fromBytes(uri)
        if parsed.scheme not in (b"http", b"https"):
            raise ValueError(f"unsupported scheme: {parsed.scheme!r}")
        path, mark, query = parsed.originForm.partition(b"?")
        sent = CasedHeaders()
        for name, values in (headers or Headers()).getAllRawHeaders():
            sent.setRawHeaders(name, values)
        outbound = OutboundRequest(method.decode("ascii"), parsed.scheme.decode("ascii"),
                             parsed.host.decode("idna").strip("[]"), parsed.port,
                             path.decode("utf-8", "surrogateescape"),
                             query.decode("utf-8", "surrogateescape") if mark else None, sent)
        request = _SentRequest(method, uri, sent)
        body = _read_body(bodyProducer)
        return body.addCallback(lambda data: self.client.send(outbound, self.settings, data)).addCallback(
            lambda response: _AgentResponse(response, request))


def _read_body(producer: IBodyProducer | None) -> Deferred[bytes]:
    if producer is None:
        return succeed(b"")
    consumer = _Collector()
    return producer.startProducing(consumer).addCallback(lambda _: b"".join(consumer.chunks))


@implementer(IConsumer)
class _Collector:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """A body producer writes on its own: nothing to drive."""

    def unregisterProducer(self) -> None:
        """Nothing to release."""


@implementer(IResponse)
class _AgentResponse:
    """An ``IUpstreamResponse`` as Twisted's ``IResponse``."""

    version = (b"HTTP", 1, 1)

    def __init__(self, response: Any, request: _SentRequest) -> None:
        self._response = response
        self.code: int = response.status
        self.phrase: bytes = response.reason
        self.headers: Headers = response.headers
        self.length: int | object = (response.content_length if response.content_length is not None
                                     and request.method != b"HEAD" else UNKNOWN_LENGTH)
        if request.method == b"HEAD" or response.status in (204, 304):
            self.length = 0
        self.request = request
        self.previousResponse: IResponse | None = None

    def deliverBody(self, protocol: Protocol) -> None:
        self._response.deliver_body(_ToProtocol(protocol))

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response


@implementer(IBodyReceiver, IPushProducer)
@attrs.define(eq=False)
class _ToProtocol:
    """Body callbacks to a Twisted protocol, which pauses and stops the body as a transport's."""

    protocol: Protocol
    _stream: IBodyStream | None = None

    def body_started(self, stream: IBodyStream) -> None:
        self._stream = stream
        self.protocol.makeConnection(self)  # a producer is what a body's reader gets as its transport

    def body_data(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def body_ended(self, end: BodyEnd) -> None:
        reason = Failure(ResponseDone()) if end.complete else Failure(
            ResponseFailed([Failure(ConnectionError(end.reason or "the body did not arrive whole"))]))
        self.protocol.connectionLost(reason)

    def pauseProducing(self) -> None:
        assert self._stream is not None
        self._stream.pause()

    def resumeProducing(self) -> None:
        assert self._stream is not None
        self._stream.resume()

    def stopProducing(self) -> None:
        assert self._stream is not None
        self._stream.abort()
