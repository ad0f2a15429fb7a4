"""Composing kongish: build a node, then mount its resources or run its service.

The public entry points for embedding kongish in another Twisted application:

- ``await build_node(settings, reactor)`` opens the store and returns a ready ``Node``;
- ``proxy_resource(node, UpstreamClient(reactor))`` and ``admin_resource(node)`` are ``IResource``
  providers to mount in any ``twisted.web`` site (any ``IUpstreamClient`` will do for the
  proxy's: ``kongish.testing.StubUpstream`` answers without sockets);
- ``KongishService(settings)`` is an ``IService`` that does all of it and listens
  on ``proxy_listen`` and ``admin_listen`` (what ``twist kongish`` runs).
"""
from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Site

from kongish import KONG_VERSION
from kongish.admin.connections import AdminConnections
from kongish.admin.request import admin_request
from kongish.admin.resource import AdminResource, status_endpoint_table
from kongish.db.backends import open_storage
from kongish.db.dao import Database
from kongish.db.declarative import configuration_hash, flatten, parse_declarative
from kongish.db.follow import StoreFollower
from kongish.db.storage import IWatchedStorage, NodeRow
from kongish.heap import settle_heap
from kongish.http import access_log
from kongish.http.client import UpstreamClient
from kongish.http.connection_cap import ConnectionCap
from kongish.http.descriptors import raise_descriptor_limit
from kongish.http.interfaces import IUpstreamClient
from kongish.http.server import ProxyServerFactory
from kongish.lua.engine import LuaEngine
from kongish.lua.settings import SINGLE_PROCESS, LuaSettings, WorkerIdentity
from kongish.lua.shared_dict import SharedDictZone
from kongish.node import Node
from kongish.node_id import persistent_node_id
from kongish.plugins.host import PluginHost
from kongish.plugins.interface import IPlugin
from kongish.plugins.registry import PluginRegistry
from kongish.plugins.serverless.handler import serverless_plugins
from kongish.runloop.error_pages import KongRefusals
from kongish.runloop.headers import SERVER_TOKEN
from kongish.runloop.resource import ProxyResource
from kongish.settings import Settings

log = Logger()

#: How long a stopping node keeps answering the requests it has read (``kong quit``'s default).
DRAIN_TIMEOUT = 10.0


@attrs.frozen
class Configuration:
    """A DB-less node's entities, flattened, and the hash of the text they came from."""

    entities: dict[str, list[dict[str, Any]]]
    text_hash: str | None


async def build_node(settings: Settings, reactor: Any, extra_plugins: Iterable[IPlugin] = (),
                     worker: WorkerIdentity = SINGLE_PROCESS,
                     configuration: Configuration | None = None,
                     shared_dict_path: str | None = None) -> Node:
    """Open the configured store, load the configuration and return a node ready to proxy.

    ``extra_plugins`` join the bundled ones (``plugins = bundled`` enables them): how a
    test hands a node a plugin that is not installed. ``worker`` is the process's place
    among the node's workers (``ngx.worker.id()``); a DB-less node given ``configuration``
    (by its master) loads it instead of reading its declarative configuration.
    ``shared_dict_path`` is the node's ``ngx.shared`` zone (a ``SharedDictZone``'s path);
    without it the node's Lua VM makes its own for the dicts the settings declare.
    """
    node_id = persistent_node_id(settings.prefix)
    lua_settings = attrs.evolve(LuaSettings.from_settings(settings), worker=worker,
                                shared_dict_path=shared_dict_path)
    host = PluginHost(reactor, settings)
    engine = LuaEngine(lua_settings, reactor, node_id=node_id, outbound=host.client)
    registry = PluginRegistry.build(settings.plugins, [*serverless_plugins(engine), *extra_plugins], host)
    storage = await open_storage(settings, reactor)
    database = Database(storage, registry.lookup, reactor)
    if storage is not None:
        await database.load()
    node = Node(settings, database, registry, reactor, engine, node_id, plugin_host=host)
    if storage is None and configuration is not None:
        node.load_declarative(configuration.entities, configuration.text_hash)
    elif storage is None:
        text = settings.declarative_config_string
        filename = None
        if settings.declarative_config is not None:
            filename = settings.declarative_config
            with open(filename, encoding="utf-8") as source:  # read once at start, before serving
                text = source.read()
        if text is not None:
            entities = flatten(parse_declarative(text, filename=filename), plugins=registry.lookup)
            node.load_declarative(entities, configuration_hash(text))
    return node


