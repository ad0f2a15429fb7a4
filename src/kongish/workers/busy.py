"""What each worker's Lua is running, and since when, where its master can read it.

A worker stuck inside one C call (a pathological Lua pattern) cannot answer
anything, so it says beforehand: before each resume of Lua code it writes the
route, plugin and phase and the time into its slot of a small file that it and
its master map into memory, and marks the slot idle after. A resume is bounded
by ``lua_time_limit`` unless it is stuck where the budget hook never runs, so
the master kills a worker whose slot says running for much longer, and logs
what it ran. Times are ``time.monotonic()``, one clock for every process.
"""
from __future__ import annotations

import mmap
import os
import struct
import time

import attrs

#: Bytes per slot: a flag, the start time, then the description, NUL-padded.
SLOT = 256
_STARTED = struct.Struct("=d")
_TEXT = 1 + _STARTED.size
_RUNNING, _IDLE = b"\x01", b"\x00"


@attrs.define(eq=False)
class BusyBoard:
    """Slots in a shared file, one per worker process that may run at once."""

    path: str
    _map: mmap.mmap

    @classmethod
    def create(cls, path: str, slots: int) -> BusyBoard:
        """The master's: a fresh file of idle slots."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as board:
            board.write(bytes(SLOT * slots))
        return cls.open(path)

    @classmethod
    def open(cls, path: str) -> BusyBoard:
        with open(path, "r+b") as board:
            return cls(path, mmap.mmap(board.fileno(), 0))

    def slot(self, index: int) -> BusySlot:
        return BusySlot(self._map, index * SLOT)

    def running(self, index: int) -> tuple[str, float] | None:
        """What the slot's Lua is running and for how many seconds, or None when idle."""
        start = index * SLOT
        if self._map[start:start + 1] != _RUNNING:
            return None
        (started,) = _STARTED.unpack_from(self._map, start + 1)
        text = self._map[start + _TEXT:start + SLOT].rstrip(b"\x00").decode("utf-8", "replace")
        return text, time.monotonic() - started

    def clear(self, index: int) -> None:
        start = index * SLOT
        self._map[start:start + 1] = _IDLE

    def close(self) -> None:
        self._map.close()


@attrs.define(eq=False)
class BusySlot:
    """A worker's own slot, which its Lua engine marks around each resume."""

    _map: mmap.mmap
    _start: int

    def running(self, route: str, plugin: str, phase: str) -> None:
        text = f"route {route}, plugin {plugin}, phase {phase}".encode()[:SLOT - _TEXT]
        start = self._start
        self._map[start + _TEXT:start + SLOT] = text.ljust(SLOT - _TEXT, b"\x00")
        _STARTED.pack_into(self._map, start + 1, time.monotonic())
        self._map[start:start + 1] = _RUNNING

    def idle(self) -> None:
        self._map[self._start:self._start + 1] = _IDLE
