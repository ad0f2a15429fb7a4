"""The response output a process holds for its clients, bounded as a whole.

Body output and header values that Lua hands over (``ngx.say``, ``ngx.print``,
``kong.response.exit``) live in Python until the client has taken them. Each
request may hand over ``lua_memory_limit`` bytes; without a bound for all of
them, twenty clients that never read, each given 250 MB, held 8 GB. The ledger
counts what every request holds, from the Lua call that handed it over until
the client's connection has taken it (or closed); a call that would take the
process past ``lua_output_limit`` fails, and its request ends with a 500.
"""
from __future__ import annotations

import attrs

#: Where a request's context keeps the bytes it holds.
HELD_SLOT = "output_held"


@attrs.define(eq=False)
class OutputLedger:
    """Bytes of response output held for clients, by every request of one process."""

    #: The most all requests together may hold (``lua_output_limit``).
    limit: int
    held: int = 0

    def take(self, slots: dict[str, int], size: int, request_limit: int) -> bool:
        """Count ``size`` more bytes for the request whose slots these are; False, and
        nothing counted, past the request's own limit or the process's."""
        mine = slots.get(HELD_SLOT, 0)
        if mine + size > request_limit or self.held + size > self.limit:
            return False
        slots[HELD_SLOT] = mine + size
        self.held += size
        return True

    def release(self, slots: dict[str, int]) -> None:
        """The request's client has taken its output, or gone: what it held is free."""
        self.held -= slots.pop(HELD_SLOT, 0)


#: For contexts made outside a node (tests, embedding tools): no process-wide bound.
UNBOUNDED = OutputLedger(limit=2**63)
