"""Turn a declarative document (nested, references by name) into flat, complete entities.

The steps, errors and generated ids follow Kong's ``declarative_config``
schema, so a kong.yml loads into the same entities, with the same ids, as in
Kong, and a broken one is rejected with the same ``fields``:

1. the document's shape: top-level keys, ``_format_version``, entity lists,
   nesting (a nested child gets its parent's foreign key filled in);
2. ids: missing ones are UUIDv5 of the endpoint key (or, for plugins, of the
   cache key), so they stay the same across reloads;
3. references: names, ids or ``{id: ...}`` resolved to ``{"id": ...}``, and
   endpoint keys and ids checked for duplicates;
4. each entity completed and validated by its schema.

Errors of steps 1 and 4 are reported together and win; reference errors come
only once the entities themselves are valid, as in Kong.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import attrs

from kongish.errors import InvalidDeclarative, SchemaViolation
from kongish.router.normalize import RESERVED, normalize_path, wire_bytes, wire_text
from kongish.schema import ENTITIES, Foreign, PluginLookup, complete

#: The entity types kongish stores, parents first.
ENTITY_TYPES = tuple(ENTITIES)

#: Foreign key fields of each entity type, and the type each one refers to.
FOREIGN_KEYS: dict[str, dict[str, str]] = {
    entity_type: {name: field.reference for name, field in schema.record.fields.items()
                  if isinstance(field, Foreign)}
    for entity_type, schema in ENTITIES.items()
}

#: Child lists an entity may contain, mapped to the foreign key they fill in on
#: the child: as in Kong, every foreign key allows nesting under its target.
NESTED: dict[str, dict[str, str]] = {
    parent: {child: key for child in ENTITY_TYPES
             for key, reference in FOREIGN_KEYS[child].items() if reference == parent}
    for parent in ENTITY_TYPES
}

#: Kong's plugin cache key, the source of plugins' deterministic ids.
PLUGIN_CACHE_KEY = ("name", "route", "service", "consumer")

#: Kong entity lists a kong.yml may hold that kongish does not implement.
UNSUPPORTED_ENTITY_TYPES = frozenset({
    "upstreams", "targets", "certificates", "ca_certificates", "snis", "vaults", "keys",
    "key_sets", "filter_chains", "consumer_groups", "keyauth_credentials",
    "basicauth_credentials", "hmacauth_credentials", "jwt_secrets", "acls",
    "oauth2_credentials", "oauth2_authorization_codes", "oauth2_tokens",
})

FORMAT_VERSIONS = ("1.1", "2.1", "3.0")

#: Namespace of namespaces for generated ids (Kong's ``_entities`` generator).
ID_NAMESPACE = uuid.UUID("fd02801f-0957-4a15-a55a-c8d9606f30b5")

_NOT_REGEX = re.compile(r"[a-zA-Z0-9.\-_~/%]*\Z")
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_REGEX_METACHARACTERS = frozenset(b".^-{}\\|")

_ABSENT = object()


def unsupported_message(entity_type: str) -> str:
    return (f"'{entity_type}' entities are not supported by kongish "
            f"(supported: {', '.join(ENTITY_TYPES)})")


@attrs.define
class _Item:
    """One entity of the document, with where it was found (for errors and parent keys)."""

    entity_type: str
    data: dict[str, Any]
    index: int  # 1-based, as Kong reports positions
    path: tuple[str | int, ...]
    parent: _Item | None
    parent_key: str | None  # the foreign key the parent fills in


class _Errors:
    """Errors collected as nested tables keyed like Kong's (1-based list positions)."""

    def __init__(self) -> None:
        self.tree: dict[Any, Any] = {}

    def add(self, path: tuple[str | int, ...], value: Any) -> None:
        self._node(path[:-1])[path[-1]] = value

    def merge(self, path: tuple[str | int, ...], fields: dict[str, Any]) -> None:
        self._node(path).update(fields)

    def append(self, path: tuple[str | int, ...], message: str) -> None:
        self._node(path[:-1]).setdefault(path[-1], []).append(message)

    def _node(self, path: tuple[str | int, ...]) -> dict[Any, Any]:
        node = self.tree
        for step in path:
            child = node.setdefault(step, {})
            if not isinstance(child, dict):
                return {}  # an enclosing entity is already reported as a whole
            node = child
        return node

    def raise_any(self) -> None:
        if self.tree:
            raise InvalidDeclarative(as_json(self.tree))


