"""kongish's LuaJIT engine: plugin code for every request runs in one Lua VM.

Each ``run`` resumes a worker coroutine from a pool (kept in Lua) until the
code finishes; each resume is one call into Lua, which also arms and clears
the budget. When the PDK waits for something (``ngx.sleep``), the worker
yields a Deferred-producing call to Python and the reactor goes on serving
other requests; the worker resumes when the Deferred fires. Code that needs
no waiting never allocates a Deferred.

A runaway function costs only its own request: each run has an instruction
and CPU-time budget, the VM a memory cap, each request an output cap (body and
headers live in Python), C calls back into Lua are nested at most 200 deep
(LuaJIT would overflow the C stack), and all of these end the run with a
``LuaLimitError`` or ``LuaError`` instead of blocking or killing the process.
Lua code can never reach Python objects' attributes, and never sees lupa's
``python`` module.

What the budget cannot bound: the hook only runs between Lua instructions,
every 1000 of them, so one C call is never interrupted. LuaJIT's pattern
matching (``string.find``/``match``/``gmatch``/``gsub``) and plain ``find``
can take time polynomial in the subject's length (``s:find(".-.-x")``);
loops of C calls on strings near the memory cap overshoot the CPU limit by up
to 1000 such calls. ``untrusted_lua = on`` is Kong's trusted mode: ``debug``,
``io``, ``os``, ``ffi`` and ``package.loadlib`` give such code the process.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
from lupa import luajit21
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from kongish.http.interfaces import IUpstreamClient
from kongish.lua.cost import (
    CPU_TIME_LIMIT,
    INSTRUCTION_LIMIT,
    MEMORY_LIMIT,
    RUNTIME_ERROR,
    CostObserver,
    FunctionCost,
    FunctionId,
    OutboundUse,
)
from kongish.lua.current import CurrentRequest
from kongish.lua.memory import LuaMemoryShortage, MemoryCap, headroom_for
from kongish.lua.pdk import install_pdk
from kongish.lua.sandbox import UNTRUSTED_LUA_OFF, environment_factory, run_lua_file
from kongish.lua.settings import LuaSettings
from kongish.lua.timers import LuaTimers
from kongish.runloop.context import RequestContext


class BusyMarker(Protocol):
    """Where a worker says what its Lua is running (``kongish.workers.busy.BusySlot``)."""

    def running(self, route: str, plugin: str, phase: str) -> None: ...

    def idle(self) -> None: ...


@attrs.frozen
class _Signal:
    """What a worker yields to Python; Lua code cannot make one."""

    name: str


_AWAIT = _Signal("await")
_STOP = _Signal("stop")
_DONE = _Signal("done")
_FAILED = _Signal("failed")

#: LuaJIT's message for a failed allocation (here: the VM's memory cap).
_OUT_OF_MEMORY = "not enough memory"


class LuaError(Exception):
    """Lua code failed; ``traceback`` is Lua's stack traceback, for the error log."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback


class LuaLimitError(LuaError):
    """Lua code went over its instruction, CPU time or memory budget."""


class LuaMemoryLimitError(LuaLimitError):
    """Lua code left the VM over its memory limit; what it kept has been dropped."""


@attrs.frozen
class LuaFunctions:
    """One phase's compiled chunks, ready to ``run``: a runner per function.

    ``problem`` says why they cannot run (``untrusted_lua = off``, code that
    does not compile): like Kong, kongish reports it per request, as a 500.
    """

    runners: tuple[Any, ...] = ()
    problem: str | None = None
    #: Each function's ``FunctionId`` by (plugin name, plugin key, phase), made once.
    ids: dict[tuple[str, str, str], tuple[FunctionId, ...]] = attrs.field(factory=dict, eq=False)

    def function_ids(self, plugin_name: str, plugin_key: str, phase: str) -> tuple[FunctionId, ...]:
        key = (plugin_name, plugin_key, phase)
        ids = self.ids.get(key)
        if ids is None:
            ids = self.ids[key] = tuple(FunctionId(plugin_name, plugin_key, phase, index)
                                        for index in range(1, len(self.runners) + 1))
        return ids


def _refuse_attribute_access(obj: object, name: object, is_setting: bool) -> object:
    raise AttributeError("Lua code has no access to attributes of Python objects")


