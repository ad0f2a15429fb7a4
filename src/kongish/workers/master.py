"""The master process of a node with worker processes (``nginx_worker_processes`` > 1).

It is a ``KongishService`` that serves the Admin API and owns the store, as a
single-process node does, and binds the proxy's sockets for its workers
instead of serving them. The Admin API stays with the master: the store then
has one writer, and the API keeps answering while a worker is stuck in Lua
or being replaced.
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory

from kongish.service import DRAIN_TIMEOUT, KongishService, listen_on
from kongish.workers.sockets import HandedListener, listen_for_workers
from kongish.workers.supervisor import WorkerSupervisor


@attrs.define(eq=False)
class MasterService(KongishService):
    #: The log level (a Twisted level name) the workers log at, as the master does.
    log_level: str = attrs.field(default="info", kw_only=True)
    supervisor: WorkerSupervisor | None = attrs.field(default=None, init=False)
    handed: list[HandedListener] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.listen = self._listen

    def _listen(self, reactor: Any, role: str, description: str,
                factory: IProtocolFactory) -> Deferred[IListeningPort]:
        if role == "proxy":
            return Deferred.fromCoroutine(listen_for_workers(reactor, description, self.handed))
        return listen_on(reactor, role, description, factory)

    async def _start(self) -> None:
        await super()._start()
        assert self.node is not None
        self.supervisor = supervisor = WorkerSupervisor(
            self.settings, self.reactor, self.node, self.handed, self.log_level)
        self.node.workers = supervisor
        self.node.configuration_followers.append(supervisor.configured)
        supervisor.start()

    async def _stop(self) -> None:
        await self.ready
        if self.supervisor is not None:
            await self.supervisor.stop(DRAIN_TIMEOUT)
        await super()._stop()
