"""Kong's Serverless Functions: the pre-function and post-function plugins.

Both run user Lua code per phase; they differ only in priority, so
pre-function code runs first and post-function code last in every phase.
Each plugin entity's code is compiled once when the entity is configured
(a changed entity is configured afresh, which resets its upvalues).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from zope.interface import implementer

from kongish import KONG_VERSION
from kongish.lua.cost import FunctionId
from kongish.lua.engine import LuaEngine, LuaFunctions
from kongish.plugins.interface import IPlugin, IPluginHandlers
from kongish.plugins.serverless.schema import CODE_FIELDS, serverless_config_schema
from kongish.runloop.context import PHASES, RequestContext


@implementer(IPluginHandlers)
@attrs.define(eq=False)
class ServerlessHandlers:
    """One entity's compiled code, by phase."""

    engine: LuaEngine
    plugin_name: str
    #: The entity id, so kong.ctx.plugin is private to this instance.
    plugin_key: str
    functions: dict[str, LuaFunctions]
    #: Each phase's function ids, made once: the engine names every run by one.
    ids: dict[str, tuple[FunctionId, ...]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.ids = {phase: functions.function_ids(self.plugin_name, self.plugin_key, phase)
                    for phase, functions in self.functions.items()}

    @property
    def phases(self) -> frozenset[str]:
        return frozenset(self.functions)

    @classmethod
    def compile(cls, engine: LuaEngine, plugin_name: str, entity: dict[str, Any]) -> ServerlessHandlers:
        config = entity["config"]
        sources = {phase: list(config.get(phase) or ()) for phase in PHASES}
        # Kong 0.14-2.x's ``functions`` is access-phase code.
        sources["access"][:0] = config.get("functions") or ()
        return cls(engine, plugin_name, entity["id"],
                   {phase: engine.load(code) for phase, code in sources.items() if code})

    def run(self, phase: str, context: RequestContext) -> Deferred[None] | None:
        functions = self.functions.get(phase)
        if functions is None:  # closed: the entity changed while this request was in flight
            return None
        return self.engine.run_as(functions, self.ids[phase], context)

    def counted_functions(self) -> Iterator[FunctionId]:
        """Each function of each phase, as the engine names its runs (``kongish.metrics``
        keeps the counts of these, and of the timers they start)."""
        for ids in self.ids.values():
            yield from ids

    def close(self) -> None:
        self.functions, self.ids = {}, {}


@implementer(IPlugin)
@attrs.define(eq=False)
class ServerlessPlugin:
    name: str
    priority: int
    engine: LuaEngine
    version: str = KONG_VERSION
    config_schema: Any = attrs.field(init=False)
    #: Serverless code runs for every consumer.
    consumer_scoped: bool = False
    #: Commands written for Kong 0.14 carry ``\,`` in their code.
    comma_escaped_fields: frozenset[str] = CODE_FIELDS

    def __attrs_post_init__(self) -> None:
        self.config_schema = serverless_config_schema(self.engine.compile_check, self.name)

    def check_entity(self, entity: dict[str, Any]) -> dict[str, str]:
        return {}

    def configure(self, entity: dict[str, Any]) -> ServerlessHandlers:
        return ServerlessHandlers.compile(self.engine, self.name, entity)


def serverless_plugins(engine: LuaEngine) -> list[ServerlessPlugin]:
    """pre-function (Kong's PRIORITY 1000000) and post-function (-1000)."""
    return [ServerlessPlugin("pre-function", 1000000, engine),
            ServerlessPlugin("post-function", -1000, engine)]
