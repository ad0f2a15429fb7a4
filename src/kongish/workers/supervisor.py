"""The master's side of its workers: start them, keep them current, replace them.

As nginx's master does, it starts ``nginx_worker_processes`` workers and
replaces one that exits. It also replaces one that is stuck: every worker
answers a heartbeat from its reactor, and one that has not answered for
longer than ``lua_time_limit`` plus a margin (Lua stuck inside one C call,
which the instruction hook cannot interrupt) is killed, and the log says
what it was running.

Configuration changes reach the workers through the store's change feed: the
master tells each worker the version a write made, and the worker reads what
changed since its own (``Database.catch_up``). With ``worker_consistency =
strict`` the Admin API answers a write once every worker serves it, or after
``STRICT_WAIT`` at most, naming the workers that lag.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from kongish.lua.settings import WorkerIdentity
from kongish.node import Node
from kongish.settings import Settings
from kongish.workers.busy import BusyBoard
from kongish.workers.control import ControlChannel, channel_factory
from kongish.workers.sockets import HandedListener

log = Logger()

#: How long a strict write waits for the workers to serve it.
STRICT_WAIT = 1.0
#: Heartbeats per second, and what a worker may take beyond ``lua_time_limit`` to answer one.
HEARTBEAT_INTERVAL = 0.25
HEARTBEAT_MARGIN = 2.0
#: A worker that lived less than this is restarted after a growing pause, up to the longest.
CRASH_LOOP = 1.0
LONGEST_PAUSE = 5.0
#: How long a stopping worker may take beyond the drain timeout before it is killed.
STOP_MARGIN = 5.0
#: The descriptor a worker's control channel is at.
CHANNEL_FD = 3


@attrs.define(eq=False)
class Worker:
    """One worker process and its channel, as the master sees them."""

    identity: WorkerIdentity
    channel: ControlChannel | None = None
    process: IProcessTransport | None = None
    pid: int | None = None
    started_at: float = 0.0
    #: Once it asked to follow the configuration: it gets every change from then on.
    following: bool = False
    #: When it last answered a heartbeat.
    answered_at: float = 0.0
    #: Fires when the process has ended.
    ended: Deferred[None] = attrs.Factory(Deferred)


class _WorkerProcess(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, worker: Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker

    def processEnded(self, reason: Failure) -> None:
        self.supervisor._ended(self.worker, reason)


@attrs.define(eq=False)
class WorkerSupervisor:
    """Runs a node's workers on the sockets ``listeners``, for the master's ``node``."""

    settings: Settings
    reactor: Any
    node: Node
    listeners: list[HandedListener]
    #: The log level the master runs at, for its workers' logs.
    log_level: str
    busy: BusyBoard = attrs.field(init=False)
    workers: list[Worker] = attrs.field(init=False)
    stopping: bool = attrs.field(default=False, init=False)
    _heartbeat: LoopingCall | None = attrs.field(default=None, init=False)
    _pauses: dict[int, float] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        count = self.settings.worker_processes
        self.workers = [Worker(WorkerIdentity(index, count)) for index in range(count)]
        self.busy = BusyBoard.create(os.path.join(self.settings.prefix, "workers.busy"), count)

    def start(self) -> None:
        for worker in self.workers:
            self._spawn(worker)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(HEARTBEAT_INTERVAL, now=False)
        self.node.database.followers.append(self.published)

    # starting

    def _spawn(self, worker: Worker) -> None:
        master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker.channel = channel = ControlChannel({
            "hello": lambda: self._hello(worker),
            "follow": lambda: self._follow(worker),
        })
        self.reactor.adoptStreamConnection(master_end.fileno(), socket.AF_UNIX, channel_factory(channel))
        master_end.close()
        worker.following, worker.ended = False, Deferred()
        fds: dict[int, Any] = {1: 1, 2: 2, CHANNEL_FD: worker_end.fileno()}
        fds.update({listener.worker_fd: listener.master_fd for listener in self.listeners})
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
        worker.process = self.reactor.spawnProcess(
            _WorkerProcess(self, worker), sys.executable, [sys.executable, "-m", "kongish.workers.worker"],
            env=environment, childFDs=fds)
        worker_end.close()
        worker.pid = worker.process.pid if worker.process is not None else None
        worker.started_at = worker.answered_at = self.reactor.seconds()
        log.info("kongish worker {id} started (pid {pid})", id=worker.identity.id, pid=worker.pid)

    def _hello(self, worker: Worker) -> dict[str, Any]:
        """What a starting worker needs: the settings, its place, its sockets, and a DB-less
        node's configuration as it stands now (it may have changed since the start)."""
        database = self.node.database
        configuration = None
        if database.read_only:
            configuration = {"entities": self._entities(), "text_hash": self.node.configuration_hash}
        return {"settings": dict(self.settings.raw), "log_level": self.log_level,
                "worker": [worker.identity.id, worker.identity.count],
                "listeners": [listener.as_json() for listener in self.listeners],
                "busy_board": self.busy.path, "configuration": configuration}

    def _follow(self, worker: Worker) -> int:
        """A worker that has loaded the configuration gets every change from now on; it
        catches up to the version answered before it accepts a connection."""
        worker.following = True
        worker.answered_at = self.reactor.seconds()
        return self.node.database.version

    # keeping them current

    async def published(self, version: int) -> None:
        """A write made ``version``: every following worker reads it; a strict write waits."""
        calls = [(worker, worker.channel.call("catch_up", version=version))
                 for worker in self.workers if worker.following and worker.channel is not None]
        if self.settings.worker_consistency != "strict" or not calls:
            for _, call in calls:
                call.addErrback(lambda failure: None)  # a worker that ends meanwhile reloads anyway
            return
        for _, call in calls:
            call.addTimeout(STRICT_WAIT, self.reactor)
        results = await DeferredList([call for _, call in calls], consumeErrors=True)
        lagging = [f"{worker.identity.id} (pid {worker.pid})"
                   for (worker, _), (ok, served) in zip(calls, results, strict=True)
                   if not ok or served < version]
        if lagging:
            log.warn("configuration version {version} is not yet served by worker {workers} after {wait}s; "
                     "answering anyway", version=version, workers=", ".join(lagging), wait=STRICT_WAIT)

    def configured(self) -> Deferred[Any]:
        """A DB-less node loaded a new configuration: every worker loads it too."""
        entities, text_hash = self._entities(), self.node.configuration_hash
        calls = [worker.channel.call("configure", entities=entities, text_hash=text_hash)
                 for worker in self.workers if worker.following and worker.channel is not None]
        waited = DeferredList([call.addTimeout(STRICT_WAIT, self.reactor) for call in calls],
                              consumeErrors=True)
        return waited if self.settings.worker_consistency == "strict" else succeed(None)

    def _entities(self) -> dict[str, list[dict[str, Any]]]:
        return {name: list(table.values()) for name, table in self.node.database.tables.items()}

    # watching them

    def _beat(self) -> None:
        now = self.reactor.seconds()
        allowed = self.settings.lua_time_limit + HEARTBEAT_MARGIN
        for worker in self.workers:
            if worker.process is None or worker.channel is None or not worker.following:
                continue
            if now - worker.answered_at > allowed:
                self._kill_stuck(worker, now - worker.answered_at)
                continue
            worker.channel.call("ping").addCallbacks(
                lambda _, worker=worker: setattr(worker, "answered_at", self.reactor.seconds()),
                lambda failure: None)

    def _kill_stuck(self, worker: Worker, silent: float) -> None:
        running = self.busy.read(worker.identity.id) or "no Lua code"
        log.error("kongish worker {id} (pid {pid}) has not answered for {silent:.1f}s while running "
                  "{running}; killing it", id=worker.identity.id, pid=worker.pid, silent=silent,
                  running=running)
        worker.following = False
        self._signal(worker, signal.SIGKILL)

    def _signal(self, worker: Worker, signal_number: int) -> None:
        if worker.process is not None:
            try:
                worker.process.signalProcess(signal_number)
            except OSError:  # it ended already; processEnded follows
                pass

    def _ended(self, worker: Worker, reason: Failure) -> None:
        worker.process, worker.following = None, False
        if worker.channel is not None:
            worker.channel.close()
            worker.channel = None
        self.busy.clear(worker.identity.id)
        worker.ended.callback(None)
        if self.stopping:
            return
        lived = self.reactor.seconds() - worker.started_at
        index = worker.identity.id
        pause = 0.0 if lived >= CRASH_LOOP else min(max(self._pauses.get(index, 0.0) * 2, 0.1), LONGEST_PAUSE)
        self._pauses[index] = pause
        log.error("kongish worker {id} (pid {pid}) exited ({reason}); starting a new one",
                  id=index, pid=worker.pid, reason=str(reason.value))
        self.reactor.callLater(pause, self._respawn, worker)

    def _respawn(self, worker: Worker) -> None:
        if not self.stopping and worker.process is None:
            self._spawn(worker)

    # reporting

    async def stats(self) -> list[dict[str, Any]]:
        """Each worker's own report (pid, connections, requests, Lua memory, RSS)."""
        calls = [worker.channel.call("stats").addTimeout(STRICT_WAIT, self.reactor)
                 for worker in self.workers if worker.following and worker.channel is not None]
        results = await DeferredList(calls, consumeErrors=True)
        return [report for ok, report in results if ok]

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self.workers
                if worker.pid is not None and worker.process is not None]

    # stopping

    async def stop(self, timeout: float) -> None:
        """As nginx's graceful quit: every worker answers what it has read, then exits;
        one still running past ``timeout`` (plus a margin) is killed."""
        self.stopping = True
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        running = [worker for worker in self.workers if worker.process is not None]
        for worker in running:
            self._signal(worker, signal.SIGTERM)
        if not running:
            return
        everyone = DeferredList([worker.ended for worker in running])
        deadline = self.reactor.callLater(timeout + STOP_MARGIN, self._kill_all, running)
        await everyone
        if deadline.active():
            deadline.cancel()
        self.busy.close()

    def _kill_all(self, workers: list[Worker]) -> None:
        for worker in workers:
            if worker.process is not None:
                log.error("kongish worker {id} (pid {pid}) did not stop in time; killing it",
                          id=worker.identity.id, pid=worker.pid)
                self._signal(worker, signal.SIGKILL)
