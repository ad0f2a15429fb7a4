"""The master process of a node with worker processes (``nginx_worker_processes`` > 1).

It is a ``KongishService`` that serves the Admin API and owns the store, as a
single-process node does, and binds the proxy's sockets for its workers
instead of serving them. The Admin API stays with the master: the store then
has one writer, and the API keeps answering while a worker is stuck in Lua
or being replaced.
"""
from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger

from kongish.service import DRAIN_TIMEOUT, KongishService, listen_on
from kongish.settings import ConfigError, Settings
from kongish.workers.sockets import HandedListener, listen_for_workers
from kongish.workers.supervisor import WorkerSupervisor

log = Logger()


@attrs.define(eq=False)
class MasterService(KongishService):
    #: The log level (a Twisted level name) the workers log at, as the master does.
    log_level: str = attrs.field(default="info", kw_only=True)
    #: Reads kong.conf again, for SIGHUP (``twist kongish`` gives it; None: no reload).
    reload_settings: Callable[[], Settings] | None = attrs.field(default=None, kw_only=True)
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
            self.settings, self.reactor, self.node, self.handed, self.log_level,
            shared_dict_path=self.shared_dicts.path if self.shared_dicts else None)
        self.node.workers = supervisor
        self.node.configuration_followers.append(supervisor.configured)
        supervisor.start()
        if self.owns_process and self.reload_settings is not None:
            signal.signal(signal.SIGHUP, lambda number, frame: self.reactor.callFromThread(self.reload))

    def reload(self) -> Deferred[None]:
        """nginx's reload: kong.conf read again, and workers started with it replace the
        running ones one at a time. The master's own listeners and store stay as started."""
        assert self.reload_settings is not None and self.supervisor is not None
        try:
            settings = self.reload_settings()
        except ConfigError as error:
            log.error("reload refused, the workers keep their configuration: {error}", error=str(error))
            return succeed(None)
        if settings.lua_shared_dicts != self.settings.lua_shared_dicts:
            log.warn("nginx_http_lua_shared_dict changed: the workers keep the dicts (and their "
                     "contents) declared at start until kongish restarts")
        log.info("reloading: replacing the workers one at a time")
        return Deferred.fromCoroutine(self.supervisor.reload(settings))

    async def _stop(self) -> None:
        await self.ready
        if self.supervisor is not None:
            await self.supervisor.stop(DRAIN_TIMEOUT)
        await super()._stop()
