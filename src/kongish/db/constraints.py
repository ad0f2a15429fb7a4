"""Kong's rules between entities, shared by the in-memory database and the stores that
enforce them themselves (PostgreSQL, where other nodes write too)."""
from __future__ import annotations

from typing import Any

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


def references(child: dict[str, Any], parent_id: str) -> bool:
    """Whether ``child`` points at ``parent_id`` through any of its foreign keys."""
    return any(isinstance(value, dict) and value.get("id") == parent_id for value in child.values())