def proxy_resource(node: Node, client: IUpstreamClient) -> IResource:
    """The proxy; ``client`` (``UpstreamClient(reactor)``) owns the upstream connections."""
    return ProxyResource(node, client)


def admin_resource(node: Node) -> IResource:
    return AdminResource(node)


def status_resource(node: Node) -> IResource:
    """Kong's status API (``status_listen``): ``GET /status`` and ``GET /metrics``."""
    return AdminResource(node, table=status_endpoint_table())


def _no_access_log(request: object) -> None:
    """Replaces ``Site.log`` when the access log is off."""


#: Listens for one role (``proxy``, ``admin`` or ``status``) on one ``*_listen`` endpoint description.
Listen = Callable[[Any, str, str, IProtocolFactory], "Deferred[IListeningPort]"]


def listen_on(reactor: Any, role: str, description: str,
              factory: IProtocolFactory) -> Deferred[IListeningPort]:
    """A process's own listening socket, as the description says."""
    return serverFromString(reactor, description).listen(factory)


@attrs.define(eq=False)
class KongishService(MultiService):
    """Runs one kongish node: proxy, Admin API and status listeners over a shared node."""

    settings: Settings
    reactor: Any = attrs.field(default=None)
    #: Freeze what the started process holds out of the cycle collector's view
    #: (:mod:`kongish.heap`): for a process kongish owns, as under ``twist kongish``;
    #: a service composed into another program leaves that program's heap alone.
    owns_process: bool = attrs.field(default=False, kw_only=True)
    node: Node | None = attrs.field(default=None, init=False)
    client: IUpstreamClient | None = attrs.field(default=None, init=False)
    ports: list[IListeningPort] = attrs.field(factory=list, init=False)
    proxy_factories: list[ProxyServerFactory] = attrs.field(factory=list, init=False)
    admin_factories: list[AdminConnections] = attrs.field(factory=list, init=False)
    #: The cap on client connections of every listener, set once the descriptor limit is.
    connection_cap: ConnectionCap | None = attrs.field(default=None, init=False)
    #: Why the start failed, if it did; ``twist kongish`` then exits non-zero, as ``kong start`` does.
    start_failure: Failure | None = attrs.field(default=None, init=False)
    #: What this process serves: a worker serves only the proxy, its master the Admin API and
    #: the status listener (``status_listen``).
    roles: tuple[str, ...] = attrs.field(default=("proxy", "admin", "status"), kw_only=True)
    #: How a listener gets its socket: its own, or (a worker's) one its master made.
    listen: Listen = attrs.field(default=listen_on, kw_only=True)
    worker: WorkerIdentity = attrs.field(default=SINGLE_PROCESS, kw_only=True)
    configuration: Configuration | None = attrs.field(default=None, kw_only=True)
    #: Awaited with the built node before any listener opens: a worker catches up with
    #: its master here, so that it never accepts a connection with a stale configuration.
    before_listening: Callable[[Node], Awaitable[None]] | None = attrs.field(default=None, kw_only=True)
    #: Whether this process follows what other writers store (a worker's master does it for it).
    follows_store: bool = attrs.field(default=True, kw_only=True)
    #: The ``ngx.shared`` zone to use (a worker: its master's); None: the service makes one
    #: for the dicts the settings declare, and removes it at stop.
    shared_dict_path: str | None = attrs.field(default=None, kw_only=True)
    shared_dicts: SharedDictZone | None = attrs.field(default=None, init=False)
    _watch: Any = attrs.field(default=None, init=False)
    _heartbeat: LoopingCall | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        MultiService.__init__(self)
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor

    def startService(self) -> None:
        MultiService.startService(self)
        self.ready = ensureDeferred(self._start())
        self.ready.addErrback(self._failed_to_start)

    async def _start(self) -> None:
        if self.shared_dict_path is not None:
            self.shared_dicts = SharedDictZone.attach(self.shared_dict_path)
        elif self.settings.lua_shared_dicts:
            self.shared_dicts = SharedDictZone.create(self.settings.lua_shared_dicts)
        self.node = await build_node(self.settings, self.reactor, worker=self.worker,
                                     configuration=self.configuration,
                                     shared_dict_path=self.shared_dicts.path if self.shared_dicts else None)
        if self.before_listening is not None:
            await self.before_listening(self.node)
        storage = self.node.database.storage
        if self.follows_store and IWatchedStorage.providedBy(storage):
            every = self.settings.db_update_frequency
            self._watch = storage.watch(self.reactor, StoreFollower(self.node.database).changed, every)
            self._heartbeat = LoopingCall(self._beat, storage)
            self._heartbeat.clock = self.reactor
            self._heartbeat.start(every, now=True)
        # one upstream client, whose pools the proxy and the plugins' HTTP calls share
        host = self.node.plugin_host
        self.client = host.client if host is not None else UpstreamClient(
            self.reactor, self.settings.upstream_keepalive, self.settings.dns)
        descriptors = raise_descriptor_limit(self.settings.rlimit_nofile)
        self.connection_cap = cap = ConnectionCap.for_descriptors(
            descriptors, self.settings.worker_connections, self.reactor.seconds)
        listeners = [(self.settings.proxy_listen, proxy_resource(self.node, self.client), "proxy"),
                     (self.settings.admin_listen, admin_resource(self.node), "admin"),
                     (self.settings.status_listen, status_resource(self.node), "status")]
        for descriptions, resource, role in listeners:
            if role not in self.roles:
                continue
            for description in descriptions:
                listened: IProtocolFactory
                site: Any
                if role == "proxy":
                    proxy = ProxyServerFactory(
                        resource, KongRefusals(self.settings.error_default_type), SERVER_TOKEN,
                        max_body_size=self.settings.proxy_max_body_size, cap=cap,
                        timeout=self.settings.keepalive_timeout,
                        header_timeout=self.settings.client_header_timeout,
                        body_timeout=self.settings.client_body_timeout)
                    site = listened = proxy
                    self.proxy_factories.append(proxy)
                    self.node.counters.listeners.append(proxy.connections)
                else:
                    site = Site(resource, logFormatter=access_log.combined, requestFactory=admin_request)
                    admin = AdminConnections(site, self.reactor, cap)
                    listened = admin
                    self.admin_factories.append(admin)
                    self.node.counters.listeners.append(admin.connections)
                site.displayTracebacks = False  # both are twisted.web HTTPFactory kin
                if role == "status" or not self.settings.access_log(role):  # Kong's status_access_log: off
                    site.log = _no_access_log
                port = await self.listen(self.reactor, role, description, listened)
                self.ports.append(port)
                log.info("kongish {role} listening on {address}", role=role, address=port.getHost())
        if self.owns_process:
            settle_heap()

    def _beat(self, storage: Any) -> Deferred[None]:
        """This node's row in the cluster's table of nodes (GET /clustering/nodes)."""
        assert self.node is not None
        row = NodeRow(self.node.node_id, socket.gethostname(), KONG_VERSION, self.node.database.version)
        return storage.heartbeat(row).addErrback(lambda failure: None)  # the follower says it is down

    def _failed_to_start(self, failure: Failure) -> None:
        """Say why in one line, keep the traceback for debug logs, and stop the reactor."""
        self.start_failure = failure
        log.critical("kongish could not start: {error}", error=str(failure.value))
        log.failure("kongish start failure", failure, level=LogLevel.debug)
        if self.reactor.running:
            self.reactor.stop()
        else:  # the failure came before the reactor ran (a bad plugins setting, say)
            self.reactor.callWhenRunning(self.reactor.stop)

    async def _stop(self) -> None:
        await self.ready  # a start in progress finishes first, so that its ports and store get closed
        if self.node is not None and self.node.lua_engine is not None:
            self.node.lua_engine.exiting()
        for port in self.ports:
            stopping = port.stopListening()
            if stopping is not None:  # IListeningPort may answer None for "stopped already"
                await stopping
        self.ports.clear()
        # as nginx's graceful quit, requests already read are answered first: both listeners
        # wind down together, within one deadline, before the store closes
        await gatherResults([*(factory.drain(DRAIN_TIMEOUT) for factory in self.proxy_factories),
                             *(admin.close(DRAIN_TIMEOUT) for admin in self.admin_factories)])
        self.proxy_factories.clear()
        self.admin_factories.clear()
        if self._watch is not None:
            self._watch.stop()
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self.client is not None:  # the plugin host's client, when the node has a host
            await self.client.close()
        if self.node is not None and self.node.database.storage is not None:
            await self.node.database.storage.close()
        if self.shared_dicts is not None:  # last: nothing runs Lua any more
            self.shared_dicts.close()
            self.shared_dicts = None

    def stopService(self) -> Deferred:
        if not self.running:
            return succeed(None)
        MultiService.stopService(self)
        return ensureDeferred(self._stop())
