"""Which plugins this node can run: the bundled ones plus third-party entry points."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import entry_points

import attrs
from zope.interface.verify import verifyObject

from kongish.plugins.interface import IPlugin, IPluginHost

#: Third-party plugins register, under this group, a factory that takes the node's
#: IPluginHost and returns an IPlugin.
ENTRY_POINT_GROUP = "kongish.plugins"


class UnknownPlugin(Exception):
    """The ``plugins`` setting names a plugin that is neither bundled nor installed."""


@attrs.frozen
class PluginRegistry:
    """The plugins enabled by the ``plugins`` setting, by name."""

    plugins: dict[str, IPlugin]

    @classmethod
    def build(cls, names: Iterable[str], bundled: Iterable[IPlugin], host: IPluginHost,
              load_entry_point: Callable[[str, IPluginHost], IPlugin | None] | None = None,
              ) -> PluginRegistry:
        """Expand ``bundled``, drop everything for ``off``, and find other names by entry
        point, giving each factory found the ``host``."""
        bundled_by_name = {plugin.name: plugin for plugin in bundled}
        load = load_entry_point or _load_entry_point
        enabled: dict[str, IPlugin] = {}
        for name in names:
            if name == "off":
                return cls(plugins={})
            if name == "bundled":
                enabled.update(bundled_by_name)
                continue
            plugin = bundled_by_name.get(name) or load(name, host)
            if plugin is None:
                raise UnknownPlugin(f"plugin '{name}' is enabled but not installed")
            verifyObject(IPlugin, plugin)
            enabled[name] = plugin
        return cls(plugins=enabled)

    @property
    def comma_escaped_fields(self) -> frozenset[str]:
        """Every enabled plugin's ``comma_escaped_fields``, for the Admin API's form reader."""
        return frozenset().union(*(plugin.comma_escaped_fields for plugin in self.plugins.values()))

    def lookup(self, name: str) -> IPlugin | None:
        return self.plugins.get(name)

    def __iter__(self):
        return iter(self.plugins.values())


def _load_entry_point(name: str, host: IPluginHost) -> IPlugin | None:
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        plugin: IPlugin = entry.load()(host)
        return plugin
    return None
