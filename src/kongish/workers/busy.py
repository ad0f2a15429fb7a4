"""What each worker's Lua is running, where its master can read it when the worker is stuck.

A worker stuck inside one C call (a pathological Lua pattern, a catastrophic
regex) cannot answer anything, so it says beforehand: before each resume of
Lua code it writes the route, plugin and phase into its slot of a small file
that it and its master map into memory, and marks the slot idle after. The
master reads the slot when it kills the worker, for the log.
"""
from __future__ import annotations

import mmap
import os

import attrs

#: Bytes per worker: a flag, then the description, NUL-padded.
SLOT = 256
_RUNNING, _IDLE = b"\x01", b"\x00"


@attrs.define(eq=False)
class BusyBoard:
    """One slot per worker in a shared file."""

    path: str
    _map: mmap.mmap

    @classmethod
    def create(cls, path: str, workers: int) -> BusyBoard:
        """The master's: a fresh file with an idle slot per worker."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as board:
            board.write(bytes(SLOT * workers))
        return cls.open(path)

    @classmethod
    def open(cls, path: str) -> BusyBoard:
        with open(path, "r+b") as board:
            return cls(path, mmap.mmap(board.fileno(), 0))

    def slot(self, worker_id: int) -> BusySlot:
        return BusySlot(self._map, worker_id * SLOT)

    def read(self, worker_id: int) -> str | None:
        """What the worker is running, or None when its Lua is idle."""
        start = worker_id * SLOT
        if self._map[start:start + 1] != _RUNNING:
            return None
        return self._map[start + 1:start + SLOT].rstrip(b"\x00").decode("utf-8", "replace")

    def clear(self, worker_id: int) -> None:
        start = worker_id * SLOT
        self._map[start:start + 1] = _IDLE

    def close(self) -> None:
        self._map.close()


@attrs.define(eq=False)
class BusySlot:
    """A worker's own slot, which the Lua engine marks around each resume."""

    _map: mmap.mmap
    _start: int

    def running(self, route: str, plugin: str, phase: str) -> None:
        text = f"route {route}, plugin {plugin}, phase {phase}".encode()[:SLOT - 1]
        start = self._start
        self._map[start + 1:start + SLOT] = text.ljust(SLOT - 1, b"\x00")
        self._map[start:start + 1] = _RUNNING

    def idle(self) -> None:
        self._map[self._start:self._start + 1] = _IDLE
