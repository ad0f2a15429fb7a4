"""Which request the Lua VM is serving right now.

Many requests share one Lua VM, each in its own coroutine; the reactor
interleaves them (one sleeps while another runs). The engine points
``CurrentRequest.context`` at a request's context just before resuming that
request's coroutine, so the PDK's Python functions always act on the request
whose Lua code is running.
"""
from __future__ import annotations

import math

import attrs

from kongish.lua.cost import FunctionCost, OutboundUse
from kongish.runloop.context import RequestContext


@attrs.define
class CurrentRequest:
    context: RequestContext | None = None
    #: The name of the plugin whose code is running (for kong.ctx.plugin and kong.log).
    plugin_name: str | None = None
    #: A per-plugin-entity key, so kong.ctx.plugin is private to one plugin instance.
    plugin_key: str | None = None
    #: The running function's cost so far, which PDK calls add to (outbound calls).
    cost: FunctionCost | None = None
    #: What the running request (or timer run) has spent of its outbound budget.
    outbound: OutboundUse | None = None
    #: ``time.process_time()`` at which the running code's CPU budget ends, for
    #: PDK work done in Python, which the Lua budget hook cannot interrupt.
    deadline: float = math.inf

    def require(self) -> RequestContext:
        """The running request's context; PDK calls outside a request are a Lua error."""
        if self.context is None:
            raise RuntimeError("no request is being served")
        return self.context
