"""The ``config`` schema of the pre-function and post-function plugins.

Kong 3.x accepts ``certificate``, ``rewrite``, ``access``, ``header_filter``,
``body_filter`` and ``log``: arrays of Lua sources, each compiled (never run)
when the plugin is saved.

Kong 0.14 to 2.x also had ``functions`` (run in the access phase, exclusive
with ``access``), and older clients still send it. kongish accepts it as a
legacy field: the Admin API returns the Kong 3.x shape, with ``functions``
added only when it was given non-empty, so a 3.x client never sees it and a
0.14-era client reads back what it stored. The runtime treats ``functions``
as access-phase code.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kongish.schema import Array, AtLeastOneOf, MutuallyExclusiveSets, Record, String
from kongish.schema.rules import custom

#: The phases a serverless function can run in, in Kong's field order.
PHASES = ("certificate", "rewrite", "access", "header_filter", "body_filter", "log")
#: The config fields that hold Lua code.
CODE_FIELDS = frozenset({"functions", *PHASES})


def serverless_config_schema(compile_check: Callable[[str], str | None], plugin_name: str) -> Record:
    """``compile_check(source)`` returns ``None`` or the Lua compiler's message."""
    def compile_error(source: str) -> str | None:
        error = compile_check(source)
        return None if error is None else f"error parsing {plugin_name}: {error}"

    def phase(**options: Any) -> Array:
        return Array(elements=String(rules=(custom(compile_error),)), required=True, default=[],
                     **options)

    return Record(
        fields={"functions": phase(legacy=True), **{name: phase() for name in PHASES}},
        entity_checks=(
            MutuallyExclusiveSets(("config.functions",), ("config.access",)),
            AtLeastOneOf(tuple(f"config.{name}" for name in PHASES), hidden=("config.functions",)),
        ))

