"""Running the proxy flow's coroutine at the cost of a plain call when it never waits.

Most requests end without waiting on anything (a plugin answers, or kongish
does), yet ``ensureDeferred`` allocates Deferreds, a cancellation status and a
copy of the context variables for each. ``drive`` only steps the coroutine, and
waits on a Deferred only when the coroutine awaits one that has not fired.
"""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

OnFailure = Callable[[Failure], None]


def drive(coroutine: Coroutine[Deferred[Any], Any, None], on_failure: OnFailure) -> None:
    """Run ``coroutine`` to its end; an exception it lets out goes to ``on_failure``."""
    _step(coroutine, None, on_failure)


def _step(coroutine: Coroutine[Deferred[Any], Any, None], result: Any, on_failure: OnFailure) -> None:
    try:
        if isinstance(result, Failure):
            awaited = result.throwExceptionIntoGenerator(coroutine)
        else:
            awaited = coroutine.send(result)
        awaited.addBoth(_resume, coroutine, on_failure)
    except StopIteration:
        return
    except BaseException:
        on_failure(Failure())


def _resume(result: Any, coroutine: Coroutine[Deferred[Any], Any, None], on_failure: OnFailure) -> None:
    """The awaited Deferred fired: its result goes into the coroutine, not down its chain."""
    _step(coroutine, result, on_failure)
