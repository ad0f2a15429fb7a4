"""Kong's ``untrusted_lua`` modes: which globals plugin code sees.

The environments themselves are built in ``sandbox.lua``; this module feeds it
the settings and loads kongish's Lua files, which ship as package data.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

from lupa.luajit21 import LuaRuntime

from kongish.lua.settings import LuaSettings

#: Kong's error when ``untrusted_lua = off``, raised each time such code would run.
UNTRUSTED_LUA_OFF = ("loading of untrusted Lua code disabled because "
                     "'untrusted_lua' config option is set to 'off'")


def run_lua_file(lua: LuaRuntime, filename: str, *args: Any) -> Any:
    """Run one of kongish's Lua files with ``args`` as ``...``; return its results."""
    source = resources.files("kongish.lua").joinpath(filename).read_bytes()
    return lua.execute(source, *args, name=f"@kongish/lua/{filename}")


def environment_factory(lua: LuaRuntime, settings: LuaSettings, driver: Any) -> Any:
    """The Lua function returning a fresh global environment for one chunk.

    Call it after the PDK is installed: environments take ``kong`` and ``ngx``
    from the real globals. Not for ``untrusted_lua = off``, where nothing runs.
    """
    return run_lua_file(
        lua, "sandbox.lua", settings.untrusted_lua.encode(),
        lua.table_from([name.encode() for name in settings.sandbox_requires]),
        lua.table_from([name.encode() for name in settings.sandbox_environment]),
        driver)
