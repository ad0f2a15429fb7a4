"""Schemas as ``GET /schemas/{entity}`` and ``GET /schemas/plugins/{name}`` show them."""
from __future__ import annotations

from typing import Any

from kongish.schema.entities import PLUGINS, EntitySchema
from kongish.schema.fields import Record


def schema_json(target: Any) -> dict[str, Any]:
    """Describe an ``EntitySchema``, or a plugin as Kong shows its sub-schema: the plugin-entity
    fields it narrows (``consumer`` for a plugin that refuses one), ``protocols`` and ``config``."""
    if isinstance(target, EntitySchema):
        entity = target.record.describe()
        del entity["type"]
        return entity
    config: Record = target.config_schema
    fields: list[dict[str, Any]] = []
    if not target.consumer_scoped:
        fields.append({"consumer": {"type": "foreign", "reference": "consumers", "eq": None}})
    fields.append({"protocols": PLUGINS.record.fields["protocols"].describe()})
    fields.append({"config": {**config.describe(), "required": True}})
    described: dict[str, Any] = {"fields": fields}
    if config.entity_checks:
        described["entity_checks"] = [check.describe() for check in config.entity_checks]
    return described
