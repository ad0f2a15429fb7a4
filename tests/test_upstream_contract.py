"""What every IUpstreamClient does, run against Agent's (``UpstreamClient``, on a loopback
upstream) and against ``kongish.testing.StubUpstream`` (in memory).

Timeouts run on a ``Clock`` in both: ``UpstreamClient`` gets a reactor whose sockets are the
real reactor's and whose timers are the clock's, so nothing here waits on the wall clock.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kongish.http.client import UpstreamClient, UpstreamFailure
from kongish.http.headers import CasedHeaders
from kongish.http.interfaces import (
    BodyEnd,
    IBodyReceiver,
    IBodyStream,
    IUpstreamClient,
    IUpstreamRequest,
    IUpstreamResponse,
    UpstreamSettings,
)
from kongish.router.upstream_path import escape_path
from kongish.runloop.context import UpstreamRequest
from kongish.testing import StubRequest, StubResponse, StubUpstream
from tests.harness import closed_port, deferred

SETTINGS = UpstreamSettings(connect_timeout=60.0, write_timeout=60.0, read_timeout=5.0, retries=0)


@attrs.define
class Answer:
    """What the upstream of one test answers, said once for both clients.

    ``framing``: ``"length"`` (Content-Length), ``"chunked"`` or ``"close"`` (the body ends
    with the connection). ``ending``: ``"complete"``, ``"truncated"`` (closed after part of the
    announced length), ``"stall"`` (the body stops coming, the connection stays open).
    ``head``: False for an upstream that never answers at all.
    """

    status: int = 200
    reason: bytes = b"OK"
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)
    chunks: list[bytes] = attrs.Factory(list)
    framing: str = "length"
    ending: str = "complete"
    head: bool = True
    #: For a HEAD request: the entity length the head declares.
    entity_length: int | None = None


@attrs.define
class Seen:
    """A request as the upstream saw it."""

    method: str
    target: str
    header_names: list[bytes]
    body: bytes


@implementer(IBodyReceiver)
class Collector:
    """Collects a body; ``pause_first`` pauses at the start, ``abort_after`` aborts after that many chunks."""

    def __init__(self, pause_first: bool = False, abort_after: int | None = None) -> None:
        self.pause_first = pause_first
        self.abort_after = abort_after
        self.chunks: list[bytes] = []
        self.ends: list[BodyEnd] = []
        self.done: Deferred[BodyEnd] = Deferred()
        self.stream: IBodyStream | None = None

    def body_started(self, stream: IBodyStream) -> None:
        self.stream = stream
        if self.pause_first:
            stream.pause()

    def body_data(self, data: bytes) -> None:
        assert data, "body_data is never empty"
        self.chunks.append(data)
        if self.abort_after is not None and len(self.chunks) >= self.abort_after:
            assert self.stream is not None
            self.stream.abort()

    def body_ended(self, end: BodyEnd) -> None:
        self.ends.append(end)
        self.done.callback(end)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def request(method: str = "GET", path: str = "/", query: str | None = None,
            headers: Sequence[tuple[bytes, bytes]] = (), host: str = "127.0.0.1",
            port: int = 80) -> UpstreamRequest:
    sent = CasedHeaders()
    for name, value in headers:
        sent.addRawHeader(name, value)
    return UpstreamRequest(method, path, query, headers=sent, host=host, port=port)


if TYPE_CHECKING:
    _ContractBase = TestCase
else:
    _ContractBase = object


class UpstreamClientContract(_ContractBase):
    """The behaviours; a subclass provides the client and the upstream it talks to."""

    clock: Clock

    # provided by each subclass

    def client(self) -> IUpstreamClient:
        raise NotImplementedError

    async def upstream(self, answer: Answer) -> tuple[str, int]:
        """Arrange for the next request to be answered so; where to send it."""
        raise NotImplementedError

    def refusing(self) -> tuple[str, int]:
        """Where connections are refused."""
        raise NotImplementedError

    def seen(self) -> list[Seen]:
        raise NotImplementedError

    async def request_arrived(self) -> None:
        """Until the upstream has the request."""
        raise NotImplementedError

    # helpers

    async def send(self, answer: Answer, method: str = "GET", body: bytes = b"", **kwargs: Any,
                   ) -> IUpstreamResponse:
        host, port = await self.upstream(answer)
        response = await self.client().send(request(method, host=host, port=port, **kwargs), SETTINGS, body)
        self.assertTrue(verifyObject(IUpstreamResponse, response))
        return response

    async def read(self, response: IUpstreamResponse, receiver: Collector | None = None) -> Collector:
        receiver = receiver or Collector()
        response.deliver_body(receiver)
        await receiver.done
        self.assertEqual(len(receiver.ends), 1)
        return receiver

    # the contract

    def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IUpstreamClient, self.client()))
        self.assertTrue(verifyObject(IUpstreamRequest, request()))

    @deferred
    async def test_status_reason_and_headers_as_spelled(self) -> None:
        headers = [(b"X-MiXeD-Case", b"1"), (b"content-type", b"text/plain"), (b"X-Twice", b"a"),
                   (b"x-twice", b"b")]
        response = await self.send(Answer(201, b"Made It", headers, [b"ok"]))
        self.assertEqual((response.status, response.reason), (201, b"Made It"))
        names = [name for name, _ in response.headers.getAllRawHeaders()]
        self.assertIn(b"X-MiXeD-Case", names)
        self.assertIn(b"content-type", names)
        self.assertEqual(response.headers.getRawHeaders(b"x-twice"), [b"a", b"b"])
        # the framing headers stay with the client
        for framing in (b"content-length", b"transfer-encoding", b"connection"):
            self.assertFalse(response.headers.hasHeader(framing), framing)
        self.assertEqual(response.content_length, 2)
        await self.read(response)

    @deferred
    async def test_the_request_goes_as_given(self) -> None:
        response = await self.send(Answer(chunks=[b"ok"]), "POST", b"payload", path="/a b/c", query="x=1&y",
                                   headers=[(b"X-Sent-Spelling", b"yes"), (b"Content-Length", b"999")])
        await self.read(response)
        (seen,) = self.seen()
        self.assertEqual((seen.method, seen.target, seen.body), ("POST", "/a%20b/c?x=1&y", b"payload"))
        self.assertIn(b"X-Sent-Spelling", seen.header_names)

    @deferred
    async def test_a_body_streams_and_completes(self) -> None:
        for framing in ("length", "chunked", "close"):
            response = await self.send(Answer(chunks=[b"one ", b"two ", b"three"], framing=framing))
            self.assertEqual(response.content_length, 13 if framing == "length" else None, framing)
            received = await self.read(response)
            self.assertEqual(received.body, b"one two three", framing)
            self.assertEqual(received.ends, [BodyEnd(True)], framing)

    @deferred
    async def test_a_paused_body_waits_for_resume(self) -> None:
        response = await self.send(Answer(chunks=[b"held ", b"back"]))
        receiver = Collector(pause_first=True)
        response.deliver_body(receiver)
        self.assertEqual((receiver.chunks, receiver.ends), ([], []))
        assert receiver.stream is not None
        receiver.stream.resume()
        await receiver.done
        self.assertEqual(receiver.body, b"held back")
        self.assertTrue(receiver.ends[0].complete)

    @deferred
    async def test_head_declares_the_entity_length_and_has_no_body(self) -> None:
        response = await self.send(Answer(entity_length=5000), "HEAD")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.content_length, 5000)
        self.assertFalse(response.headers.hasHeader(b"content-length"))
        received = await self.read(response)
        self.assertEqual((received.body, received.ends), (b"", [BodyEnd(True)]))

    @deferred
    async def test_a_204_has_no_body_and_no_length(self) -> None:
        response = await self.send(Answer(204, b"No Content"))
        self.assertEqual((response.status, response.content_length), (204, None))
        received = await self.read(response)
        self.assertEqual((received.body, received.ends), (b"", [BodyEnd(True)]))

    @deferred
    async def test_a_truncated_body_is_reported_truncated(self) -> None:
        response = await self.send(Answer(chunks=[b"abc"], ending="truncated"))
        received = await self.read(response)
        self.assertEqual(received.body, b"abc")
        (end,) = received.ends
        self.assertEqual((end.complete, end.truncated, end.aborted), (False, True, False))
        self.assertTrue(end.reason)

    @deferred
    async def test_an_aborted_body_ends_aborted(self) -> None:
        response = await self.send(Answer(chunks=[b"part"], ending="stall"))
        received = await self.read(response, Collector(abort_after=1))
        self.assertEqual(received.body, b"part")
        (end,) = received.ends
        self.assertEqual((end.complete, end.aborted), (False, True))

    @deferred
    async def test_a_refused_connection_is_a_502(self) -> None:
        host, port = self.refusing()
        sending = self.client().send(request(host=host, port=port), SETTINGS, b"")
        failure = cast(UpstreamFailure, await self.assertFailure(sending, UpstreamFailure))
        self.assertEqual((failure.status, failure.renderer, failure.proxied), (502, "B", True))
        self.assertEqual(failure.message, "An invalid response was received from the upstream server")

    @deferred
    async def test_no_head_within_read_timeout_is_a_504(self) -> None:
        host, port = await self.upstream(Answer(head=False))
        sending = self.client().send(request(host=host, port=port), SETTINGS, b"")
        await self.request_arrived()
        self.clock.advance(SETTINGS.read_timeout - 0.5)
        self.assertNoResult(sending)
        self.clock.advance(0.5)
        failure = cast(UpstreamFailure, await self.assertFailure(sending, UpstreamFailure))
        self.assertEqual((failure.status, failure.message), (504, "The upstream server is timing out"))

    @deferred
    async def test_cancelling_ends_the_wait(self) -> None:
        host, port = await self.upstream(Answer(head=False))
        sending = self.client().send(request(host=host, port=port), SETTINGS, b"")
        await self.request_arrived()
        sending.cancel()
        await self.assertFailure(sending, CancelledError)
        self.assertEqual([call for call in self.clock.getDelayedCalls() if call.active()], [])

    @deferred
    async def test_discarding_a_body(self) -> None:
        response = await self.send(Answer(chunks=[b"unread"], ending="stall"))
        response.discard()

    @deferred
    async def test_close(self) -> None:
        await self.read(await self.send(Answer(chunks=[b"ok"])))
        await self.client().close()


# Agent's client on loopback


class _Scripted(Protocol):
    """Answers each request as the factory's next ``Answer`` says."""

    factory: _ScriptedFactory

    def __init__(self) -> None:
        self.buffer = b""

    def connectionMade(self) -> None:
        self.factory.open.append(self)

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.open.remove(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            fields = [line.split(b":", 1) for line in lines[1:]]
            length = sum(int(value) for name, value in fields if name.strip().lower() == b"content-length")
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            method, target, _ = lines[0].decode("latin-1").split(" ")
            self.factory.seen.append(Seen(method, target, [name for name, _ in fields], rest[:length]))
            self.answer(method, self.factory.answers.pop(0))
            arrived, self.factory.arrived = self.factory.arrived, Deferred()
            arrived.callback(None)

    def answer(self, method: str, answer: Answer) -> None:
        if not answer.head:
            return
        transport = self.transport
        assert transport is not None
        body = b"".join(answer.chunks)
        head = [b"HTTP/1.1 %d %s" % (answer.status, answer.reason)]
        head += [name + b": " + value for name, value in answer.headers]
        if method == "HEAD":
            head.append(b"Content-Length: %d" % (answer.entity_length or 0))
        elif answer.status == 204:
            pass
        elif answer.framing == "length":
            head.append(b"Content-Length: %d" % (len(body) + (10 if answer.ending != "complete" else 0)))
        elif answer.framing == "chunked":
            head.append(b"Transfer-Encoding: chunked")
        else:
            head.append(b"Connection: close")
        transport.write(b"\r\n".join(head) + b"\r\n\r\n")
        if method == "HEAD" or answer.status == 204:
            return
        for chunk in answer.chunks:
            if answer.framing == "chunked":
                chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
            transport.write(chunk)
        if answer.framing == "chunked" and answer.ending == "complete":
            transport.write(b"0\r\n\r\n")
        if answer.ending == "truncated" or answer.framing == "close":
            transport.loseConnection()


class _ScriptedFactory(Factory["_Scripted"]):
    protocol = _Scripted

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.seen: list[Seen] = []
        self.open: list[_Scripted] = []
        self.arrived: Deferred[None] = Deferred()


class _ClockedReactor:
    """The real reactor for sockets, ``clock`` for timers."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> Any:
        return self.clock.callLater(delay, f, *args, **kwargs)

    def seconds(self) -> float:
        return self.clock.seconds()

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


class AgentClientContractTests(UpstreamClientContract, TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self._client = UpstreamClient(_ClockedReactor(self.clock))
        self.addCleanup(self._client.close)
        self._factory: _ScriptedFactory | None = None

    def client(self) -> IUpstreamClient:
        return self._client

    async def upstream(self, answer: Answer) -> tuple[str, int]:
        if self._factory is None:
            self._factory = factory = _ScriptedFactory()
            self._port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
            self.addCleanup(self._port.stopListening)
            self.addCleanup(lambda: [cast(Any, p.transport).abortConnection() for p in list(factory.open)])
        self._factory.answers.append(answer)
        return "127.0.0.1", self._port.getHost().port

    def refusing(self) -> tuple[str, int]:
        return "127.0.0.1", closed_port()

    def seen(self) -> list[Seen]:
        assert self._factory is not None
        return self._factory.seen

    async def request_arrived(self) -> None:
        assert self._factory is not None
        if not self._factory.seen:
            await self._factory.arrived


# StubUpstream


class StubUpstreamContractTests(UpstreamClientContract, TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.answers: list[Answer] = []
        self.stub = StubUpstream(self._handle, self.clock)

    def _handle(self, request: StubRequest) -> StubResponse | Deferred[StubResponse]:
        if request.port == 9:
            raise ConnectionRefusedError()
        answer = self.answers.pop(0)
        if not answer.head:
            return Deferred()
        chunks: list[bytes | Deferred[bytes]] = list(answer.chunks)
        if answer.ending == "stall":
            chunks.append(Deferred())
        return StubResponse(answer.status, answer.headers, chunks, answer.reason,
                            end="truncated" if answer.ending == "truncated" else "complete",
                            content_length=answer.entity_length if request.method == "HEAD" else (
                                None if answer.framing != "length" else "auto"))

    def client(self) -> IUpstreamClient:
        return self.stub

    async def upstream(self, answer: Answer) -> tuple[str, int]:
        self.answers.append(answer)
        return "upstream.test", 80

    def refusing(self) -> tuple[str, int]:
        return "upstream.test", 9

    def seen(self) -> list[Seen]:
        return [Seen(r.method, escape_path(r.path) + ("" if r.query is None else "?" + r.query),
                     [name for name, _ in r.headers.getAllRawHeaders()], r.body) for r in self.stub.requests]

    async def request_arrived(self) -> None:
        self.assertTrue(self.stub.requests)


class StubUpstreamTests(TestCase):
    """What StubUpstream records and offers beyond the contract."""

    def test_records_requests_and_settings(self) -> None:
        stub = StubUpstream(lambda request: StubResponse(200, [("Content-Type", "text/plain")], b"hi"))
        sent = request("PUT", "/x", headers=[(b"X-Id", b"7")])
        response = self.successResultOf(stub.send(sent, SETTINGS, b"data"))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain"])
        (received,) = stub.requests
        self.assertEqual((received.method, received.path, received.body, received.settings),
                         ("PUT", "/x", b"data", SETTINGS))
        self.assertEqual(received.header("x-id"), ["7"])
        self.assertIsInstance(received.headers, Headers)

    def test_a_body_chunk_can_come_later(self) -> None:
        later: Deferred[bytes] = Deferred()
        stub = StubUpstream(lambda request: StubResponse(body=[b"now ", later]))
        response = self.successResultOf(stub.send(request(), SETTINGS, b""))
        receiver = Collector()
        response.deliver_body(receiver)
        self.assertEqual((receiver.chunks, receiver.ends), ([b"now "], []))
        later.callback(b"later")
        self.assertEqual(receiver.body, b"now later")
        self.assertEqual(receiver.ends, [BodyEnd(True)])

    def test_a_reset_body(self) -> None:
        stub = StubUpstream(lambda request: StubResponse(body=[b"x"], end="reset"))
        receiver = Collector()
        self.successResultOf(stub.send(request(), SETTINGS, b"")).deliver_body(receiver)
        (end,) = receiver.ends
        self.assertEqual((end.complete, end.truncated, end.aborted), (False, False, False))

    def test_a_failing_handler_is_classified(self) -> None:
        from twisted.internet.error import DNSLookupError

        def handler(request: StubRequest) -> StubResponse:
            raise DNSLookupError("upstream.test")
        failure = self.failureResultOf(StubUpstream(handler).send(request(), SETTINGS, b""), UpstreamFailure)
        self.assertEqual((failure.value.status, failure.value.renderer), (503, "A"))

    def test_close(self) -> None:
        stub = StubUpstream(lambda request: StubResponse())
        self.successResultOf(stub.close())
        self.assertTrue(stub.closed)
