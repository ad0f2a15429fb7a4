"""drive: a coroutine runs now, waits only on unfired Deferreds, and reports what escapes it."""
from __future__ import annotations

from typing import cast

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kongish.runloop.drive import drive


class DriveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.journal: list[object] = []
        self.failures: list[Failure] = []

    def test_runs_to_the_end_at_once_when_nothing_waits(self) -> None:
        async def flow() -> None:
            self.journal.append(await succeed("fired"))

        drive(flow(), self.failures.append)
        self.assertEqual((self.journal, self.failures), (["fired"], []))

    def test_waits_for_an_unfired_deferred_and_resumes_with_its_result(self) -> None:
        first: Deferred[int] = Deferred()
        second: Deferred[int] = Deferred()

        async def flow() -> None:
            self.journal.append(await first)
            self.journal.append(await second)

        drive(flow(), self.failures.append)
        self.assertEqual(self.journal, [])
        first.callback(1)
        self.assertEqual(self.journal, [1])
        second.callback(2)
        self.assertEqual((self.journal, self.failures), ([1, 2], []))
        self.assertIsNone(self.successResultOf(second))  # the result went to the coroutine

    def test_a_failed_deferred_raises_inside_the_coroutine(self) -> None:
        waiting: Deferred[None] = Deferred()

        async def flow() -> None:
            try:
                await waiting
            except ValueError as error:
                self.journal.append(str(error))

        drive(flow(), self.failures.append)
        waiting.errback(ValueError("boom"))
        self.assertEqual((self.journal, self.failures), (["boom"], []))
        self.assertIsNone(self.successResultOf(waiting))  # handled, never "unhandled error"

    def test_an_escaping_exception_goes_to_on_failure_before_and_after_a_wait(self) -> None:
        async def fails_now() -> None:
            raise KeyError("now")

        waiting: Deferred[None] = Deferred()

        async def fails_later() -> None:
            await waiting
            raise KeyError("later")

        drive(fails_now(), self.failures.append)
        drive(fails_later(), self.failures.append)
        self.assertEqual(len(self.failures), 1)
        waiting.callback(None)
        self.assertEqual([cast(BaseException, f.value).args[0] for f in self.failures], ["now", "later"])

    def test_awaiting_something_other_than_a_deferred_is_a_failure(self) -> None:
        class NotADeferred:
            def __await__(self):
                yield "not a Deferred"

        async def flow() -> None:
            await NotADeferred()

        drive(flow(), self.failures.append)
        self.assertEqual([type(f.value) for f in self.failures], [AttributeError])
