"""A kongish node: the database, the enabled plugins and the snapshots requests use.

The router and the plugin map are immutable snapshots rebuilt on every
configuration change (a database listener), so the proxy's hot path reads
two attributes and never the database. A change rebuilds only the snapshots it
touches, and the router only for the routes and services it touches (a service's
routes are compiled again only when it is enabled or disabled), so a write costs
what it changed, not what the configuration holds.

A plugin map's rebuild tells the node's function metrics which functions exist now
(``FunctionMetrics.follow``): the counts of a deleted or disabled plugin's functions,
and of an index its phase no longer has, are dropped. A worker's node rebuilds as it
catches up, so it drops them too; the master's Admin API sums its workers' counts of
the functions the master has (``merge_snapshots(live=)``).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime

from kongish.db.dao import Database
from kongish.db.storage import Change
from kongish.http.draining import Draining
from kongish.lua.cost import FunctionId
from kongish.metrics import FunctionMetrics, LiveFunctions, Snapshot
from kongish.node_id import new_node_id
from kongish.plugins.host import PluginHost
from kongish.plugins.pipeline import PluginMap, build_plugin_map
from kongish.plugins.registry import PluginRegistry
from kongish.router import Router
from kongish.router.compiled import RouteChanges
from kongish.router.router import CompiledRoutes
from kongish.runloop.headers import KongHeaders
from kongish.runloop.output import OutputLedger
from kongish.settings import Settings

#: Kong's configuration_hash before any declarative configuration is loaded.
EMPTY_HASH = "0" * 32


class IWorkerReports(Protocol):
    """What a master's Admin API reads of its workers (``kongish.workers.supervisor``)."""

    @property
    def pids(self) -> list[int]: ...

    async def stats(self) -> list[dict[str, Any]]: ...

    async def metrics(self) -> list[Snapshot]: ...


@attrs.define
class Counters:
    """Connection and request counts for GET /status, as nginx's stub_status has them.

    ``listeners`` are the connection sets of this node's listeners (proxy and Admin
    API alike, as Kong's nginx counts both); each open connection tells its own state.
    """

    total_requests: int = 0
    listeners: list[Draining[Any]] = attrs.Factory(list)

    def as_json(self) -> dict[str, int]:
        states = {"reading": 0, "writing": 0, "waiting": 0}
        for listener in self.listeners:
            for connection in listener.open:
                states[connection.connection_state] += 1
        accepted = sum(listener.accepted for listener in self.listeners)
        return {"total_requests": self.total_requests,
                "connections_active": sum(states.values()),
                "connections_accepted": accepted,
                "connections_handled": accepted,
                "connections_reading": states["reading"],
                "connections_waiting": states["waiting"],
                "connections_writing": states["writing"]}


@attrs.define(eq=False)
class Node:
    settings: Settings
    database: Database
    registry: PluginRegistry
    reactor: IReactorTime
    lua_engine: Any = None
    node_id: str = attrs.Factory(new_node_id)
    configuration_hash: str = EMPTY_HASH
    counters: Counters = attrs.Factory(Counters)
    #: What the node lends its plugins (its HTTP client closes with the node).
    plugin_host: PluginHost | None = None
    router: Router = attrs.field(init=False)
    plugin_map: PluginMap = attrs.field(init=False)
    #: The ``headers`` setting as the writer of Kong's response headers.
    kong_headers: KongHeaders = attrs.field(init=False)
    #: The response output all of the node's requests hold for their clients (``lua_output_limit``).
    output: OutputLedger = attrs.field(init=False)
    #: The last router build's compiled routes: a write recompiles only what it changed.
    compiled_routes: CompiledRoutes = attrs.Factory(CompiledRoutes)
    #: Awaited after POST /config loaded a DB-less configuration, before it answers.
    configuration_followers: list[Callable[[], Awaitable[Any]]] = attrs.Factory(list)
    #: A master's workers, whose reports GET / and GET /status gather; None when the node
    #: serves in one process.
    workers: IWorkerReports | None = None
    #: This process's counts of its serverless functions' runs (GET /metrics), fed by its engine.
    metrics: FunctionMetrics = attrs.Factory(FunctionMetrics)

    def __attrs_post_init__(self) -> None:
        self.kong_headers = KongHeaders.enabled(self.settings.headers)
        self.output = OutputLedger(self.settings.lua_output_limit)
        self.plugin_map = PluginMap(())  # the "previous" map for the first rebuild
        self.database.listeners.append(self.rebuild)
        if self.lua_engine is not None:
            self.lua_engine.observers.append(self.metrics.observe)
        self.rebuild()

    def rebuild(self, changes: Sequence[Change] | None = None) -> None:
        """Fresh snapshots of what ``changes`` touched (None: of everything); the old ones
        serve requests in flight."""
        tables = self.database.tables
        touched = {change.entity_type for change in changes} if changes is not None else None
        if touched is None or {"routes", "services"} & touched:
            # a write that changed nothing the router reads (a service no route names) keeps it
            self.router = Router.build(tables["routes"].values(), tables["services"], self.compiled_routes,
                                       _route_changes(changes, tables["routes"]),
                                       previous=self.router if changes is not None else None)
        if touched is None or "plugins" in touched:
            self.plugin_map = build_plugin_map(tables["plugins"].values(), self.registry.lookup,
                                               previous=self.plugin_map)
            self.metrics.follow(LiveFunctions.of(_counted_functions(self.plugin_map)))

    def load_declarative(self, entities: dict[str, list[dict[str, Any]]], text_hash: str | None) -> None:
        self.database.replace_all(entities)
        self.configuration_hash = text_hash or EMPTY_HASH

    def lua_memory_used(self) -> int:
        return self.lua_engine.memory_used() if self.lua_engine is not None else 0


def _counted_functions(plugin_map: PluginMap) -> Iterator[FunctionId]:
    """The functions of ``plugin_map``'s plugins that the engine counts runs of: a plugin's
    handlers name theirs with ``counted_functions()`` (the serverless plugins do)."""
    for configured in plugin_map.configured:
        counted = getattr(configured.handlers, "counted_functions", None)
        if counted is not None:
            yield from counted()


def _route_changes(changes: Sequence[Change] | None,
                   routes: Mapping[str, dict[str, Any]]) -> RouteChanges | None:
    """The routes and services ``changes`` touched, for a router build that looks at them
    alone; None when it has to look at every route: a route was deleted and stored again
    (it moved to the table's end)."""
    if changes is None:
        return None
    touched: dict[str, None] = {}  # route ids, in the order the changes first name them
    services: set[str] = set()
    for change in changes:
        if change.entity_type == "services":
            services.add(change.entity_id)
        elif change.entity_type == "routes":
            if change.entity is None and change.entity_id in routes:
                return None
            touched[change.entity_id] = None
    return RouteChanges({route_id: routes.get(route_id) for route_id in touched}, len(routes),
                        frozenset(services))
