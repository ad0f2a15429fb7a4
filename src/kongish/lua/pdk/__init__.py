"""Install the Lua PDK (``ngx``, ``kong``, ``cjson``) into a LuaJIT runtime.

Most of the PDK is Lua, in this package: ``ngx.lua``, ``ngx_re.lua``, ``cjson.lua``,
``support.lua`` (what they share), and ``kong/`` with one file per ``kong.*``
namespace, as Kong's ``kong/pdk/`` has. The Lua closes over a small table of
Python primitives (:mod:`~kongish.lua.pdk.primitives`, :mod:`~kongish.lua.pdk.codec`,
:mod:`~kongish.lua.pdk.regex`) held in upvalues,
never in globals, so sandboxed code cannot reach a Python object.  Values
cross the boundary as Lua strings (Python ``bytes``), numbers, booleans and
Lua tables only.

The runtime should be created with ``encoding=None`` so that Lua strings
reach Python as bytes: with a text encoding, binary strings (``ngx.md5_bin``
output, gzip chunks in ``ngx.arg[1]``) cannot be passed back to Python.
"""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lupa.luajit21 import LuaRuntime
from twisted.internet.interfaces import IReactorTime

from kongish import KONG_VERSION
from kongish.http.interfaces import IUpstreamClient
from kongish.lua.current import CurrentRequest
from kongish.lua.memory import MemoryCap
from kongish.lua.pdk import codec
from kongish.lua.pdk.outbound import OutboundHttp
from kongish.lua.pdk.primitives import RequestPrimitives
from kongish.lua.pdk.regex import lua_search
from kongish.lua.sandbox import run_lua_file
from kongish.lua.shared_dict import SharedDict, SharedDictZone, lua_primitives
from kongish.node_id import new_node_id
from kongish.runloop.context import DRY_RUN_SLOT

if TYPE_CHECKING:
    from kongish.lua.settings import LuaSettings
    from kongish.lua.timers import LuaTimers

_CODECS: dict[bytes, Callable[..., Any]] = {
    b"md5": codec.md5_hex, b"md5_bin": codec.md5_bin, b"sha1_bin": codec.sha1_bin,
    b"hmac_sha1": codec.hmac_sha1, b"crc32": codec.crc32,
    b"encode_base64": codec.encode_base64, b"decode_base64": codec.decode_base64,
    b"parse_http_time": codec.parse_http_time,
}


#: Primitives whose work grows with their input, charged to the CPU budget call by call.
_CHARGED = (*_CODECS, b"re_search", b"multipart",
            b"shdict_get_keys", b"shdict_flush_all", b"shdict_flush_expired")

#: Primitives whose results are never more than a few bytes (booleans, numbers, None, a
#: Deferred), so that they need no check against the room left in the VM (``MemoryCap.bounded``).
_SMALL_RESULTS = frozenset({b"change_header", b"emit", b"exit", b"write", b"log", b"now", b"is_trusted"})

#: kong.cache's entry cap; it also keeps to a quarter of the VM's memory cap in
#: keys and string values, so a plugin caching per-request keys cannot fill the VM.
CACHE_ENTRIES = 100_000


def _version_number(version: str) -> int:
    """Kong's ``version_num``: 3.9.0 is 3009000."""
    major, minor, patch = (int(part) for part in version.split(".")[:3])
    return major * 1000000 + minor * 1000 + patch


def _configuration_json(configuration: Mapping[str, Any]) -> bytes:
    """kong.configuration's data: unset values read as nil, ``plugins`` is a list."""
    data = {key: value for key, value in configuration.items() if value is not None}
    plugins = data.get("plugins", "bundled")
    if isinstance(plugins, str):
        plugins = [name.strip() for name in plugins.split(",") if name.strip()]
    data["plugins"] = list(plugins)
    return json.dumps(data, default=str).encode()


def _run(lua: LuaRuntime, filename: str, *args: Any) -> Any:
    return run_lua_file(lua, f"pdk/{filename}", *args)


def _kong(lua: LuaRuntime, primitives: Any, support: Any, ngx: Any, cjson: Any, stop_fn: Any,
          info: Any, cache: Any) -> Any:
    """The ``kong`` table: each namespace from its own file, given what it uses."""
    private = _run(lua, "kong/private.lua", primitives, support, info)
    return lua.table_from({
        b"version": info[b"version"], b"version_num": info[b"version_num"],
        b"request": _run(lua, "kong/request.lua", primitives, support, private, ngx, cjson, info),
        b"response": _run(lua, "kong/response.lua", primitives, support, private, ngx, cjson, stop_fn),
        b"service": _run(lua, "kong/service.lua", primitives, support, private, cjson),
        b"client": _run(lua, "kong/client.lua", primitives),
        b"router": _run(lua, "kong/router.lua", primitives, cjson),
        b"ip": _run(lua, "kong/ip.lua", primitives),
        b"node": _run(lua, "kong/node.lua", info),
        b"plugin": _run(lua, "kong/plugin.lua", primitives),
        b"nginx": _run(lua, "kong/nginx.lua"),
        b"table": _run(lua, "kong/table.lua"),
        b"log": _run(lua, "kong/log.lua", primitives, ngx),
        b"ctx": _run(lua, "kong/ctx.lua", primitives, support),
        b"cache": cache,
        b"configuration": _run(lua, "kong/configuration.lua", info),
    })


