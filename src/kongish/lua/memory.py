"""The Lua VM's memory cap, kept so that running out of memory never reaches lupa.

lupa's calls into Lua from Python are not protected: an allocation that fails
while Python pushes a value (a PDK result, the arguments of a resume) aborts
the process (``PANIC: unprotected error``) or, inside a Lua-to-Python call,
unwinds through lupa with its lock held and deadlocks it. So Lua code must
never be the one that leaves the VM without room for Python's work:

- Lua code is held to ``lua_memory_limit`` (the *limit*): the driver checks it
  every 1000 instructions and before every PDK call, and ends the run over it.
- The allocator's cap sits ``headroom`` above the limit, so a single Lua
  allocation can overshoot the limit but never reaches the cap unnoticed,
  and a PDK call, entered only under the limit, always has the headroom.
- A PDK result larger than the room left is refused as ``not enough
  memory`` before lupa copies it into the VM (:meth:`MemoryCap.bounded`).
- Before Python resumes Lua, :meth:`MemoryCap.settle` collects garbage above
  the limit, with the cap lifted meanwhile; a VM still over the limit runs no
  code until what holds the memory is dropped.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from lupa.luajit21 import LuaRuntime

#: Room always kept for lupa's own pushes (an error message, a small table).
MARGIN = 64 * 1024
#: Results smaller than this need no check: the guard keeps far more room than that.
_SMALL_RESULT = 16 * 1024


class LuaMemoryShortage(MemoryError):
    """A PDK result would not fit in the VM; Lua code sees ``not enough memory``."""

    def __init__(self) -> None:
        super().__init__("not enough memory")


def headroom_for(limit: int) -> int:
    """The room kept above ``lua_memory_limit`` for the PDK: a quarter of it, at least 1 MiB."""
    return max(limit // 4, 1024 * 1024)


def _size(result: Any) -> int:
    """Bytes lupa will copy into the VM for a Python result (strings only; tables are built in it)."""
    if type(result) is bytes:
        return len(result)
    if type(result) is tuple:
        return sum(len(value) for value in result if type(value) is bytes)
    return 0


@attrs.define
class MemoryCap:
    """The limit Lua code is held to, and the allocator cap above it."""

    lua: LuaRuntime
    limit: int = attrs.field(on_setattr=attrs.setters.frozen)
    #: What lupa's allocator refuses past (bytes above the runtime's base usage).
    cap: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.cap = self.limit + self.headroom

    @property
    def headroom(self) -> int:
        return headroom_for(self.limit)

    def limit_total(self) -> int:
        """The limit in Lua's own count (``collectgarbage("count")`` × 1024), for the driver."""
        return self.lua.get_memory_used(total=True) - self.lua.get_memory_used() + self.limit

    def over_limit(self) -> bool:
        return self.lua.get_memory_used() > self.limit

    def reserve(self, size: int) -> None:
        """Refuse to bring ``size`` more bytes into the VM when they would not fit under the cap."""
        if self.lua.get_memory_used() + size + MARGIN > self.cap:
            raise LuaMemoryShortage()

    def bounded(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` as a PDK primitive: a result that would not fit is refused."""
        reserve = self.reserve

        def primitive(*args: Any) -> Any:
            result = function(*args)
            size = _size(result)
            if size > _SMALL_RESULT:
                reserve(size)
            return result
        return primitive

    def settle(self) -> bool:
        """Before Python enters Lua: collect garbage if over the limit; False if still over it."""
        if self.lua.get_memory_used() <= self.limit:  # over_limit, inlined: twice per resume
            return True
        lua = self.lua
        lua.set_max_memory(lua.get_memory_used() + self.cap)  # collecting may run finalizers
        try:
            lua.gccollect()
        finally:
            lua.set_max_memory(self.cap)
        return not self.over_limit()
