"""A worker process: ``python -m kongish.workers.worker``, started by its master.

It asks its master for the settings, its place and its sockets, builds its own
node (its Lua VM, upstream pool and router snapshot, reading the store as the
master does), catches up with the configuration and accepts on the inherited
sockets. It answers its master's heartbeats, catch-ups and report requests,
stops gracefully on SIGTERM (as a single-process node does), and stops when
its master is gone.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Any

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)

from kongish.lua.settings import WorkerIdentity
from kongish.node import Node
from kongish.service import Configuration, KongishService
from kongish.settings import Settings
from kongish.workers.busy import BusyBoard
from kongish.workers.control import ControlChannel, channel_factory
from kongish.workers.sockets import adopt
from kongish.workers.supervisor import CHANNEL_FD

log = Logger()

#: How long a stopping worker waits for its master to take its last metrics.
LAST_WORD = 1.0


@attrs.define(eq=False)
class WorkerProcess:
    """This process's node and its side of the channel to the master."""

    reactor: Any
    channel: ControlChannel = attrs.field(init=False)
    service: KongishService | None = None

    def __attrs_post_init__(self) -> None:
        self.channel = ControlChannel({
            "ping": _rss,
            "catch_up": self._catch_up,
            "configure": self._configure,
            "stats": self._stats,
            "metrics": lambda: self._node().metrics.snapshot(),
        }, on_lost=self._master_gone)

    async def start(self) -> None:
        hello = await self.channel.call("hello")
        _log_as_twist(hello["log_level"])
        settings = Settings.parse(hello["settings"])
        shared_dicts = hello.get("shared_dicts")
        if shared_dicts is None:  # the master's dicts or none, never a zone of the worker's own
            settings = attrs.evolve(settings, lua_shared_dicts=())
        listeners = {listener["description"]: listener for listener in hello["listeners"]}
        configuration = hello["configuration"]

        def adopted(reactor: Any, role: str, description: str, factory: Any) -> Deferred[Any]:
            return adopt(reactor, listeners[description], factory)

        self.service = service = KongishService(
            settings, self.reactor, owns_process=True, roles=("proxy",), listen=adopted,
            worker=WorkerIdentity(*hello["worker"]),
            configuration=None if configuration is None else Configuration(
                configuration["entities"], configuration["text_hash"]),
            before_listening=lambda node: self._follow(node, hello), follows_store=False,
            shared_dict_path=shared_dicts)
        service.startService()
        self.reactor.addSystemEventTrigger("before", "shutdown", self._stop)
        await service.ready

    def _stop(self) -> Deferred[None]:
        """Stop serving, then tell the master the last function metrics, which it keeps."""
        assert self.service is not None
        return self.service.stopService().addCallback(self._tell_last_metrics)

    def _tell_last_metrics(self, _: object) -> Deferred[None] | None:
        node = self.service.node if self.service is not None else None
        if node is None:
            return None
        told = self.channel.call("last_metrics", snapshot=node.metrics.snapshot())
        return told.addTimeout(LAST_WORD, self.reactor).addErrback(lambda failure: None)

    async def _follow(self, node: Node, hello: dict[str, Any]) -> None:
        """Follow the master's configuration from now on, and catch up with what changed
        since the hello, before accepting a connection."""
        engine = node.lua_engine
        if engine is not None:
            engine.busy = BusyBoard.open(hello["busy_board"]).slot(hello["busy_slot"])
        now = await self.channel.call("follow", generation=hello["generation"])
        if now["configuration"] is not None:
            self._configure(**now["configuration"])
        if node.database.storage is not None and node.database.version < now["version"]:
            await node.database.catch_up()

    async def _catch_up(self, version: int) -> int:
        database = self._node().database
        if database.version < version:
            await database.catch_up()
        return database.version

    def _configure(self, entities: dict[str, list[dict[str, Any]]], text_hash: str) -> None:
        self._node().load_declarative(entities, text_hash)

    def _stats(self) -> dict[str, Any]:
        node = self._node()
        return {"pid": os.getpid(), "worker": node.lua_engine.settings.worker.id if node.lua_engine else 0,
                "lua_memory": node.lua_memory_used(), "rss": _rss(), "server": node.counters.as_json(),
                "configuration_version": node.database.version}

    def _node(self) -> Any:
        assert self.service is not None and self.service.node is not None, "asked before the node was built"
        return self.service.node

    def _master_gone(self) -> None:
        """Without a master nobody replaces or stops this worker: stop, answering what was read."""
        if self.reactor.running:
            log.info("kongish worker: the master is gone; stopping")
            self.reactor.stop()


def _rss() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _log_as_twist(level: str) -> None:
    """Log as ``twist`` does for the master: text to a terminal, JSON lines otherwise."""
    observer: ILogObserver = (textFileLogObserver(sys.stdout) if sys.stdout.isatty()
                              else jsonFileLogObserver(sys.stdout))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        observer, [LogLevelFilterPredicate(LogLevel.levelWithName(level))])], redirectStandardIO=False)


def _failed(failure: Any, reactor: Any) -> None:
    log.failure("kongish worker could not start", failure)
    if reactor.running:
        reactor.stop()
    os._exit(1)


def main() -> None:
    from twisted.internet import reactor as installed

    reactor: Any = installed

    worker = WorkerProcess(reactor)
    reactor.adoptStreamConnection(CHANNEL_FD, socket.AF_UNIX, channel_factory(worker.channel))
    os.close(CHANNEL_FD)

    def start() -> Deferred[None]:
        return ensureDeferred(worker.start()).addErrback(_failed, reactor)

    reactor.callWhenRunning(start)
    reactor.run()


if __name__ == "__main__":
    main()
