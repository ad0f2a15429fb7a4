"""``Deadline``: one reactor call per connection, whatever its requests do to the deadline."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kongish.http.deadline import Deadline


class DeadlineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.expired: list[float] = []
        self.deadline = Deadline(self.clock, lambda: self.expired.append(self.clock.seconds()))

    def active(self) -> int:
        return len([call for call in self.clock.getDelayedCalls() if call.active()])

    def test_expires_once_at_the_deadline(self) -> None:
        self.deadline.set(11)
        self.clock.advance(10.5)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.5)
        self.assertEqual(self.expired, [11])
        self.assertFalse(self.deadline.armed)
        self.clock.advance(100)
        self.assertEqual((self.expired, self.active()), ([11], 0))

    def test_a_later_deadline_takes_no_new_call(self) -> None:
        self.deadline.set(11)
        for _ in range(5):  # five requests, each setting the timeout anew a second later
            self.clock.advance(1)
            self.deadline.set(11)
            self.assertEqual(self.active(), 1)
        self.clock.advance(10.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [16])

    def test_a_sooner_deadline_moves_the_call(self) -> None:
        self.deadline.set(11)
        self.deadline.set(7)  # a write timeout shorter than the read timeout
        self.assertEqual(self.active(), 1)
        self.clock.advance(7)
        self.assertEqual(self.expired, [7])

    def test_cleared_it_never_expires_and_its_call_goes(self) -> None:
        self.deadline.set(11)
        self.deadline.clear()
        self.assertFalse(self.deadline.armed)
        self.clock.advance(11)
        self.assertEqual((self.expired, self.active()), ([], 0))
        self.deadline.set(3)  # and it can be set again
        self.clock.advance(3)
        self.assertEqual(self.expired, [14])

    def test_cleared_then_set_later_waits_for_the_new_deadline(self) -> None:
        self.deadline.set(11)
        self.clock.advance(5)
        self.deadline.clear()
        self.deadline.set(11)
        self.clock.advance(6)
        self.assertEqual(self.expired, [])
        self.clock.advance(5)
        self.assertEqual(self.expired, [16])

    def test_stopped_it_leaves_nothing_in_the_reactor(self) -> None:
        self.deadline.set(11)
        self.deadline.stop()
        self.assertEqual(self.active(), 0)
        self.clock.advance(11)
        self.assertEqual(self.expired, [])
