"""What the Lua engine needs to know from kong.conf.

The limits exist because many requests share one Lua VM inside the reactor
thread: one runaway function must cost its own request a 500, never stall or
exhaust the process.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from kongish.http.realip import TrustedNetworks
from kongish.settings import DEFAULTS, LUA_MAX_SETTINGS, UNTRUSTED_LUA_MODES, Settings


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _pairs(values: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    return tuple(values)


def _read_only(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@attrs.frozen
class WorkerIdentity:
    """A process's place among its node's workers: ``ngx.worker.id()`` and ``count()``."""

    id: int = attrs.field(validator=attrs.validators.ge(0))
    count: int = attrs.field(validator=attrs.validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if self.id >= self.count:
            raise ValueError(f"worker id {self.id} is not below the worker count {self.count}")


#: A node that serves in one process: worker 0 of 1, as ``nginx_worker_processes = 1``.
SINGLE_PROCESS = WorkerIdentity(0, 1)


@attrs.frozen
class OutboundLimits:
    """An outbound budget per request (or timer run), and the largest body one call reads:
    ``lua_outbound_calls``, ``lua_outbound_time``, ``lua_outbound_body_limit``."""

    calls: int = 10
    seconds: float = 30.0
    body_limit: int = 8 * 1024 * 1024


@attrs.frozen
class TimerLimits:
    """nginx's ``lua_max_running_timers`` and ``lua_max_pending_timers``, with Kong's values."""

    running: int = 4096
    pending: int = 16384


@attrs.frozen
class LuaSettings:
    #: Kong's ``untrusted_lua``: ``sandbox`` (default), ``on`` (full globals) or ``off``.
    untrusted_lua: str = attrs.field(default="sandbox",
                                     validator=attrs.validators.in_(UNTRUSTED_LUA_MODES))
    #: Kong's ``untrusted_lua_sandbox_requires``: modules sandboxed code may ``require``.
    sandbox_requires: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    #: Kong's ``untrusted_lua_sandbox_environment``: dotted global names exposed read-only.
    sandbox_environment: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    #: VM instructions one plugin's code may execute in one phase of one request.
    instruction_limit: int = attrs.field(default=10_000_000, validator=attrs.validators.gt(0))
    #: CPU seconds one plugin's code may use in one phase of one request; this also
    #: bounds loops whose time goes to C functions (``("x"):rep(1e6)``), which the
    #: instruction count barely sees.
    time_limit: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: Bytes the whole Lua VM may allocate.
    memory_limit: int = attrs.field(default=256 * 1024 * 1024, validator=attrs.validators.gt(0))
    #: nginx's ``client_body_buffer_size``: a larger request body is not in memory to
    #: ``kong.request.get_raw_body`` and ``ngx.req.get_body_data``, as in Kong.
    body_buffer_size: int = attrs.field(default=8192, validator=attrs.validators.ge(0))
    #: The ``kong.configuration`` view, secrets already masked.
    configuration: Mapping[str, Any] = attrs.field(factory=dict, converter=_read_only)
    #: ``trusted_ips``, for the PDK's forwarded-header readers.
    trusted_ips: TrustedNetworks = attrs.field(factory=lambda: TrustedNetworks.parse(None))
    #: ``lua_max_req_headers`` ... ``lua_max_post_args``: what the PDK's readers return when
    #: not told a maximum.
    reader_limits: Mapping[str, int] = attrs.field(
        factory=lambda: {name: int(DEFAULTS[name]) for name in LUA_MAX_SETTINGS}, converter=_read_only)
    #: Which worker of how many this VM's process is.
    worker: WorkerIdentity = SINGLE_PROCESS
    #: ``ngx.shared`` dicts declared (``nginx_http_lua_shared_dict``): name and size of each.
    shared_dicts: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=_pairs)
    #: The node's ``SharedDictZone`` directory (its master's, or its service's), whose dicts
    #: the VM uses; None: the VM makes a zone of its own for ``shared_dicts``.
    shared_dict_path: str | None = None
    outbound: OutboundLimits = OutboundLimits()
    timers: TimerLimits = TimerLimits()

    @classmethod
    def from_settings(cls, settings: Settings) -> LuaSettings:
        return cls(
            untrusted_lua=settings.untrusted_lua,
            sandbox_requires=settings.untrusted_lua_sandbox_requires,
            sandbox_environment=settings.untrusted_lua_sandbox_environment,
            instruction_limit=settings.lua_instruction_limit,
            memory_limit=settings.lua_memory_limit,
            body_buffer_size=settings.client_body_buffer_size,
            time_limit=settings.lua_time_limit,
            configuration=settings.public_view(),
            trusted_ips=settings.trusted_ips,
            reader_limits=settings.lua_max,
            outbound=OutboundLimits(settings.lua_outbound_calls, settings.lua_outbound_time,
                                    settings.lua_outbound_body_limit),
            timers=TimerLimits(settings.lua_max_running_timers, settings.lua_max_pending_timers),
            shared_dicts=settings.lua_shared_dicts,
        )