#: What a dry run's write to a live ``ngx.shared`` dict answers.
SHARED_DICT_REFUSED = "ngx.shared writes are refused in a dry run"


def _dry_run_refusal(current: CurrentRequest) -> str | None:
    context = current.context
    return SHARED_DICT_REFUSED if context is not None and DRY_RUN_SLOT in context.slots else None


def _shared_dicts(settings: LuaSettings, reactor: IReactorTime) -> list[SharedDict]:
    """``ngx.shared``'s dicts: the node's zone when it has one (a master's, a service's), else
    a zone of this VM's own for the dicts its settings declare."""
    if settings.shared_dict_path is not None:
        zone = SharedDictZone.attach(settings.shared_dict_path)
    elif settings.shared_dicts:
        zone = SharedDictZone.create(settings.shared_dicts, register=False)
    else:
        return []
    return zone.dicts(reactor.seconds)


def install_pdk(lua: LuaRuntime, current: CurrentRequest, settings: LuaSettings,
                await_fn: Any, stop_fn: Any, exceed_fn: Any, phase_fn: Any, *,
                memory: MemoryCap, guard_primitives: Any,
                reactor: IReactorTime, node_id: str | None = None,
                outbound: IUpstreamClient | None = None, timers: LuaTimers | None = None) -> Any:
    """Set the globals ``ngx`` and ``kong`` and offer cjson to the sandbox's ``require``.

    ``await_fn(pyfunc, ...)`` (Lua) yields to the engine until the Deferred
    ``pyfunc(...)`` returns has fired; ``stop_fn()`` (Lua) ends the running
    phase handler; ``exceed_fn(message)`` (Lua) ends the running code as over
    its budget; ``phase_fn()`` answers the running request's phase;
    ``guard_primitives(table, charged)`` (Lua) makes each Python primitive refuse to
    run over the memory limit and charges the ``charged`` ones' time, and ``memory``
    refuses results the VM has no room for. The cjson modules go into the global
    table ``__kongish_modules`` (``cjson`` and ``cjson.safe``).
    Returns ``purge()``, which empties kong.cache: what the engine drops last when
    the VM stays over its memory limit. ``outbound`` is the client ``resty.http`` calls
    out through (None: every call fails), ``timers`` what ``ngx.timer`` schedules on.
    """
    configuration = settings.configuration
    request = RequestPrimitives(lua, current, reactor,
                                settings.trusted_ips,
                                output_limit=settings.memory_limit, reserve=memory.reserve,
                                body_buffer_size=settings.body_buffer_size)
    shared_dicts = _shared_dicts(settings, reactor)
    python_primitives: dict[bytes, Callable[..., Any]] = {
        **request.exports(), **_CODECS, b"re_search": lua_search(lua, current, memory.reserve),
        **OutboundHttp(lua, current, reactor, outbound, settings.outbound).exports(),
        **(timers.exports() if timers is not None else {}),
        **lua_primitives(shared_dicts, lua.table_from, memory.reserve, lambda: _dry_run_refusal(current))}
    primitives = guard_primitives(lua.table_from(
        {b"phase": phase_fn, **{name: function if name in _SMALL_RESULTS else memory.bounded(function)
                                for name, function in python_primitives.items()}}),
        lua.table_from({name: True for name in _CHARGED}))
    cjson, cjson_safe = _run(lua, "cjson.lua")()
    info = lua.table_from({
        b"pid": os.getpid(),
        b"worker_id": settings.worker.id,
        b"worker_count": settings.worker.count,
        b"prefix": str(configuration.get("prefix", "/usr/local/kong")).rstrip("/").encode() + b"/",
        b"node_id": (node_id or new_node_id()).encode(),
        b"hostname": socket.gethostname().encode(),
        b"version": KONG_VERSION.encode(),
        b"version_num": _version_number(KONG_VERSION),
        b"cache_ttl": float(configuration.get("db_cache_ttl") or 0),
        b"cache_entries": CACHE_ENTRIES,
        b"cache_bytes": settings.memory_limit // 4,
        # what ngx.req.get_headers() and its kin read when not told a maximum
        **{name.removeprefix("lua_").encode(): limit for name, limit in settings.reader_limits.items()},
        b"configuration": cjson[b"decode"](_configuration_json(configuration)),
    })
    support = _run(lua, "support.lua", primitives, exceed_fn, settings.memory_limit,
                   f"Lua code exceeded the output limit of {settings.memory_limit} bytes".encode())
    ngx_re = _run(lua, "ngx_re.lua", primitives)
    ngx = _run(lua, "ngx.lua", primitives, support, cjson, ngx_re, await_fn, stop_fn, info)
    shared = _run(lua, "shared.lua", primitives, lua.table_from([d.name.encode() for d in shared_dicts]))
    lua.execute(b"local ngx, shared = ... rawset(ngx, 'shared', shared)", ngx, shared)
    cache = _run(lua, "kong/cache.lua", primitives, info)
    kong = _kong(lua, primitives, support, ngx, cjson, stop_fn, info, cache)
    resty_http = _run(lua, "resty_http.lua", primitives, await_fn, ngx)
    modules = lua.table_from({b"cjson": cjson, b"cjson.safe": cjson_safe, b"resty.http": resty_http})
    lua.execute(b"ngx, kong, __kongish_modules = ...", ngx, kong, modules)
    return lua.execute(b"local cache = ... return function() return cache:purge() end", cache)
