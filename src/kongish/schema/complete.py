"""Turning Admin API input into a complete, valid entity (Kong's insert/update path)."""
from __future__ import annotations

from typing import Any

from kongish.errors import SchemaViolation
from kongish.schema.entities import EntitySchema, PluginLookup
from kongish.schema.fields import REQUIRED, Record


def complete(schema: EntitySchema, data: dict[str, Any], *, plugins: PluginLookup,
             partial_base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``data`` and return the full entity, every field present.

    Shorthands are expanded and defaults filled; ``id``, ``created_at`` and
    ``updated_at`` stay ``None`` unless given. With ``partial_base`` (PATCH)
    ``data`` is merged over the stored entity first, records key by key, and
    the whole result is validated. Raises ``SchemaViolation`` with all errors.
    """
    if not isinstance(data, dict):
        raise SchemaViolation({"@entity": ["expected a record"]})
    data = _expand_shorthands(schema, data)
    if partial_base is not None:
        below = schema.specialize(partial_base, plugins) or schema.record
        data = merge_values(below, data, partial_base)
    filled = (schema.specialize(data, plugins) or schema.record).fill_record(data)
    record = _validation_record(schema, filled, plugins)
    errors = record.errors(filled, updating=partial_base is not None)
    if errors:
        raise SchemaViolation(errors)
    return record.output(filled)


def _expand_shorthands(schema: EntitySchema, data: dict[str, Any]) -> dict[str, Any]:
    """Kong reports a bad shorthand value alone, before looking at anything else."""
    expanded = dict(data)
    for name, shorthand in schema.shorthands.items():
        value = expanded.pop(name, None)
        if value is None:
            continue
        error = shorthand.field.validate(value)
        if error is not None:
            raise SchemaViolation({name: error})
        expanded.update(shorthand.expand(value) or {})
    return expanded


def merge_values(record: Record, top: dict[str, Any], bottom: dict[str, Any]) -> dict[str, Any]:
    """Kong's ``merge_values``: ``top`` wins, records merge field by field, arrays are replaced."""
    merged = {**bottom, **top}
    for name, field in record.fields.items():
        value = top.get(name)
        if isinstance(field, Record) and not field.abstract and isinstance(value, dict):
            below = bottom.get(name)
            merged[name] = merge_values(field, value, below if isinstance(below, dict) else {})
    return merged


def _validation_record(schema: EntitySchema, filled: dict[str, Any], plugins: PluginLookup) -> Record:
    """The record to validate against; without a usable subschema key Kong stops right there."""
    if schema.subschema_key is None:
        return schema.record
    key = filled.get(schema.subschema_key)
    if key is None:
        raise SchemaViolation({schema.subschema_key: REQUIRED})
    record = schema.specialize(filled, plugins)
    if record is None:
        raise SchemaViolation({schema.subschema_key: schema.unknown_subschema(key)})
    return record