def _text(value: bytes | str | None) -> str:
    """Text of a Lua string, for messages and logs (Lua strings may be any bytes)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _lua_source(source: str) -> bytes:
    return source.encode("utf-8", "surrogatepass")


def _answer(result: Any) -> tuple[Any, ...]:
    """What an awaiting worker is resumed with: ``(true, values...)`` or ``(false, message)``."""
    if isinstance(result, Failure):
        return (False, result.getErrorMessage().encode("utf-8", "replace"))
    if isinstance(result, tuple):
        return (True, *result)
    return (True, result)


@attrs.frozen
class _Budget:
    """What is left of one run's budget between two resumes, and its waiting worker."""

    instructions: int
    seconds: float
    #: Guarded C calls (nested resumes, gsub callbacks) on the worker's stack.
    nesting: int = 0
    #: None before the first resume, which takes an idle worker.
    worker: Any = None


@attrs.frozen
class _Awaited:
    """What a worker waits for, ``pyfunc(*args)``, and its run's budget meanwhile."""

    pyfunc: Any
    args: tuple[Any, ...]
    budget: _Budget


@attrs.define(eq=False)
class LuaEngine:
    """The process's Lua VM, with the PDK installed, running plugin code per request."""

    settings: LuaSettings
    reactor: IReactorTime
    #: This node's id, for ``kong.node.get_id()``.
    node_id: str | None = attrs.field(default=None, kw_only=True)
    #: The client ``resty.http`` calls out through (the node's upstream client); None: no calls.
    outbound: IUpstreamClient | None = attrs.field(default=None, kw_only=True)
    #: The request whose code is running; the PDK acts on it.
    current: CurrentRequest = attrs.field(factory=CurrentRequest, init=False)
    #: Told of each resume, in a worker process: what its master logs if the worker is stuck.
    busy: BusyMarker | None = attrs.field(default=None, init=False)
    #: Told of each function's run once it has ended (metrics, dry runs).
    observers: list[CostObserver] = attrs.field(factory=list, init=False)
    timers: LuaTimers = attrs.field(init=False)
    lua: luajit21.LuaRuntime = attrs.field(init=False)
    #: The Lua functions the PDK yields through (see install_pdk).
    await_fn: Any = attrs.field(init=False)
    stop_fn: Any = attrs.field(init=False)
    #: What every run starts with.
    _full_budget: _Budget = attrs.field(init=False)
    _step: Any = attrs.field(init=False)
    _limit_exceeded: Any = attrs.field(init=False)
    _instructions_left: Any = attrs.field(init=False)
    _bind: Any = attrs.field(init=False)
    _phase_runner: Any = attrs.field(init=False)
    _new_environment: Any = attrs.field(init=False, default=None)
    _memory: MemoryCap = attrs.field(init=False)
    _reset: Any = attrs.field(init=False)
    _purge_cache: Any = attrs.field(init=False)
    # Raw C functions, safe to call while the budget hook fails every instruction.
    _sethook: Any = attrs.field(init=False)
    _load: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        settings = self.settings
        self._full_budget = _Budget(settings.instruction_limit, settings.time_limit)
        self.lua = lua = luajit21.LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False,
            unpack_returned_tuples=True, attribute_filter=_refuse_attribute_access,
            max_memory=settings.memory_limit + headroom_for(settings.memory_limit))
        self._memory = memory = MemoryCap(lua, settings.memory_limit)
        self._sethook = lua.eval("debug.sethook")
        self._load = lua.eval("load")
        driver = run_lua_file(
            lua, "driver.lua", _AWAIT, _STOP, _DONE, _FAILED,
            f"Lua code exceeded the limit of {settings.instruction_limit} instructions".encode(),
            self._time_message.encode(), memory.limit_total(), self._memory_message.encode())
        self._step, self._limit_exceeded = driver[b"step"], driver[b"limit_exceeded"]
        self._instructions_left = driver[b"instructions_left"]
        self._phase_runner, self._reset = driver[b"phase_runner"], driver[b"reset"]
        self.await_fn, self.stop_fn = driver[b"await"], driver[b"stop"]
        self._bind = lua.eval("function(job, premature) return function() return job(premature) end end")
        self.timers = LuaTimers(self.reactor, self.current, self._run_timer_job, settings.timers)
        self._purge_cache = install_pdk(
            lua, self.current, settings, self.await_fn, self.stop_fn, driver[b"exceed"],
            driver[b"phase"], memory=memory, guard_primitives=driver[b"guard_primitives"],
            reactor=self.reactor, node_id=self.node_id, outbound=self.outbound, timers=self.timers)
        if settings.untrusted_lua != "off":
            self._new_environment = environment_factory(lua, settings, driver)

    @property
    def _time_message(self) -> str:
        return f"Lua code exceeded the CPU time limit of {self.settings.time_limit:g}s"

    @property
    def _memory_message(self) -> str:
        return f"Lua code exceeded the memory limit of {self.settings.memory_limit} bytes"

    def exiting(self) -> None:
        """The process is stopping: ``ngx.worker.exiting()`` answers true from now on, as
        nginx's does while a worker finishes what it has, and pending timers run now."""
        self.lua.execute(b"ngx.worker.exiting = function() return true end")
        self.timers.expire()

    def memory_used(self) -> int:
        """Bytes the Lua VM has allocated."""
        return self.lua.get_memory_used()

    def compile_check(self, source: str) -> str | None:
        """LuaJIT's error for code that does not compile, else None; the code never runs.

        As in Kong, the chunk name is the source itself, which LuaJIT shows as
        ``[string "first line..."]``.
        """
        return self._compile(source)[1]

    def load(self, sources: Sequence[str]) -> LuaFunctions:
        """Compile one phase's chunks, each with its own global environment."""
        if self._new_environment is None:
            return LuaFunctions(problem=UNTRUSTED_LUA_OFF)
        runners = []
        for source in sources:
            chunk, problem = self._compile(source, self._new_environment())
            if problem is not None:
                return LuaFunctions(problem=problem)
            runners.append(self._phase_runner(self.lua.table_from([chunk])))
        return LuaFunctions(tuple(runners))

    def _compile(self, source: str, *environment: Any) -> tuple[Any, str | None]:
        """(function, None), or (None, LuaJIT's message); text mode only, never bytecode."""
        code = _lua_source(source)
        try:
            self._memory.reserve(len(code))
            compiled = self._load(code, None, b"t", *environment)
        except LuaMemoryShortage:
            return None, _OUT_OF_MEMORY
        except luajit21.LuaError as error:
            return None, str(error) or _OUT_OF_MEMORY
        if isinstance(compiled, tuple):
            return None, _text(compiled[1])
        return compiled, None

    def run(self, functions: LuaFunctions, context: RequestContext, plugin_name: str,
            plugin_key: str) -> Deferred[None] | None:
        """Run one phase's functions for one request, one after another, each with its budget.

        Returns None when the code finished without waiting, else a Deferred
        firing when it has. Lua errors raise (or fail the Deferred with)
        ``LuaError``; ``ngx.exit`` and friends end the phase normally, and the
        functions after the one that called them do not run.
        """
        return self.run_as(functions, functions.function_ids(plugin_name, plugin_key, context.phase), context)

    def run_as(self, functions: LuaFunctions, ids: tuple[FunctionId, ...],
               context: RequestContext) -> Deferred[None] | None:
        """``run``, for a caller that made its functions' ids once (``function_ids`` for the
        context's phase): the serverless plugins, on every request."""
        if functions.problem is not None:
            raise LuaError(functions.problem)
        return self._run_from(functions.runners, ids, 0, context)

    def _run_from(self, runners: tuple[Any, ...], ids: tuple[FunctionId, ...], index: int,
                  context: RequestContext) -> Deferred[None] | None:
        while index < len(runners):
            outcome = self._start(runners[index], context, ids[index])
            index += 1
            if outcome is _STOP:
                return None
            if type(outcome) is _Run:
                assert outcome.done is not None, "a run that waits has its Deferred"
                return outcome.done.addCallback(self._next_function, outcome, runners, ids, index)
        return None

    def _next_function(self, _: None, run: _Run, runners: tuple[Any, ...], ids: tuple[FunctionId, ...],
                       index: int) -> Deferred[None] | None:
        if run.stopped:
            return None
        assert run.context is not None, "a request's functions run one after another"
        return self._run_from(runners, ids, index, run.context)

    def _run_timer_job(self, job: Any, premature: bool, function: FunctionId) -> Deferred[None] | None:
        """One run of a timer's job, with a full budget and an outbound budget of its own."""
        outcome = self._start(self._bind(job, premature), None, function, OutboundUse())
        return outcome.done if type(outcome) is _Run else None

    def _start(self, runner: Any, context: RequestContext | None, function: FunctionId,
               outbound: OutboundUse | None = None) -> _Signal | _Run:
        """Run one function until it ends (``_DONE``, or ``_STOP`` for ``ngx.exit``) or waits: then
        its ``_Run``, whose ``done`` fires when it has ended. Most runs never wait, and never
        make a ``_Run``: what they cost is kept in locals."""
        cost = FunctionCost(function)
        started_at, memory_at_start = self.reactor.seconds(), self.lua.get_memory_used()
        try:
            outcome = self._resume(runner, context, cost, outbound, self._full_budget, (runner,))
            if isinstance(outcome, _Signal):
                self._ended(context, cost, started_at, memory_at_start, None)
                return outcome
            run = _Run(self, runner, context, cost, outbound, started_at, memory_at_start, outcome)
            if run.drive():
                self._ended(context, cost, started_at, memory_at_start, None)
                return _STOP if run.stopped else _DONE
        except LuaError as error:
            self._ended(context, cost, started_at, memory_at_start, error)
            raise
        run.done = Deferred(run.cancel)
        return run

    def _ended(self, context: RequestContext | None, cost: FunctionCost, started_at: float,
               memory_at_start: int, error: LuaError | None) -> None:
        """Record what a run cost and tell the observers."""
        cost.wall_seconds = self.reactor.seconds() - started_at
        cost.memory_bytes = max(self.lua.get_memory_used() - memory_at_start, 0)
        if error is not None:
            cost.error, cost.message = _error_kind(error, self), error.message
        for observer in self.observers:
            observer(context, cost)

    def _resume(self, runner: Any, context: RequestContext | None, cost: FunctionCost,
                outbound: OutboundUse | None, budget: _Budget, values: tuple[Any, ...]) -> _Signal | _Awaited:
        """One resume of a run's worker: ``_DONE`` or ``_STOP`` once its code has ended, else
        what it awaits. ``cost`` gets the CPU time and the instructions spent.

        The VM is under its memory limit before each resume and after it: a run
        that leaves it over the limit fails, and its functions are reset.
        """
        memory, lua = self._memory, self.lua
        # memory.settle(), its common case inlined: twice per resume
        if lua.get_memory_used() > memory.limit and not memory.settle():
            raise LuaMemoryLimitError(self._memory_message)
        current, function, busy = self.current, cost.function, self.busy
        try:
            if len(values) > 1:  # an answer to what the worker awaited (a first resume has none)
                memory.reserve(sum(len(value) for value in values if type(value) is bytes))
            if budget.seconds <= 0:  # short resumes never reach the hook: charge them here
                raise LuaLimitError(self._time_message)
            # what enter() does, inlined: once per resume
            current.context, current.plugin_name, current.plugin_key = (
                context, function.plugin_name, function.plugin_id)
            current.cost, current.outbound = cost, outbound
            started = time.process_time()
            current.deadline = deadline = started + budget.seconds
            if busy is not None:
                busy.running(_route_name(context), function.plugin_name, function.phase)
            try:
                result = self._step(budget.worker, budget.instructions, deadline, budget.nesting,
                                    function.phase.encode(), *values)
            except luajit21.LuaError as error:
                failure = self._step_failure(error)
                self._count(cost, self._instructions_left())
                raise failure from None
            finally:
                self.leave()
                cost.cpu_seconds += time.process_time() - started
                if busy is not None:
                    busy.idle()
        except LuaMemoryShortage:
            memory_failed = True
        except LuaLimitError as error:
            if error.message != self._memory_message:
                raise
            memory_failed = True
        else:
            memory_failed = lua.get_memory_used() > memory.limit and not memory.settle()
        if memory_failed:
            self._reset(runner)
            if not memory.settle():
                self._purge_cache()
                memory.settle()
            raise LuaMemoryLimitError(self._memory_message)
        return self._outcome(cost, result, deadline)

    def _outcome(self, cost: FunctionCost, result: tuple[Any, ...], deadline: float) -> _Signal | _Awaited:
        """What a resume's ``step`` answered: ``_DONE`` or ``_STOP`` when the code ended, what
        it awaits, or the error it failed with."""
        signal = result[0]
        if signal is _AWAIT:
            _, worker, instructions, nesting, pyfunc = result[:5]
            self._count(cost, instructions)
            return _Awaited(pyfunc, result[5:], _Budget(
                instructions, deadline - time.process_time(), nesting, worker))
        self._count(cost, result[1])
        if signal is _DONE or signal is _STOP:
            return signal
        if signal is _FAILED:
            raise self._failure(_text(result[2]), _text(result[3]).strip())
        raise LuaError("attempt to yield from outside a coroutine")

    def _count(self, cost: FunctionCost, instructions_left: int) -> None:
        """The instructions a run has spent, from what its budget has left (counted down)."""
        cost.instructions = self._full_budget.instructions - max(instructions_left, 0)

    def enter(self, run: _Run) -> None:
        """Point the PDK at ``run``: its request, plugin, cost and outbound budget."""
        current, function = self.current, run.cost.function
        current.context, current.plugin_name, current.plugin_key = (
            run.context, function.plugin_name, function.plugin_id)
        current.cost, current.outbound = run.cost, run.outbound

    def leave(self) -> None:
        current = self.current
        current.context = current.plugin_name = current.plugin_key = current.cost = current.outbound = None

    def _step_failure(self, error: luajit21.LuaError) -> LuaError:
        """Why a ``step`` call raised: over a limit, or a worker that died."""
        self._sethook()  # first, before any Lua runs: over budget, every instruction fails
        exceeded = self._limit_exceeded()
        if exceeded is not None:
            return LuaLimitError(_text(exceeded))
        if isinstance(error, luajit21.LuaMemoryError):
            return self._failure(_OUT_OF_MEMORY, "")
        return self._failure(str(error), "")

    def _failure(self, message: str, traceback: str) -> LuaError:
        if message == _OUT_OF_MEMORY:
            return LuaLimitError(self._memory_message)
        return LuaError(message, traceback)


