"""What one run of one serverless function cost, for metrics and dry runs.

The engine runs each function of a phase as its own run, with its own budget,
and hands every finished run's ``FunctionCost`` to its observers: the metrics
registry counts them, a dry run reports them. Knowing the function by plugin,
phase and index is what lets a user find the one that misbehaves.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from kongish.runloop.context import OUTBOUND_SLOT, OutboundUse

if TYPE_CHECKING:
    from kongish.runloop.context import RequestContext

__all__ = ["OUTBOUND_SLOT", "OutboundUse"]  # a request's outbound budget lives in its context

#: Error kinds, as ``FunctionCost.error`` names them.
RUNTIME_ERROR = "runtime_error"
INSTRUCTION_LIMIT = "instruction_limit"
CPU_TIME_LIMIT = "cpu_time_limit"
MEMORY_LIMIT = "memory_limit"
OUTBOUND_TIMEOUT = "outbound_timeout"
ERROR_KINDS = (RUNTIME_ERROR, INSTRUCTION_LIMIT, CPU_TIME_LIMIT, MEMORY_LIMIT, OUTBOUND_TIMEOUT)

#: The phase name of code run by ``ngx.timer``.
TIMER_PHASE = "timer"


@attrs.frozen(cache_hash=True)  # a metrics key, hashed on every run
class FunctionId:
    """Which function ran: the plugin entity, the phase and the function's place (from 1)
    in that phase's array (Kong's legacy ``functions`` come first in access)."""

    plugin_name: str
    plugin_id: str
    phase: str
    index: int


@attrs.define
class FunctionCost:
    """One run of one function, from its first resume to its end."""

    function: FunctionId
    #: VM instructions, counted as the budget counts them: in steps of 1000.
    instructions: int = 0
    #: CPU seconds spent in Lua and in the PDK's Python on its behalf.
    cpu_seconds: float = 0.0
    #: Seconds from the first resume to the end, waits (ngx.sleep, outbound calls) included,
    #: on the engine's reactor clock (the one ``ngx.now`` reads).
    wall_seconds: float = 0.0
    #: Growth of the Lua VM's memory in use over the run (0 when it shrank).
    memory_bytes: int = 0
    #: The error kind that ended the run (a ``*_LIMIT`` or ``RUNTIME_ERROR``), or None.
    error: str | None = None
    #: The message of that error.
    message: str | None = None
    #: Outbound HTTP calls made, and how many of them timed out.
    outbound_calls: int = 0
    outbound_timeouts: int = 0
    #: The run was ended while it waited (its client left, a dry run's time ran out).
    cancelled: bool = False


#: What the engine calls with each finished run: the request (None for a timer) and the cost.
CostObserver = Callable[["RequestContext | None", FunctionCost], None]
