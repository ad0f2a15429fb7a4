"""BodyRelay against a fake client request and upstream body stream, on a fake clock."""
from __future__ import annotations

from typing import Any, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kongish.http.interfaces import COMPLETE, BodyEnd, IBodyReceiver, IBodyStream, IProxiedRequest
from kongish.runloop.relay import BodyRelay

_CUT = BodyEnd(False, reason="connection closed")


@attrs.define
class FakeRequest:
    written: list[bytes] = attrs.Factory(list)
    producer: Any = None
    closed: bool = False
    aborted: bool = False
    _disconnected: bool = False
    finished: bool = False

    @property
    def startedWriting(self) -> bool:
        return bool(self.written)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        self.closed = True

    @property
    def channel(self) -> Any:
        return self

    @property
    def transport(self) -> Any:
        return self

    def abortConnection(self) -> None:
        self.aborted = True


@implementer(IBodyStream)
@attrs.define
class FakeUpstream:
    paused: bool = False
    stopped: bool = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.stopped = True


class RelayTests(SynchronousTestCase):
    def _relay(self, body_filter=None) -> BodyRelay:
        self.clock, self.request, self.upstream = Clock(), FakeRequest(), FakeUpstream()
        relay = BodyRelay(cast(IProxiedRequest, self.request), body_filter, 1.0, self.clock, "id")
        self.assertTrue(verifyObject(IBodyReceiver, relay))
        relay.body_started(self.upstream)
        relay.watch()
        self.outcome: list[bool] = []
        relay.done.addCallback(self.outcome.append)
        return relay

    def test_a_waiting_filter_pauses_the_upstream_and_keeps_the_order(self) -> None:
        pending: list[tuple[Deferred, bytes, bool]] = []

        def body_filter(chunk: bytes, eof: bool) -> Deferred:
            waiting: Deferred = Deferred()
            pending.append((waiting, chunk, eof))
            return waiting
        relay = self._relay(body_filter)
        relay.body_data(b"a")
        relay.body_data(b"b")
        self.assertTrue(self.upstream.paused)
        self.assertEqual([chunk for _, chunk, _ in pending], [b"a"])
        relay.body_ended(COMPLETE)
        while pending:
            waiting, chunk, eof = pending.pop(0)
            waiting.callback(chunk.upper() + (b"|" if eof else b""))
        self.assertEqual(self.request.written, [b"A", b"B", b"|"])
        self.assertEqual(self.outcome, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_client_that_takes_nothing_for_the_send_timeout_is_cut(self) -> None:
        self.clock, self.request, self.upstream = Clock(), FakeRequest(), FakeUpstream()
        relay = BodyRelay(cast(IProxiedRequest, self.request), None, 100.0, self.clock, "id", send_timeout=5)
        relay.body_started(self.upstream)
        relay.watch()
        relay.body_data(b"x")
        relay.pauseProducing()
        self.clock.advance(4)
        relay.resumeProducing()  # it took something: the wait starts again
        relay.pauseProducing()
        self.clock.advance(4.9)
        self.assertFalse(self.request.aborted)
        self.clock.advance(0.1)
        self.assertTrue(self.request.aborted)
        self.assertTrue(self.upstream.stopped)  # the upstream connection is let go too

    def test_no_send_timeout_outlives_the_body(self) -> None:
        relay = self._relay()
        relay.body_data(b"x")
        relay.pauseProducing()
        relay.body_ended(COMPLETE)
        self.assertEqual(self.outcome, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_quiet_upstream_is_cut_after_read_timeout(self) -> None:
        relay = self._relay()
        relay.body_data(b"x")
        self.clock.advance(0.9)
        relay.body_data(b"y")
        self.clock.advance(0.9)
        self.assertFalse(self.request.closed)
        self.clock.advance(0.1)
        self.assertTrue(self.request.closed)
        self.assertTrue(self.upstream.stopped)
        self.assertEqual(self.outcome, [])
        relay.body_ended(_CUT)
        self.assertEqual(self.outcome, [False])
        self.assertEqual(self.request.written, [b"x", b"y"])

    def test_a_body_delivered_whole_never_starts_the_clock(self) -> None:
        """Most bodies arrive with their head: the read timeout would be set and cancelled
        for nothing."""
        self.clock, self.request, self.upstream = Clock(), FakeRequest(), FakeUpstream()
        relay = BodyRelay(cast(IProxiedRequest, self.request), None, 1.0, self.clock, "id")
        relay.body_started(self.upstream)  # deliver_body: the stream hands over all it has
        relay.body_data(b"whole")
        relay.body_ended(COMPLETE)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        relay.watch()  # then the flow asks for the clock
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((self.request.written, relay.done.result), ([b"whole"], True))

    def test_the_clock_starts_once_the_stream_delivered_what_it_had(self) -> None:
        self.clock, self.request, self.upstream = Clock(), FakeRequest(), FakeUpstream()
        relay = BodyRelay(cast(IProxiedRequest, self.request), None, 1.0, self.clock, "id")
        relay.body_started(self.upstream)
        relay.body_data(b"part")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        relay.watch()
        self.clock.advance(1)
        self.assertTrue(self.request.closed)
        self.assertTrue(self.upstream.stopped)

    def test_a_paused_client_stops_the_clock(self) -> None:
        relay = self._relay()
        self.request.producer.pauseProducing()
        self.assertTrue(self.upstream.paused)
        self.clock.advance(10)
        self.assertFalse(self.request.closed)
        self.request.producer.resumeProducing()
        self.assertFalse(self.upstream.paused)
        self.clock.advance(1)
        self.assertTrue(self.request.closed)
        relay.body_ended(_CUT)

    def test_an_upstream_failure_mid_body_cuts_the_client(self) -> None:
        relay = self._relay()
        relay.body_data(b"x")
        relay.body_ended(BodyEnd(False, reason="connection reset"))
        self.assertTrue(self.request.closed)
        self.assertEqual(self.outcome, [False])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_filter_error_after_output_cuts_both_sides(self) -> None:
        relay = self._relay(lambda chunk, eof: chunk if chunk == b"x" else 1 / 0)
        relay.body_data(b"x")
        relay.body_data(b"y")
        self.assertTrue(self.request.closed)
        self.assertTrue(self.upstream.stopped)
        relay.body_ended(_CUT)
        self.assertEqual(self.outcome, [False])
        self.assertIsNone(relay.unsent_failure)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_a_filter_error_before_output_leaves_the_client_to_the_flow(self) -> None:
        relay = self._relay(lambda chunk, eof: 1 / 0)
        relay.body_data(b"x")
        self.assertFalse(self.request.closed)  # the flow answers Kong's 500 on it
        self.assertTrue(self.upstream.stopped)
        relay.body_ended(_CUT)
        self.assertEqual(self.outcome, [False])
        assert relay.unsent_failure is not None
        self.assertTrue(relay.unsent_failure.check(ZeroDivisionError))
        self.assertEqual(self.flushLoggedErrors(ZeroDivisionError), [])  # the flow logs it
