"""``ngx.timer``: Lua functions run later, outside any request, on the reactor's clock.

A timer's run is a run like a request's: the same instruction, CPU-time and memory
budget, its own outbound budget, and its cost reported with phase ``timer`` under the
plugin and function that started it. Kong's limits hold: at most
``lua_max_pending_timers`` waiting and ``lua_max_running_timers`` running (a timer that
comes due beyond that is dropped, with nginx's log line). When the process stops, every
pending timer runs at once with ``premature`` true, as nginx runs them when a worker exits.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from kongish.lua.cost import TIMER_PHASE, FunctionId
from kongish.lua.current import CurrentRequest
from kongish.lua.settings import TimerLimits

log = Logger()

#: The ``RequestContext.slots`` key whose value refuses the request's ``ngx.timer.at`` calls
#: with that error (a dry run's: a timer would run after it, unseen).
TIMERS_REFUSED_SLOT = "timers_refused"

#: Runs a timer's job: (Lua function of ``premature``, premature, who started it) →
#: None when it finished at once, else a Deferred; raises (or fails with) LuaError.
RunJob = Callable[[Any, bool, FunctionId], "Deferred[None] | None"]


@attrs.define(eq=False)
class _Timer:
    job: Any
    delay: float
    every: bool
    function: FunctionId
    #: The phase whose code started it, for the log.
    started_in: str
    call: IDelayedCall | None = None


@attrs.define(eq=False)
class LuaTimers:
    """The process's timers; ``run_job`` is the engine's way to run one."""

    reactor: IReactorTime
    current: CurrentRequest
    run_job: RunJob
    limits: TimerLimits = TimerLimits()
    pending: set[_Timer] = attrs.Factory(set)
    running: int = 0
    exiting: bool = False

    def exports(self) -> dict[bytes, Callable[..., Any]]:
        return {b"timer_at": self.start, b"timer_counts": self.counts}

    def start(self, delay: Any, job: Any, every: Any) -> tuple[Any, ...]:
        """``ngx.timer.at`` / ``every``: (true) or (nil, OpenResty's error); the running
        function started it."""
        cost = self.current.cost
        started_by = cost.function if cost is not None else None
        if self.exiting:
            return (None, b"process exiting")
        context = self.current.context
        refused = context.slots.get(TIMERS_REFUSED_SLOT) if context is not None else None
        if refused is not None:
            return (None, refused.encode())
        if len(self.pending) >= self.limits.pending:
            return (None, b"too many pending timers")
        if started_by is None:
            function, started_in = FunctionId("lua", "", TIMER_PHASE, 0), TIMER_PHASE
        else:
            function, started_in = attrs.evolve(started_by, phase=TIMER_PHASE), started_by.phase
        timer = _Timer(job, float(delay), bool(every), function, started_in)
        self._schedule(timer)
        return (True,)

    def counts(self) -> tuple[int, int]:
        """(running, pending), for ``ngx.timer.running_count`` and ``pending_count``."""
        return (self.running, len(self.pending))

    def _schedule(self, timer: _Timer) -> None:
        timer.call = self.reactor.callLater(timer.delay, self._due, timer)
        self.pending.add(timer)

    def _due(self, timer: _Timer) -> None:
        self.pending.discard(timer)
        if timer.every and not self.exiting:
            self._schedule(timer)  # the next run is due a delay after this one, as nginx's
        if self.running >= self.limits.running:
            log.warn("{count} lua_max_running_timers are not enough", count=self.limits.running)
            return
        self._run(timer, premature=False)

    def _run(self, timer: _Timer, premature: bool) -> None:
        self.running += 1
        try:
            waiting = self.run_job(timer.job, premature, timer.function)
        except Exception as error:
            self._finished(error, timer)
            return
        if waiting is None:
            self._finished(None, timer)
        else:
            waiting.addBoth(self._finished, timer)

    def _finished(self, result: object, timer: _Timer) -> None:
        self.running -= 1
        error = result.value if isinstance(result, Failure) else result
        if isinstance(error, Exception):
            function = timer.function
            log.error("[{plugin}] timer started by function {index} of {phase} failed: {reason} "
                      "(plugin {plugin_id})", plugin=function.plugin_name, index=function.index,
                      phase=timer.started_in, plugin_id=function.plugin_id,
                      reason=getattr(error, "message", None) or str(error))

    def expire(self) -> None:
        """The process is stopping: no new timers; each pending one runs now, ``premature``."""
        self.exiting = True
        pending, self.pending = self.pending, set()
        for timer in pending:
            if timer.call is not None and timer.call.active():
                timer.call.cancel()
            self._run(timer, premature=True)
