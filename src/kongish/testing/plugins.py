"""Plugins that validate like real ones and run nothing, for Admin API, schema and storage tests."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from zope.interface import implementer

from kongish.plugins.interface import IPlugin, IPluginHandlers
from kongish.plugins.serverless.schema import CODE_FIELDS, serverless_config_schema
from kongish.schema import Record


@implementer(IPluginHandlers)
@attrs.frozen
class _NoHandlers:
    phases: frozenset[str] = frozenset()

    def run(self, phase: str, context: Any) -> None:
        """Never called: no phases."""

    def close(self) -> None:
        """Nothing to release."""


@implementer(IPlugin)
@attrs.frozen
class SchemaOnlyPlugin:
    """A plugin with a name, a config schema and an entity check, and no handlers."""

    name: str
    config_schema: Record
    consumer_scoped: bool = True
    comma_escaped_fields: frozenset[str] = frozenset()
    check_entity: Callable[[dict[str, Any]], dict[str, str]] = lambda entity: {}
    priority: int = 0
    version: str = "0.0.0"

    def configure(self, entity: dict[str, Any]) -> _NoHandlers:
        return _NoHandlers()


def serverless_schema_plugin(name: str, compile_check: Callable[[str], str | None] = lambda source: None,
                             ) -> SchemaOnlyPlugin:
    """``pre-function`` or ``post-function`` as validation sees it; ``compile_check(source)``
    stands in for LuaJIT's compiler (``None``, or its message)."""
    return SchemaOnlyPlugin(name, serverless_config_schema(compile_check, name), consumer_scoped=False,
                            comma_escaped_fields=CODE_FIELDS)

