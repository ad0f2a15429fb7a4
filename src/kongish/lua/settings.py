"""What the Lua engine needs to know from kong.conf.

The limits exist because many requests share one Lua VM inside the reactor
thread: one runaway function must cost its own request a 500, never stall or
exhaust the process.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

UNTRUSTED_LUA_MODES = ("on", "off", "sandbox")


@attrs.frozen
class LuaSettings:
    #: Kong's ``untrusted_lua``: ``sandbox`` (default), ``on`` (full globals) or ``off``.
    untrusted_lua: str = attrs.field(default="sandbox",
                                     validator=attrs.validators.in_(UNTRUSTED_LUA_MODES))
    #: Kong's ``untrusted_lua_sandbox_requires``: modules sandboxed code may ``require``.
    sandbox_requires: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Kong's ``untrusted_lua_sandbox_environment``: dotted global names exposed read-only.
    sandbox_environment: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: VM instructions one plugin's code may execute in one phase of one request.
    instruction_limit: int = attrs.field(default=10_000_000, validator=attrs.validators.gt(0))
    #: CPU seconds one plugin's code may use in one phase of one request; this also
    #: bounds loops whose time goes to C functions (``("x"):rep(1e6)``), which the
    #: instruction count barely sees.
    time_limit: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: Bytes the whole Lua VM may allocate.
    memory_limit: int = attrs.field(default=256 * 1024 * 1024, validator=attrs.validators.gt(0))
    #: The ``kong.configuration`` view, secrets already masked.
    configuration: Mapping[str, Any] = attrs.field(factory=dict, converter=MappingProxyType)
