"""The thread a blocking database driver runs on, so that the reactor never waits on it.

sqlite3 and psycopg calls block; each store sends every call on its connection to one
dedicated thread, in the order they were made: the writes of concurrent Admin API
requests are applied one after another.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

_T = TypeVar("_T")


@attrs.define
class StorageThread:
    """The one thread that runs every call of one database connection, in submission order."""

    _reactor: IReactorCore
    _pool: ThreadPool
    _shutdown_trigger: object

    @classmethod
    def start(cls, reactor: IReactorCore, name: str) -> StorageThread:
        pool = ThreadPool(1, 1, name=name)
        pool.start()
        # Without this, an unclosed database's thread would keep the process alive after the reactor stops.
        trigger = reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        return cls(reactor, pool, trigger)

    def run(self, function: Callable[..., _T], *args: Any) -> Deferred[_T]:
        # The reactor a database opens with is a whole reactor: it takes calls from threads too.
        return deferToThreadPool(cast(IReactorFromThreads, self._reactor), self._pool, function, *args)

    def stop(self, outcome: _T) -> _T:
        """Stop the thread, passing ``outcome`` through (usable as a callback or errback)."""
        self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
        self._pool.stop()
        return outcome