def as_json(node: Any) -> Any:
    """Render a table the way Kong's JSON encoder does: 1..n keys become an array."""
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(key, int) for key in node):
        return [as_json(node.get(position)) for position in range(1, max(node) + 1)]
    return {str(key): as_json(value) for key, value in node.items()}


def flatten(document: dict[str, Any], *, plugins: PluginLookup,
            now: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Return entity type -> complete entities for a parsed declarative document.

    ``now`` is the ``created_at``/``updated_at`` of every entity of this load.
    Raises ``InvalidDeclarative`` with all errors found.
    """
    errors = _Errors()
    if not isinstance(document, dict):
        errors.add(("error",), "expected an object")
        errors.raise_any()
    items = list(_read_document(document, errors))
    for item in items:
        _assign_id(item)
    reference_errors = _Errors()
    _resolve_references(items, reference_errors)
    entities = _validate(items, errors, plugins, int(time.time()) if now is None else now)
    errors.raise_any()
    reference_errors.raise_any()
    _check_other_unique_fields(items)
    return entities


# -- 1. shape ---------------------------------------------------------------------------

def _read_document(document: dict[str, Any], errors: _Errors) -> Iterator[_Item]:
    version = document.get("_format_version", _ABSENT)
    if version is _ABSENT or version is None:
        errors.add(("_format_version",), "required field missing")
    elif not isinstance(version, str):
        errors.add(("_format_version",), "expected a string")
    elif version not in FORMAT_VERSIONS:
        errors.add(("_format_version",), f"expected one of: {', '.join(FORMAT_VERSIONS)}")
    migrate_paths = version in ("1.1", "2.1")

    for key, value in document.items():
        if key in ("_format_version", *ENTITY_TYPES):
            continue
        if key == "_transform":
            if value is not None and not isinstance(value, bool):
                errors.add((key,), "expected a boolean")
        elif key in ("_comment", "_ignore"):
            _check_annotation(key, value, (key,), errors)
        elif key in UNSUPPORTED_ENTITY_TYPES:
            errors.add((key,), unsupported_message(key))
        else:
            errors.add((key,), "unknown field")
    # Kong registers entities type by type, each entity's children before it;
    # that order decides which of two duplicates is the one reported.
    for entity_type in ENTITY_TYPES:
        yield from _read_list(entity_type, document.get(entity_type), (entity_type,), None, None,
                              errors, migrate_paths)


def _check_annotation(key: str, value: Any, path: tuple[str | int, ...], errors: _Errors) -> None:
    """``_comment`` (text) and ``_ignore`` (a list) are allowed anywhere and dropped."""
    expected_type, message = (str, "expected a string") if key == "_comment" else (list, "expected an array")
    if value is not None and not isinstance(value, expected_type):
        errors.add(path, message)


def _read_list(entity_type: str, value: Any, path: tuple[str | int, ...], parent: _Item | None,
               parent_key: str | None, errors: _Errors, migrate_paths: bool) -> Iterator[_Item]:
    if value is None:
        return
    if not isinstance(value, list):
        errors.add(path, "expected an array")
        return
    for index, element in enumerate(value, 1):
        if not isinstance(element, dict):
            errors.add(path + (index,), "expected a record")
            continue
        item = _Item(entity_type, {}, index, path + (index,), parent, parent_key)
        yield from _read_entity(item, element, errors, migrate_paths)
        yield item


def _read_entity(item: _Item, element: dict[str, Any], errors: _Errors, migrate_paths: bool) -> list[_Item]:
    fields = ENTITIES[item.entity_type].record.fields
    nested = NESTED[item.entity_type]
    children: dict[str, list[_Item]] = {}
    for key, value in element.items():
        if key in ("_comment", "_ignore"):
            _check_annotation(key, value, item.path + (key,), errors)
        elif key in nested and key not in fields:  # route ``snis`` is a field, not SNI entities
            children[key] = list(_read_list(key, value, item.path + (key,), item, nested[key],
                                            errors, migrate_paths))
        elif key in UNSUPPORTED_ENTITY_TYPES and key not in fields:
            errors.add(item.path + (key,), unsupported_message(key))
        elif key in FOREIGN_KEYS[item.entity_type] and value is not None and item.parent is not None:
            # A nested entity belongs to its parent only; one with two parents is top-level.
            errors.add(item.path + (key,), "value must be null")
        elif key in FOREIGN_KEYS[item.entity_type] and not _is_reference(value):
            errors.add(item.path + (key,), "expected a string")
        else:
            item.data[key] = value
    if migrate_paths and item.entity_type == "routes":
        _migrate_paths(item.data)
    # Types in Kong's order, each with its own children first.
    return [child for entity_type in ENTITY_TYPES for child in children.get(entity_type, [])]


def _is_reference(value: Any) -> bool:
    return value is None or isinstance(value, (str, dict))


def _migrate_paths(route: dict[str, Any]) -> None:
    """Format 1.1/2.1 paths that look like regexes become ``~`` regex paths, as in Kong 3."""
    paths = route.get("paths")
    if isinstance(paths, list):
        route["paths"] = [_migrate_path(path) if isinstance(path, str) else path for path in paths]


def _migrate_path(path: str) -> str:
    if _NOT_REGEX.match(path):
        return normalize_path(path)
    try:
        raw = wire_bytes(path)
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: nothing to decode
        return "~" + path
    return "~" + wire_text(_ESCAPE.sub(_unescape_for_regex, raw))


def _unescape_for_regex(match: re.Match[bytes]) -> bytes:
    """Decode an escape the 3.x way for a regex: reserved stay escaped, metacharacters get ``\\``."""
    byte = int(match.group(1), 16)
    if byte in RESERVED:
        return match.group(0).upper()
    if byte in _REGEX_METACHARACTERS:
        return b"\\" + bytes((byte,))
    return bytes((byte,))


# -- 2. ids -----------------------------------------------------------------------------

def _assign_id(item: _Item) -> None:
    """Fill in a missing id: deterministic from Kong's key when there is one, random otherwise."""
    if item.data.get("id") is not None:
        return
    if item.parent is not None:
        _assign_id(item.parent)  # a nested plugin's key holds its parent's id
    key = _id_key(item)
    if key is None:
        item.data["id"] = str(uuid.uuid4())
    else:
        item.data["id"] = str(uuid.uuid5(uuid.uuid5(ID_NAMESPACE, item.entity_type), key))


def _id_key(item: _Item) -> str | None:
    if item.entity_type == "plugins":
        return _plugin_cache_key(item)
    key = item.data.get(ENTITIES[item.entity_type].endpoint_key)
    return key if isinstance(key, str) else None


def _plugin_cache_key(item: _Item) -> str | None:
    """``plugins:*:<name>:<route>:<service>:<consumer>``, built as Kong builds it.

    A nested plugin contributes its parent's id; an absent reference an empty
    part. Like Kong, a name given as text contributes that text, and a
    ``{id: ...}`` reference contributes nothing.
    """
    parts = ["plugins", "*"]
    for field in PLUGIN_CACHE_KEY:
        value = item.data.get(field, _ABSENT)
        if isinstance(value, str):
            parts.append(value)
        elif value is _ABSENT and field == item.parent_key:
            assert item.parent is not None  # a parent_key comes with its parent
            parent_id = item.parent.data.get("id")
            if not isinstance(parent_id, str):
                return None
            parts.append(parent_id)
        elif value is _ABSENT and field == "name":
            return None
        elif value is _ABSENT:
            parts.append("")
    return ":".join(parts)


# -- 3. references ----------------------------------------------------------------------

def _uniqueness_message(entity_type: str, field: str, value: Any) -> str:
    return f"uniqueness violation: '{entity_type}' entity with {field} set to '{value}' already declared"


def _resolve_references(items: list[_Item], errors: _Errors) -> None:
    by_key: dict[str, dict[str, _Item]] = {}
    by_id: dict[str, dict[str, _Item]] = {}
    for item in items:
        _register(item, by_key.setdefault(item.entity_type, {}),
                  by_id.setdefault(item.entity_type, {}), errors)
    for item in items:
        if item.parent is not None:
            assert item.parent_key is not None  # a parent comes with its parent_key
            item.data[item.parent_key] = {"id": item.parent.data["id"]}
            continue
        for field, referenced_type in FOREIGN_KEYS[item.entity_type].items():
            value = item.data.get(field)
            if value is None:
                continue
            lookup = value.get("id") if isinstance(value, dict) else value
            found = (isinstance(lookup, str) and (by_key.get(referenced_type, {}).get(lookup)
                                                  or by_id.get(referenced_type, {}).get(lookup)))
            if found:
                item.data[field] = {"id": found.data["id"]}
                continue
            shown = value if isinstance(value, str) else _lua_json(value)
            errors.append((item.entity_type, _error_key(item)),
                          f"invalid reference '{field}: {shown}' (no such entry in '{referenced_type}')")
            del item.data[field]


def _register(item: _Item, by_key: dict[str, _Item], by_id: dict[str, _Item], errors: _Errors) -> None:
    """Index an entity by endpoint key and id, reporting duplicates where Kong does."""
    endpoint_key = ENTITIES[item.entity_type].endpoint_key
    key = item.data.get(endpoint_key)
    if isinstance(key, str):
        if key in by_key:
            errors.add((item.entity_type, item.index),
                       _uniqueness_message(item.entity_type, endpoint_key, key))
            return
        by_key[key] = item
    item_id = item.data["id"]
    if not isinstance(item_id, str):
        return
    if item_id in by_id:
        where = ((item.parent.entity_type, item.parent.index, item.entity_type, item.index)
                 if item.parent else (item.entity_type, item.index))
        errors.add(where, _uniqueness_message(item.entity_type, "primary key", item_id))
        return
    by_id[item_id] = item


def _error_key(item: _Item) -> str:
    """Kong reports reference errors under the entity's endpoint key, else its id."""
    key = item.data.get(ENTITIES[item.entity_type].endpoint_key)
    return key if isinstance(key, str) else str(item.data["id"])


def _lua_json(value: Any) -> str:
    """JSON as Kong's encoder writes it in messages: compact, with ``/`` escaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


# -- 4. validation ----------------------------------------------------------------------

def _validate(items: list[_Item], errors: _Errors, plugins: PluginLookup,
              now: int) -> dict[str, list[dict[str, Any]]]:
    """Complete every entity with its schema; errors go where the entity was written."""
    entities: dict[str, list[dict[str, Any]]] = {entity_type: [] for entity_type in ENTITY_TYPES}
    for item in items:
        data = {"created_at": now, **item.data, "updated_at": now}
        try:
            entity = complete(ENTITIES[item.entity_type], data, plugins=plugins)
        except SchemaViolation as violation:
            assert violation.fields is not None  # a SchemaViolation is made with its fields
            errors.merge(item.path, violation.fields)
            continue
        entities[item.entity_type].append(entity)
    return entities


def _check_other_unique_fields(items: list[_Item]) -> None:
    """Unique fields besides the endpoint key (consumer ``custom_id``), checked last as in Kong."""
    errors = _Errors()
    for entity_type, schema in ENTITIES.items():
        for field in schema.unique:
            if field == schema.endpoint_key:
                continue
            seen: set[str] = set()
            for item in items:
                value = item.data.get(field)
                if item.entity_type != entity_type or not isinstance(value, str):
                    continue
                if value in seen:
                    errors.add((entity_type, _error_key(item)),
                               _uniqueness_message(entity_type, field, value))
                seen.add(value)
    errors.raise_any()
