"""Dotted field paths (``config.access``) as Kong's entity checks use them."""
from __future__ import annotations

from typing import Any


def get_path(data: Any, path: str) -> Any:
    """The value at ``path``, or ``None`` when any step is missing or not an object."""
    for step in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(step)
    return data


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Store ``value`` at ``path``, creating intermediate objects."""
    *parents, last = path.split(".")
    for step in parents:
        data = data.setdefault(step, {})
    data[last] = value


def is_nonempty(value: Any) -> bool:
    """Kong's ``is_nonempty``: not null, not ``""`` and not an empty table (``false`` counts)."""
    if value is None or value == "":
        return False
    return not (isinstance(value, (list, dict)) and not value)
