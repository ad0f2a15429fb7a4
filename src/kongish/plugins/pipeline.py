"""The plugin pipeline: which configured plugins apply to a request, and running a phase.

A ``PluginMap`` is an immutable snapshot built on every configuration change,
so requests never read the database. Phases run through Deferreds: a handler
that returns a Deferred makes the next one wait, one that returns ``None``
keeps the common path free of Deferred allocations.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from kongish.plugins.interface import IPlugin, IPluginHandlers
from kongish.runloop.context import PHASES, RequestContext


@attrs.frozen
class ConfiguredPlugin:
    """One enabled plugin entity, ready to run."""

    plugin: IPlugin
    entity: dict[str, Any]
    handlers: IPluginHandlers

    @property
    def scope(self) -> tuple[str | None, str | None]:
        """(route id, service id) this instance is tied to; (None, None) is global."""
        return (_ref_id(self.entity.get("route")), _ref_id(self.entity.get("service")))


def _ref_id(reference: dict[str, Any] | None) -> str | None:
    return reference["id"] if reference else None


@attrs.define(eq=False)
class PluginMap:
    """The plugins that apply to each (route, service), in priority order.

    Kong's precedence for one plugin name, most specific first: route+service,
    route, service, global. Consumer-scoped instances need an identified
    consumer; kongish has no authentication plugins yet, so they never apply.
    """

    configured: Sequence[ConfiguredPlugin]
    _names: list[str] = attrs.field(init=False)
    _index: dict[tuple[str, str | None, str | None], ConfiguredPlugin] = attrs.field(init=False)
    _resolved: dict[tuple[str | None, str | None], PluginChain] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._names = sorted({c.plugin.name for c in self.configured})
        self._index = {(c.plugin.name, *c.scope): c for c in self.configured
                       if c.entity.get("consumer") is None}

    def for_request(self, route_id: str | None, service_id: str | None) -> PluginChain:
        """The plugins for a request matched to this route and service (None: not routed)."""
        key = (route_id, service_id)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = PluginChain.of(self._resolve(route_id, service_id))
        return found

    def _resolve(self, route_id: str | None, service_id: str | None) -> tuple[ConfiguredPlugin, ...]:
        scopes = [(route_id, service_id), (route_id, None), (None, service_id), (None, None)]
        chosen = []
        for name in self._names:
            for route, service in scopes:
                configured = self._index.get((name, route, service))
                if configured is not None:
                    chosen.append(configured)
                    break
        chosen.sort(key=lambda c: -c.plugin.priority)
        return tuple(chosen)

    def close(self) -> None:
        """Release every instance's resources (compiled Lua code and the like)."""
        for configured in self.configured:
            configured.handlers.close()


def build_plugin_map(entities: Iterable[dict[str, Any]], lookup: Callable[[str], IPlugin | None],
                     previous: PluginMap | None = None) -> PluginMap:
    """Configure enabled plugin entities, reusing instances whose entity did not change."""
    reusable = {c.entity["id"]: c for c in (previous.configured if previous else ())}
    configured = []
    for entity in entities:
        if not entity.get("enabled", True):
            continue
        plugin = lookup(entity["name"])
        if plugin is None:
            continue
        old = reusable.get(entity["id"])
        if old is not None and old.entity == entity:
            configured.append(reusable.pop(entity["id"]))
        else:
            configured.append(ConfiguredPlugin(plugin, entity, plugin.configure(entity)))
    for stale in reusable.values():
        stale.handlers.close()
    return PluginMap(configured)


@attrs.frozen
class PluginChain:
    """The plugins that apply to one request, in priority order, and each phase's share of them.

    Phases no plugin handles cost a request nothing beyond a lookup.
    """

    plugins: tuple[ConfiguredPlugin, ...]
    by_phase: dict[str, tuple[ConfiguredPlugin, ...]]

    @classmethod
    def of(cls, plugins: tuple[ConfiguredPlugin, ...]) -> PluginChain:
        return cls(plugins, {phase: tuple(c for c in plugins if phase in c.handlers.phases)
                             for phase in PHASES})

    def handles(self, phase: str) -> bool:
        return bool(self.by_phase[phase])

    def run(self, phase: str, context: RequestContext, *, stop_on_exit: bool = False) -> Deferred | None:
        """Run ``phase`` of each plugin in order, waiting on any Deferred a handler returns.

        With ``stop_on_exit`` (access, rewrite), a plugin that ends the request
        skips the remaining handlers of the phase.
        """
        context.phase = phase
        handlers = self.by_phase[phase]
        return _run_handlers(phase, handlers, context, stop_on_exit) if handlers else None


def _run_handlers(phase: str, plugins: Sequence[ConfiguredPlugin], context: RequestContext,
                  stop_on_exit: bool) -> Deferred | None:
    for index, configured in enumerate(plugins):
        if stop_on_exit and context.response.exited:
            return None
        result = configured.handlers.run(phase, context)
        if result is not None:  # a Deferred (an isinstance check on Deferred costs an ABC lookup)
            rest = plugins[index + 1:]
            # The loop returns here, so the lambda's late binding of ``rest`` sees this value.
            return result.addCallback(
                lambda _: _run_handlers(phase, rest, context, stop_on_exit))  # noqa: B023
    return None
