"""The process-wide bound on response output, and bodies written as the client takes them."""
from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kongish.http.paced import CHUNK, PacedBody, send_paced
from kongish.runloop.output import OutputLedger


class LedgerTests(SynchronousTestCase):
    def test_each_request_and_all_together_are_bounded(self) -> None:
        ledger = OutputLedger(limit=100)
        first: dict[str, Any] = {}
        second: dict[str, Any] = {}
        self.assertTrue(ledger.take(first, 60, request_limit=80))
        self.assertFalse(ledger.take(first, 30, request_limit=80))  # the request's own limit
        self.assertFalse(ledger.take(second, 50, request_limit=80))  # the process's
        self.assertTrue(ledger.take(second, 40, request_limit=80))
        self.assertEqual(ledger.held, 100)
        ledger.release(first)
        self.assertEqual(ledger.held, 40)
        ledger.release(first)  # twice is once
        self.assertEqual(ledger.held, 40)
        self.assertTrue(ledger.take(second, 40, request_limit=80))


class _SlowTransport(StringTransport):
    """A connection whose buffer fills: it pauses its producer past ``mark`` bytes, as
    Twisted's transports do, until ``drain`` empties it."""

    def __init__(self, mark: int) -> None:
        super().__init__()
        self.mark = mark
        self.aborted = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.mark and self.producer is not None:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        taken = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return taken

    def abortConnection(self) -> None:
        self.aborted = True


class _Channel:
    def __init__(self, transport: _SlowTransport) -> None:
        self.transport = transport


class _Request:
    """The part of IProxiedRequest a body is written through."""

    def __init__(self, transport: _SlowTransport) -> None:
        self.channel = _Channel(transport)
        self._disconnected = False

    def write(self, data: bytes) -> None:
        self.channel.transport.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.channel.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.channel.transport.unregisterProducer()


class PacedBodyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = _SlowTransport(mark=2 * CHUNK)
        self.request = _Request(self.transport)
        self.body = bytes(range(256)) * 4096  # 1 MiB, 16 chunks

    def test_the_transport_never_holds_more_than_its_mark_and_a_chunk(self) -> None:
        done = PacedBody(self.request, self.body, self.clock, send_timeout=60).start()  # type: ignore[arg-type]
        received = b""
        while not done.called:
            self.assertLessEqual(len(self.transport.value()), 3 * CHUNK)
            received += self.transport.drain()
        self.assertEqual(received + self.transport.value(), self.body)
        self.assertIsNone(self.transport.producer)  # unregistered once all was handed over

    def test_a_client_that_takes_nothing_for_the_send_timeout_is_cut(self) -> None:
        done = PacedBody(self.request, self.body, self.clock, send_timeout=60).start()  # type: ignore[arg-type]
        self.clock.advance(59)
        self.transport.drain()  # some progress: the timeout starts again
        self.clock.advance(59)
        self.assertFalse(self.transport.aborted)
        self.assertNoResult(done)
        self.clock.advance(1)
        self.assertTrue(self.transport.aborted)
        self.successResultOf(done)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_chunk_or_less_is_written_at_once(self) -> None:
        self.assertIsNone(send_paced(self.request, b"x" * CHUNK, self.clock))  # type: ignore[arg-type]
        self.assertEqual(self.transport.value(), b"x" * CHUNK)
        self.assertIsNone(self.transport.producer)
        pending = send_paced(self.request, b"y" * (CHUNK + 1), self.clock)  # type: ignore[arg-type]
        self.assertIsNotNone(pending)

    def test_a_connection_that_closes_ends_the_write(self) -> None:
        body = PacedBody(self.request, self.body, self.clock)  # type: ignore[arg-type]
        done = body.start()
        self.request._disconnected = True
        body.stopProducing()
        self.successResultOf(done)
        self.assertEqual(self.clock.getDelayedCalls(), [])
