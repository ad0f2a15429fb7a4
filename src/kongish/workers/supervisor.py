"""The master's side of its workers: start them, keep them current, replace them.

As nginx's master does, it starts ``nginx_worker_processes`` workers and
replaces one that exits. It also replaces one that is stuck: a worker whose
Lua has been in one resume for longer than ``STUCK_AFTER`` times
``lua_time_limit`` plus a margin (stuck inside one C call, which the budget
hook cannot interrupt; ``kongish.workers.busy``) is killed, and the log says
which route, plugin and phase it was running. So is one whose reactor has not
answered a heartbeat for ``UNRESPONSIVE`` seconds, whatever it is doing: a
worker busy with many requests, each within its limits, is slow to answer
but not stuck.

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
from kongish.metrics import LiveFunctions, Snapshot, merge_snapshots
from kongish.node import Node
from kongish.settings import Settings
from kongish.workers.busy import BusyBoard
from kongish.workers.control import ControlChannel, channel_factory
from kongish.workers.sockets import HandedListener

log = Logger()

#: How long a strict write waits for the workers to serve it.
STRICT_WAIT = 1.0
#: Seconds between heartbeats; a Lua resume is stuck after ``STUCK_AFTER`` times
#: ``lua_time_limit`` (CPU seconds, which a loaded machine stretches) plus the margin.
HEARTBEAT_INTERVAL = 0.25
STUCK_AFTER = 2
STUCK_MARGIN = 2.0
#: Seconds without a heartbeat answer after which a worker is replaced however busy it is.
UNRESPONSIVE = 30.0
#: A worker that lived less than this is restarted after a growing pause, up to the longest.
CRASH_LOOP = 1.0
LONGEST_PAUSE = 5.0
#: How long a stopping worker may take beyond the drain timeout before it is killed.
STOP_MARGIN = 5.0
#: The descriptor a worker's control channel is at.
CHANNEL_FD = 3


@attrs.define(eq=False)
class Worker:
    """One worker process and its channel, as the master sees them; a replacement is another."""

    identity: WorkerIdentity
    channel: ControlChannel | None = None
    process: IProcessTransport | None = None
    pid: int | None = None
    started_at: float = 0.0
    #: Once it asked to follow the configuration: it gets every change from then on.
    following: bool = False
    #: Its slot on the busy board: a replacement takes the other half, so both may run.
    slot: int = 0
    #: When it last answered a heartbeat.
    answered_at: float = 0.0
    #: Replaced by another process: it finishes what it has and is not started again.
    retiring: bool = False
    #: Its function metrics as it last told them (a scrape, or its last word as it stopped).
    metrics: Snapshot | None = None
    #: Fire when it follows the configuration (it then accepts connections), and when it ended.
    followed: Deferred[None] = attrs.Factory(Deferred)
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
    #: The node's ``ngx.shared`` zone, which every worker opens (None: no dicts declared).
    shared_dict_path: str | None = attrs.field(default=None, kw_only=True)
    busy: BusyBoard = attrs.field(init=False)
    #: The worker in each place (``ngx.worker.id()``), and every process not yet ended: a
    #: replacement starting and the one it replaces, still answering, are both in it.
    workers: list[Worker] = attrs.field(init=False)
    _processes: list[Worker] = attrs.field(factory=list, init=False)
    stopping: bool = attrs.field(default=False, init=False)
    _heartbeat: LoopingCall | None = attrs.field(default=None, init=False)
    _pauses: dict[int, float] = attrs.field(factory=dict, init=False)
    #: Counts the DB-less configurations loaded since the start (POST /config).
    _generation: int = attrs.field(default=0, init=False)
    #: The function metrics of workers that ended, as each last told them: the sums a
    #: scrape sees stay monotonic when a worker is replaced.
    _retired_metrics: Snapshot = attrs.field(factory=lambda: merge_snapshots([]), init=False)
    #: The node's functions the metrics kept here were last pruned to (``_prune_metrics``).
    _metrics_pruned_for: LiveFunctions | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        count = self.settings.worker_processes
        self.workers = [Worker(WorkerIdentity(index, count), slot=index) for index in range(count)]
        self.busy = BusyBoard.create(os.path.join(self.settings.prefix, "workers.busy"), 2 * count)

    def start(self) -> None:
        for worker in self.workers:
            self._spawn(worker)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(HEARTBEAT_INTERVAL, now=False)
        self.node.database.followers.append(self.published)
        self.node.database.listeners.append(self._prune_metrics)  # after the node's own rebuild

    # starting

    def _spawn(self, worker: Worker) -> None:
        master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker.channel = channel = ControlChannel({
            "hello": lambda: self._hello(worker),
            "follow": lambda generation: self._follow(worker, generation),
            "last_metrics": lambda snapshot: self._told_metrics(snapshot, worker),
        })
        self.reactor.adoptStreamConnection(master_end.fileno(), socket.AF_UNIX, channel_factory(channel))
        master_end.close()
        self._processes.append(worker)
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
        return {"settings": dict(self.settings.raw), "log_level": self.log_level,
                "worker": [worker.identity.id, worker.identity.count],
                "listeners": [listener.as_json() for listener in self.listeners],
                "busy_board": self.busy.path, "busy_slot": worker.slot,
                "shared_dicts": self.shared_dict_path,
                "configuration": self._configuration(), "generation": self._generation}

    def _configuration(self) -> dict[str, Any] | None:
        """A DB-less node's configuration as it stands, for a worker; None with a store."""
        if not self.node.database.read_only:
            return None
        return {"entities": {name: list(table.values()) for name, table in self.node.database.tables.items()},
                "text_hash": self.node.configuration_hash}

    def _follow(self, worker: Worker, generation: int) -> dict[str, Any]:
        """A worker that has loaded the configuration gets every change from now on; before
        it accepts a connection, it catches up with what changed since its hello: the
        store's version, or a DB-less configuration loaded meanwhile."""
        worker.following = True
        worker.answered_at = self.reactor.seconds()
        self.reactor.callLater(0, worker.followed.callback, None)  # after the answer is on its way
        return {"version": self.node.database.version,
                "configuration": self._configuration() if generation != self._generation else None}

    # keeping them current

    async def published(self, version: int) -> None:
        """A write made ``version``: every following worker reads it; a strict write waits."""
        calls = [(worker, worker.channel.call("catch_up", version=version))
                 for worker in self._processes if worker.following and worker.channel is not None]
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
        self._generation += 1
        configuration = self._configuration()
        assert configuration is not None, "POST /config loads a DB-less node's configuration"
        calls = [worker.channel.call("configure", **configuration)
                 for worker in self._processes if worker.following and worker.channel is not None]
        waited = DeferredList([call.addTimeout(STRICT_WAIT, self.reactor) for call in calls],
                              consumeErrors=True)
        return waited if self.settings.worker_consistency == "strict" else succeed(None)

    # watching them

    def _beat(self) -> None:
        now = self.reactor.seconds()
        stuck_after = STUCK_AFTER * self.settings.lua_time_limit + STUCK_MARGIN
        for worker in self._processes:
            if worker.process is None or worker.channel is None or not worker.following:
                continue
            running = self.busy.running(worker.slot)
            if running is not None and running[1] > stuck_after:
                self._kill(worker, f"its Lua has run {running[0]} for {running[1]:.1f}s")
                continue
            if now - worker.answered_at > UNRESPONSIVE:
                self._kill(worker, f"it has not answered for {now - worker.answered_at:.1f}s")
                continue
            worker.channel.call("ping").addCallbacks(self._answered, lambda failure: None,
                                                     callbackArgs=(worker,))

    def _answered(self, rss: int, worker: Worker) -> None:
        worker.answered_at = self.reactor.seconds()
        limit = self.settings.worker_rss_limit
        if limit and rss > limit and not worker.retiring and not self.stopping:
            log.warn("kongish worker {id} (pid {pid}) holds {rss} bytes, over worker_rss_limit {limit}; "
                     "replacing it", id=worker.identity.id, pid=worker.pid, rss=rss, limit=limit)
            self.replace(worker)

    def replace(self, worker: Worker) -> Deferred[None]:
        """A new process in ``worker``'s place; once it accepts connections, the old one
        finishes what it has read and exits. Fires when the old one has."""
        worker.retiring = True
        successor = Worker(worker.identity, slot=(worker.slot + len(self.workers)) % (2 * len(self.workers)))
        self._spawn(successor)

        def take_over(_: None) -> Deferred[None]:
            if self.workers[worker.identity.id] is worker:
                self.workers[worker.identity.id] = successor
            self._signal(worker, signal.SIGTERM)
            return worker.ended

        def failed(_: Failure) -> None:
            worker.retiring = False
            log.error("the replacement of kongish worker {id} exited before serving; pid {pid} goes on",
                      id=worker.identity.id, pid=worker.pid)

        return successor.followed.addCallbacks(take_over, failed)

    async def reload(self, settings: Settings) -> None:
        """nginx's reload: workers with ``settings`` replace the running ones, one at a time,
        and no connection is refused meanwhile (the sockets stay open in the master)."""
        if settings.worker_processes != len(self.workers):
            log.warn("nginx_worker_processes changes at the next start, not on reload")
        self.settings = attrs.evolve(settings, worker_processes=len(self.workers))
        for worker in list(self.workers):
            if not self.stopping and not worker.retiring and worker.process is not None:
                await self.replace(worker)
        log.info("kongish workers reloaded")

    def _kill(self, worker: Worker, why: str) -> None:
        log.error("kongish worker {id} (pid {pid}) is stuck: {why}; killing it",
                  id=worker.identity.id, pid=worker.pid, why=why)
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
        self._processes.remove(worker)
        if worker.channel is not None:
            worker.channel.close()
            worker.channel = None
        if worker.metrics is not None:
            # of the functions configured now: the sums of deleted ones do not pile up
            self._retired_metrics = merge_snapshots([self._retired_metrics, worker.metrics],
                                                    self.node.metrics.live)
            worker.metrics = None
        worker.ended.callback(None)
        if not worker.followed.called:  # it never served
            worker.followed.errback(reason)
            worker.followed.addErrback(lambda _: None)
        if self.stopping or worker.retiring or self.workers[worker.identity.id] is not worker:
            return  # stopped, replaced, or a replacement that failed
        self.busy.clear(worker.slot)
        lived = self.reactor.seconds() - worker.started_at
        index = worker.identity.id
        pause = 0.0 if lived >= CRASH_LOOP else min(max(self._pauses.get(index, 0.0) * 2, 0.1), LONGEST_PAUSE)
        self._pauses[index] = pause
        log.error("kongish worker {id} (pid {pid}) exited ({reason}); starting a new one",
                  id=index, pid=worker.pid, reason=str(reason.value))
        self.reactor.callLater(pause, self._respawn, worker)

    def _respawn(self, worker: Worker) -> None:
        if not self.stopping and self.workers[worker.identity.id] is worker:
            self.workers[worker.identity.id] = successor = Worker(worker.identity, slot=worker.slot)
            self._spawn(successor)

    # reporting

    async def stats(self) -> list[dict[str, Any]]:
        """Each worker's own report (pid, connections, requests, Lua memory, RSS)."""
        calls = [worker.channel.call("stats").addTimeout(STRICT_WAIT, self.reactor)
                 for worker in self.workers if worker.following and worker.channel is not None]
        results = await DeferredList(calls, consumeErrors=True)
        return [report for ok, report in results if ok]

    async def metrics(self) -> list[Snapshot]:
        """The function metrics of every worker, those that ended included.

        A worker that does not answer in time counts with what it last told; what a
        worker killed (stuck, or crashed) counted since then is lost. A worker stopped
        gracefully (replaced, reloaded) tells its last counts as it exits.
        """
        asked = [worker for worker in self._processes if worker.following and worker.channel is not None]
        calls = [worker.channel.call("metrics").addCallback(self._told_metrics, worker)
                 .addTimeout(STRICT_WAIT, self.reactor)
                 for worker in asked if worker.channel is not None]
        await DeferredList(calls, consumeErrors=True)
        # read after the answers: a worker that ended meanwhile is in the retired sums
        return [self._retired_metrics, *(worker.metrics for worker in asked
                                         if worker.metrics is not None and not worker.ended.called)]

    def _prune_metrics(self, changes: object) -> None:
        """The node's plugin map was rebuilt: drop the counts of functions it no longer has from
        the ended workers' sums and the running ones' last words (a worker drops its own as it
        catches up), so that a plugin stored again under the same id starts from zero."""
        live = self.node.metrics.live
        if live is None or live is self._metrics_pruned_for:
            return  # the write changed no plugin
        self._metrics_pruned_for = live
        self._retired_metrics = merge_snapshots([self._retired_metrics], live)
        for worker in self._processes:
            if worker.metrics is not None:
                worker.metrics = merge_snapshots([worker.metrics], live)

    def _told_metrics(self, snapshot: Snapshot, worker: Worker) -> None:
        if not worker.ended.called:
            worker.metrics = snapshot

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
        running = [worker for worker in self._processes if worker.process is not None]
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
