"""Node information endpoints: ``/``, ``/status``, ``/endpoints``, ``/plugins/enabled``, schemas."""
from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from kongish import KONG_VERSION
from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.admin.entities import entity_input
from kongish.db.storage import IWatchedStorage
from kongish.schema import ENTITIES, complete, schema_json
from kongish.schema.lua import tonumber

if TYPE_CHECKING:
    from kongish.node import Node

_LUA_VERSION = "LuaJIT 2.1"


async def root(call: AdminCall) -> tuple[int, Any]:
    node = call.node
    return 200, {
        "tagline": "Welcome to kong",
        "version": KONG_VERSION,
        "edition": "community",
        "hostname": socket.gethostname(),
        "node_id": node.node_id,
        "lua_version": _LUA_VERSION,
        "timers": {"running": 0, "pending": len(node.reactor.getDelayedCalls())},
        "plugins": {
            "available_on_server": {p.name: {"version": p.version, "priority": p.priority}
                                    for p in node.registry},
            "enabled_in_cluster": sorted({p["name"] for p in node.database.tables["plugins"].values()}),
        },
        "configuration": node.settings.public_view(),
        "pids": {"master": os.getpid(),
                 "workers": node.workers.pids if node.workers is not None else [os.getpid()]},
    }


#: The most digits C's printf (and so Lua's string.format) accepts as a precision.
_MAX_SCALE = 99


def bytes_to_str(size: int, unit: str, scale: float) -> str:
    """Kong's ``utils.bytes_to_str``: ``b`` gives the plain count, ``k``/``m``/``g`` a scaled one."""
    lowered = unit.lower()
    if lowered in ("", "b"):
        return "%d" % size
    if scale < 0:
        raise ValueError("scale must be equal or greater than 0")
    if scale > _MAX_SCALE:
        raise ValueError(f"scale must be at most {_MAX_SCALE}")
    scale = int(scale)
    for letter, name, power in (("k", "KiB", 10), ("m", "MiB", 20), ("g", "GiB", 30)):
        if lowered == letter:
            return f"{size / 2 ** power:.{scale}f} {name}"
    raise ValueError(f"invalid unit '{unit}' (expected 'k/K', 'm/M', or 'g/G')")


async def status(call: AdminCall) -> tuple[int, Any]:
    node = call.node
    unit = call.query.get("unit", "m")
    scale = tonumber(call.query.get("scale", ""))
    if scale is None or scale != scale:  # Kong ignores a scale that is not a number
        scale = 2
    reports = await _reports(node)
    try:
        vms = [{"pid": report["pid"], "http_allocated_gc": bytes_to_str(report["lua_memory"], unit, scale)}
               for report in reports]
    except ValueError as error:
        return 400, {"message": str(error)}
    server = node.counters.as_json()
    if node.workers is not None:  # the master's own connections (the Admin API's) and its workers'
        for report in reports:
            for name, count in report["server"].items():
                server[name] += count
    body: dict[str, Any] = {
        "memory": {"workers_lua_vms": vms, "lua_shared_dicts": {}},
        "server": server,
    }
    if node.workers is not None:
        body["workers"] = [{"id": report["worker"], "pid": report["pid"], "rss": report["rss"],
                            "configuration_version": report["configuration_version"], **report["server"]}
                           for report in reports]
    if node.database.read_only:
        body["configuration_hash"] = node.configuration_hash
    else:
        body["database"] = {"reachable": True}
    return 200, body


async def _reports(node: Node) -> list[dict[str, Any]]:
    """What each process serving the proxy reports: the workers', or this process's own."""
    if node.workers is not None:
        return sorted(await node.workers.stats(), key=lambda report: report["worker"])
    return [{"pid": os.getpid(), "worker": 0, "lua_memory": node.lua_memory_used()}]


async def clustering_nodes(call: AdminCall) -> tuple[int, Any]:
    """Every node of the cluster, from the heartbeat row each keeps (``database = postgres``);
    a node with a store of its own lists only itself. Kong's control plane lists its data
    planes at ``/clustering/data-planes``; in a cluster on one database every node is both,
    so here they are nodes, with the same fields (a configuration version for the hash)."""
    node = call.node
    storage = node.database.storage
    if IWatchedStorage.providedBy(storage):
        nodes = await storage.nodes()
    else:
        nodes = [{"id": node.node_id, "hostname": socket.gethostname(), "version": KONG_VERSION,
                  "config_version": node.database.version, "last_seen": int(time.time())}]
    return 200, {"data": nodes, "next": None}


async def enabled_plugins(call: AdminCall) -> tuple[int, Any]:
    return 200, {"enabled_plugins": sorted(p.name for p in call.node.registry)}


async def entity_schema(call: AdminCall) -> tuple[int, Any]:
    schema = ENTITIES.get(call.params["name"])
    if schema is None:
        return 404, {"message": f"No entity named '{call.params['name']}'"}
    return 200, schema_json(schema)


async def plugin_schema(call: AdminCall) -> tuple[int, Any]:
    plugin = call.node.registry.lookup(call.params["name"])
    if plugin is None:
        return 404, {"message": f"No plugin named '{call.params['name']}'"}
    return 200, schema_json(plugin)


async def validate_entity(call: AdminCall) -> tuple[int, Any]:
    """Validate a body against an entity schema, without touching the database."""
    name = call.params.get("db_entity_name", "plugins")
    if name not in ENTITIES:
        return 404, {"message": f"No entity named '{name}'"}
    complete(ENTITIES[name], entity_input(call, name), plugins=call.plugins)
    return 200, {"message": "schema validation successful"}


def info_endpoints() -> list[Endpoint]:
    return [
        Endpoint("/", {"GET": root}),
        Endpoint("/status", {"GET": status}),
        Endpoint("/clustering/nodes", {"GET": clustering_nodes}),
        Endpoint("/plugins/enabled", {"GET": enabled_plugins}),
        Endpoint("/schemas/{name}", {"GET": entity_schema}),
        Endpoint("/schemas/plugins/{name}", {"GET": plugin_schema}),
        Endpoint("/schemas/{db_entity_name}/validate", {"POST": validate_entity}),
        Endpoint("/schemas/plugins/validate", {"POST": validate_entity}),
    ]