def _error_kind(error: LuaError, engine: LuaEngine) -> str:
    if isinstance(error, LuaMemoryLimitError):
        return MEMORY_LIMIT
    if isinstance(error, LuaLimitError):
        return CPU_TIME_LIMIT if error.message == engine._time_message else INSTRUCTION_LIMIT
    return RUNTIME_ERROR


def _route_name(context: RequestContext | None) -> str:
    """The route a run serves, as a worker's master logs a stuck one."""
    if context is None:
        return "(timer)"
    route = context.route
    return route.get("name") or route["id"] if route else "(none)"


@attrs.define(eq=False)
class _Run:
    """One function's run for one request, once it waits: what it awaits, its Deferred."""

    engine: LuaEngine
    #: The function's runner, which ``reset`` puts back as loaded.
    runner: Any
    #: The request, or None for a timer's run.
    context: RequestContext | None
    cost: FunctionCost
    #: A timer run's outbound budget (a request's is in its context).
    outbound: OutboundUse | None
    _started_at: float
    _memory_at_start: int
    #: What the worker awaits now.
    awaited: _Awaited | None
    #: ngx.exit (or kong.response.exit) ended the phase: the functions after this one do not run.
    stopped: bool = False
    #: Fires when the run has ended; set once the first resumes have left it waiting.
    done: Deferred[None] | None = None
    #: What the worker waits for now, and whether the run was cancelled (its client left).
    _waiting: Deferred[Any] | None = None
    _cancelled: bool = False
    _answered_inline: bool = False
    _inline_answer: tuple[Any, ...] | None = None

    def _ended(self, error: LuaError | None) -> None:
        self.engine._ended(self.context, self.cost, self._started_at, self._memory_at_start, error)

    def cancel(self, done: Deferred[None]) -> None:
        """As nginx ends a request's Lua at its next yield: the worker is never resumed again,
        what it waits for is cancelled, and its stack becomes garbage."""
        self._cancelled = True
        self.awaited = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
        self.cost.cancelled = True
        self._ended(None)  # what it cost until then is still told

    def drive(self) -> bool:
        """Answer and resume until the code ends (True) or waits for a Deferred (False)."""
        while True:
            assert self.awaited is not None
            answer = self._call(self.awaited.pyfunc, self.awaited.args)
            if answer is None:
                return False
            if self._resume(answer):
                return True

    def _resume(self, answer: tuple[Any, ...]) -> bool:
        """Resume the worker with ``answer``; True once its code has ended."""
        assert self.awaited is not None
        outcome = self.engine._resume(self.runner, self.context, self.cost, self.outbound,
                                      self.awaited.budget, answer)
        if isinstance(outcome, _Signal):
            self.stopped = outcome is _STOP
            return True
        self.awaited = outcome
        return False

    def _call(self, pyfunc: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Call what the PDK awaits, for this run's request; its answer, or None when that
        comes later."""
        self.engine.enter(self)
        try:
            result = pyfunc(*args)
        except Exception:
            return _answer(Failure())
        finally:
            self.engine.leave()
        if not isinstance(result, Deferred):
            return _answer(result)
        self._answered_inline = True
        result.addBoth(self._answered)
        self._answered_inline = False
        answer, self._inline_answer = self._inline_answer, None
        if answer is None:
            self._waiting = result
        return answer

    def _answered(self, result: Any) -> None:
        self._waiting = None
        if self._cancelled:
            return None
        answer = _answer(result)
        if self._answered_inline:
            self._inline_answer = answer
            return
        assert self.done is not None
        try:
            finished = self._resume(answer) or self.drive()
        except LuaError as error:
            self._ended(error)
            self.done.errback()
            return
        except Exception:
            self.done.errback()
            return
        if finished:
            self._ended(None)
            self.done.callback(None)
