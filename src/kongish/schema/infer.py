"""Kong's schema-driven type inference for form and multipart bodies (reference 3.4)."""
from __future__ import annotations

from typing import Any

from kongish.schema.entities import EntitySchema, PluginLookup


def infer(schema: EntitySchema, args: Any, *, plugins: PluginLookup,
          plugin_name: str | None = None) -> Any:
    """Convert decoded form values to the types ``schema`` expects.

    ``""`` becomes null, numbers follow Lua's ``tonumber``, ``"true"``/``"false"``
    become booleans, scalars are wrapped for arrays and sets, and records, maps
    and foreign keys are walked. A plugin's ``config`` follows the plugin named
    by ``plugin_name`` (a PATCH names the stored plugin) or else by ``name``.
    Unknown keys and values that do not convert are left for validation to
    reject; nothing here raises.
    """
    if not isinstance(args, dict):
        return args
    selector = args
    if plugin_name is not None and schema.subschema_key is not None:
        selector = {**args, schema.subschema_key: plugin_name}
    record = schema.specialize(selector, plugins) or schema.record
    inferred = dict(args)
    for name, field in record.fields.items():
        if name in args:
            inferred[name] = field.infer(args[name])
    return inferred
