"""Draining: a stopping listener's connections, their deadline, and who waits for them."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kongish.http.draining import Draining


class DrainingTests(SynchronousTestCase):
    def test_one_failing_connection_does_not_spare_the_others(self) -> None:
        clock = Clock()
        draining: Draining[str] = Draining(clock)
        draining.open.update({"a", "b", "c"})
        wound_down: list[str] = []

        def wind_down(connection: str) -> None:
            if connection == "b":
                raise RuntimeError("b is broken")
            wound_down.append(connection)
        stopped = draining.stop(5, wind_down, draining.closed)
        self.assertEqual(sorted(wound_down), ["a", "c"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertNoResult(stopped)
        clock.advance(5)  # the deadline cuts all three
        self.successResultOf(stopped)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_the_deadline_goes_once_the_last_closes(self) -> None:
        clock = Clock()
        draining: Draining[str] = Draining(clock)
        draining.open.add("a")
        stopped = draining.stop(5, lambda connection: None, lambda connection: None)
        draining.closed("a")
        self.successResultOf(stopped)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertTrue(draining.stopping)
