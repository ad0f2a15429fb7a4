"""``POST /config?flatten_errors=1``: a declarative document's errors as one list, an entry
per bad entity, as Kong's ``errors:declarative_config_flattened`` builds it.

Errors of nested entities (a service's routes, a route's plugins) are lifted to the top
level with their parent's key filled in; nested record errors become dotted field
names. What cannot be tied to an entity stays in ``fields``.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from kongish.db.declarative_flatten import as_json
from kongish.schema import ENTITIES
from kongish.schema.rules import is_kong_uuid


def _relationships() -> dict[str, list[tuple[str, str, str]]]:
    """For each entity type, ``(field, entity, reference)`` for its own foreign keys and for
    the foreign keys of other types that point at it (the children it can nest)."""
    found: dict[str, list[tuple[str, str, str]]] = {name: [] for name in ENTITIES}
    for entity_type, schema in ENTITIES.items():
        for field, reference in schema.foreign.items():
            found[entity_type].append((field, entity_type, reference))
            found[reference].append((field, entity_type, reference))
    return found


_RELATIONSHIPS = _relationships()


def flatten_errors(document: dict[str, Any],
                   fields: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The flattened errors, and what is left of ``fields`` (Kong's ``err_t``, as JSON)."""
    document = copy.deepcopy(document)
    flattened: list[dict[str, Any]] = []
    left: dict[str, Any] = {}
    for entity_type, section_errors in sorted(fields.items()):
        entities = document.get(entity_type)
        if not isinstance(section_errors, (dict, list)) or not isinstance(entities, list):
            left[entity_type] = section_errors
            continue
        kept: dict[Any, Any] = {}
        for position, errors in _entries(section_errors):
            index = position - 1 if isinstance(position, int) else None
            if index is not None and 0 <= index < len(entities) and isinstance(entities[index], dict):
                _add_entity_errors(entity_type, entities[index], errors, flattened)
            else:
                kept[position] = errors
        if kept:
            left[entity_type] = as_json(kept)
    return flattened, left


def _entries(errors: dict[Any, Any] | list[Any]) -> Iterator[tuple[Any, Any]]:
    """Key and value of each error, sorted; a list's keys are 1-based positions, as in Lua."""
    if isinstance(errors, list):
        yield from ((position, value) for position, value in enumerate(errors, 1) if value is not None)
    else:
        yield from sorted(errors.items(), key=_lua_order)


def _lua_order(item: tuple[Any, Any]) -> tuple[bool, Any]:
    """Numbers in numeric order, names in byte order, as Lua's ``table.sort`` of keys."""
    return isinstance(item[0], str), item[0]


def _add_entity_errors(entity_type: str, entity: dict[str, Any], errors: Any,
                       flattened: list[dict[str, Any]]) -> None:
    if isinstance(errors, str):
        errors = {"@entity": errors}
    elif isinstance(errors, list):
        errors = dict(_entries(errors))
    elif not isinstance(errors, dict) or not errors:
        return
    errors = dict(errors)
    key = _primary_key(entity)
    for field, owner, reference in _RELATIONSHIPS.get(entity_type, ()):
        if owner == entity_type:  # the entity's own foreign key, given as a whole entity
            value = entity.get(field)
            if isinstance(value, dict):
                entity[field] = _primary_key(value)
                _add_entity_errors(reference, value, errors.pop(field, None), flattened)
        else:  # children nested under the entity, each getting the entity's key
            children = entity.get(owner)
            if isinstance(children, list):
                del entity[owner]
                child_errors = errors.pop(owner, None)
                if child_errors is None:
                    continue
                by_position = dict(_entries(child_errors)) if isinstance(child_errors, (list, dict)) else {}
                for position, child in enumerate(children, 1):
                    if isinstance(child, dict):
                        if child.get(field) is None:
                            child[field] = key
                        _add_entity_errors(owner, child, by_position.get(position), flattened)
    if not errors:
        return
    entry: dict[str, Any] = {}
    name, entity_id, tags = entity.get("name"), entity.get("id"), entity.get("tags")
    if isinstance(name, str) and name:
        entry["entity_name"] = name
    if isinstance(entity_id, str) and is_kong_uuid(entity_id):
        entry["entity_id"] = entity_id
    if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
        entry["entity_tags"] = tags
    entry["entity_type"] = entity_type[:-1] if entity_type.endswith("s") else entity_type
    entry["entity"] = entity
    entry["errors"] = list(_categorize(errors, ""))
    flattened.append(entry)


def _primary_key(entity: dict[str, Any]) -> dict[str, str] | None:
    entity_id = entity.get("id")
    return {"id": entity_id} if isinstance(entity_id, str) and is_kong_uuid(entity_id) else None


def _categorize(errors: dict[Any, Any], namespace: str) -> Iterator[dict[str, Any]]:
    for field, error in sorted(errors.items(), key=_lua_order):
        name = f"{namespace}.{field}" if namespace else str(field)
        if field == "@entity":
            for message in error if isinstance(error, list) else [error]:
                yield {"type": "entity", "message": message}
        elif isinstance(error, str):
            yield {"type": "field", "field": name, "message": error}
        elif isinstance(error, (dict, list)):
            yield from _categorize(dict(_entries(error)), name)
