"""A CPU-time limit for Python work the Lua budget hook cannot interrupt.

The Lua engine bounds plugin code with a count hook, which only fires between
Lua instructions. ``ngx.re`` matches with the ``regex`` package, where a
catastrophic pattern (``^(a|aa)+$``) can backtrack for hours; OpenResty stops PCRE at its
match limit instead. ``regex`` checks for signals while it matches, so a
``SIGPROF`` from an ``ITIMER_PROF`` timer (process CPU time, the clock the Lua
budget uses) can end the match by raising from the signal handler.

Signal handlers belong to the main thread: elsewhere, or when some other code
(a profiler) owns ``SIGPROF``, the work runs without this limit (``ngx.re``
then relies on ``regex``'s wall-clock ``timeout``).
"""
from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CpuTimeExceeded(Exception):
    """The work used up the CPU time it was given."""


_SHORTEST = 1e-3
_armed = False


def _expired(signum: int, frame: object) -> None:
    # A signal still pending after disarming finds the flag down and does nothing.
    if _armed:
        raise CpuTimeExceeded()


def _can_arm() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGPROF)
    if handler is _expired:
        return True
    if handler is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGPROF, _expired)
    return True


def with_cpu_limit(seconds: float, work: Callable[[], T]) -> T:
    """``work()``, or ``CpuTimeExceeded`` once it has used ``seconds`` of CPU time.

    ``math.inf`` means no limit (PDK calls outside the engine's runs).
    """
    global _armed
    if seconds <= 0:
        raise CpuTimeExceeded()
    if seconds == math.inf or not _can_arm():
        return work()
    _armed = True
    # A time below the timer's resolution would round to zero, which disarms it.
    signal.setitimer(signal.ITIMER_PROF, max(seconds, _SHORTEST))
    try:
        return work()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        _armed = False
