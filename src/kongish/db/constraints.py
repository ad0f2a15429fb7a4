"""Kong's rules between entities, shared by the in-memory database and the stores that
enforce them themselves (PostgreSQL, where other nodes write too)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import attrs

from kongish.schema import ENTITIES

#: Foreign keys that delete their children with them (the rest refuse the delete).
CASCADES = {"services": ("plugins",), "routes": ("plugins",), "consumers": ("plugins",)}
#: Children whose existence blocks deleting the parent.
RESTRICTS = {"services": ("routes",)}
#: The columns of Kong's composite plugin uniqueness key.
PLUGIN_UNIQUE = ("consumer", "name", "route", "service")


def unique_keys(entity_type: str, entity: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys no two entities of the type may share, as ``UniqueViolation`` names them."""
    keys = [{field: entity[field]} for field in ENTITIES[entity_type].unique if entity.get(field) is not None]
    if entity_type == "plugins":
        keys.append({field: entity.get(field) for field in PLUGIN_UNIQUE})
    return keys


def key_text(key: dict[str, Any]) -> str:
    """One text per unique key: equal keys, equal texts."""
    return json.dumps(key, sort_keys=True)


#: Entities by type, then by id (``Database.tables``).
Tables = Mapping[str, Mapping[str, dict[str, Any]]]


class _Index(Protocol):
    def add(self, entity_type: str, entity: dict[str, Any]) -> None: ...


_I = TypeVar("_I", bound=_Index)


def _filled(index: _I, tables: Tables) -> _I:
    """``index`` with every entity of ``tables`` added."""
    for entity_type, table in tables.items():
        for entity in table.values():
            index.add(entity_type, entity)
    return index


@attrs.define(eq=False)
class UniqueKeys:
    """Which entities hold each unique key, so a write's check reads its own keys only,
    not every entity of its type."""

    _holders: dict[tuple[str, str], set[str]] = attrs.Factory(dict)

    @classmethod
    def of(cls, tables: Tables) -> UniqueKeys:
        return _filled(cls(), tables)

    def add(self, entity_type: str, entity: dict[str, Any]) -> None:
        for key in unique_keys(entity_type, entity):
            self._holders.setdefault((entity_type, key_text(key)), set()).add(entity["id"])

    def discard(self, entity_type: str, entity: dict[str, Any]) -> None:
        for key in unique_keys(entity_type, entity):
            slot = (entity_type, key_text(key))
            holders = self._holders.get(slot)
            if holders is not None:
                holders.discard(entity["id"])
                if not holders:
                    del self._holders[slot]

    def taken(self, entity_type: str, key: dict[str, Any], entity_id: str) -> bool:
        """Whether an entity other than ``entity_id`` holds ``key``."""
        holders = self._holders.get((entity_type, key_text(key)), ())
        return any(holder != entity_id for holder in holders)

    def holder(self, entity_type: str, key: dict[str, Any]) -> str | None:
        """The id of the entity holding ``key`` (one at most, the constraint says), or None."""
        return next(iter(self._holders.get((entity_type, key_text(key)), ())), None)


def _parents(entity: dict[str, Any]) -> list[str]:
    """The ids ``entity`` points at through its foreign keys (what ``references`` checks)."""
    return [value["id"] for value in entity.values() if isinstance(value, dict) and "id" in value]


@attrs.define
class References:
    """Which entities point at each entity, so a delete reads its own children, not
    every entity of their types (a service among 100,000 routes)."""

    #: parent id -> child type -> the ids of the children of that type.
    _children: dict[str, dict[str, set[str]]] = attrs.Factory(dict)

    @classmethod
    def of(cls, tables: Tables) -> References:
        return _filled(cls(), tables)

    def add(self, entity_type: str, entity: dict[str, Any]) -> None:
        for parent_id in _parents(entity):
            self._children.setdefault(parent_id, {}).setdefault(entity_type, set()).add(entity["id"])

    def discard(self, entity_type: str, entity: dict[str, Any]) -> None:
        for parent_id in _parents(entity):
            by_type = self._children.get(parent_id, {})
            ids = by_type.get(entity_type)
            if ids is not None:
                ids.discard(entity["id"])
                if not ids:
                    del by_type[entity_type]
                    if not by_type:
                        del self._children[parent_id]

    def children(self, parent_id: str, child_type: str) -> list[str]:
        """The ids of the ``child_type`` entities pointing at ``parent_id``, in id order."""
        return sorted(self._children.get(parent_id, {}).get(child_type, ()))


def references(child: dict[str, Any], parent_id: str) -> bool:
    """Whether ``child`` points at ``parent_id`` through any of its foreign keys."""
    return any(isinstance(value, dict) and value.get("id") == parent_id for value in child.values())
