"""Schemas as ``GET /schemas/{entity}`` and ``GET /schemas/plugins/{name}`` show them."""
from __future__ import annotations

from typing import Any

from kongish.schema.entities import EntitySchema
from kongish.schema.fields import Record


def schema_json(target: Any) -> dict[str, Any]:
    """Describe an ``EntitySchema``, or a plugin (anything with a ``config_schema``)."""
    if isinstance(target, EntitySchema):
        described = target.record.describe()
        del described["type"]
        return described
    config: Record = target.config_schema
    described = {"fields": [{"config": {**config.describe(), "required": True}}]}
    if config.entity_checks:
        described["entity_checks"] = [check.describe() for check in config.entity_checks]
    return described
