"""Node information endpoints: ``/``, ``/status``, ``/endpoints``, ``/plugins/enabled``, schemas."""
from __future__ import annotations

import os
import resource
import socket
from typing import Any

from kongish import KONG_VERSION
from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.schema import ENTITIES, schema_json

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
        "pids": {"master": os.getpid(), "workers": [os.getpid()]},
    }


def _mebibytes(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MiB"


async def status(call: AdminCall) -> tuple[int, Any]:
    node = call.node
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    body: dict[str, Any] = {
        "memory": {
            "workers_lua_vms": [{"pid": os.getpid(), "http_allocated_gc": _mebibytes(node.lua_memory_used())}],
            "lua_shared_dicts": {},
            "process_max_rss": _mebibytes(max_rss_kib * 1024),
        },
        "server": node.counters.as_json(),
    }
    if node.database.read_only:
        body["configuration_hash"] = node.configuration_hash
    else:
        body["database"] = {"reachable": True}
    return 200, body


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


def info_endpoints() -> list[Endpoint]:
    return [
        Endpoint("/", {"GET": root}),
        Endpoint("/status", {"GET": status}),
        Endpoint("/plugins/enabled", {"GET": enabled_plugins}),
        Endpoint("/schemas/{name}", {"GET": entity_schema}),
        Endpoint("/schemas/plugins/{name}", {"GET": plugin_schema}),
    ]


