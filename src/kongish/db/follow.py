"""A node following a store that other nodes write to: each notice, one catch-up.

Notices (a ``NOTIFY``, a poll) may come faster than a catch-up takes; they are
coalesced, so at most one catch-up runs and at most one more follows it.
"""
from __future__ import annotations

import attrs
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from kongish import errors
from kongish.db.dao import Database

log = Logger()


@attrs.define(eq=False)
class StoreFollower:
    database: Database
    _running: bool = False
    _again: bool = False
    #: Whether the last catch-up failed for want of the store (said once per outage).
    _unreachable: bool = False

    def changed(self) -> None:
        """The store may hold changes this node has not applied."""
        if self._running:
            self._again = True
            return
        self._running = True
        catching_up = ensureDeferred(self.database.catch_up())
        catching_up.addCallbacks(self._caught_up, self._failed).addBoth(self._done)

    def _caught_up(self, _: bool) -> None:
        if self._unreachable:
            self._unreachable = False
            log.info("kongish reads configuration changes again")

    def _failed(self, failure: Failure) -> None:
        if not failure.check(errors.DatabaseUnavailable):
            log.failure("catching up with the store failed", failure)
        elif not self._unreachable:
            self._unreachable = True
            log.warn("kongish cannot read configuration changes: {error}; serving the last it has",
                     error=str(failure.value))

    def _done(self, _: object) -> None:
        self._running = False
        if self._again:
            self._again = False
            self.changed()
