"""Kong's rules between entities, shared by the in-memory database and the stores that
enforce them themselves (PostgreSQL, where other nodes write too)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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


@attrs.define(eq=False)
class UniqueKeys:
    """Which entities hold each unique key, so a write's check reads its own keys only,
    not every entity of its type."""

    _holders: dict[tuple[str, str], set[str]] = attrs.Factory(dict)

    @classmethod
    def of(cls, tables: Mapping[str, Mapping[str, dict[str, Any]]]) -> UniqueKeys:
        keys = cls()
        for entity_type, table in tables.items():
            for entity in table.values():
                keys.add(entity_type, entity)
        return keys

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


def references(child: dict[str, Any], parent_id: str) -> bool:
    """Whether ``child`` points at ``parent_id`` through any of its foreign keys."""
    return any(isinstance(value, dict) and value.get("id") == parent_id for value in child.values())
