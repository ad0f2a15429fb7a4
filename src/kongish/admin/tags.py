"""``/tags`` and ``/tags/{tags}``: every tag of every entity as Kong's tags table lists it,
one ``{entity_name, entity_id, tag}`` row each, paged like the entity collections."""
from __future__ import annotations

import json
from typing import Any

from kongish import errors
from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.admin.entities import TAG, escape_uri, page_size
from kongish.db.dao import decode_position, encode_offset
from kongish.schema import ENTITIES

Row = dict[str, str]
Answer = tuple[int, Any]


def _rows(call: AdminCall, tag: str | None) -> list[Row]:
    """Rows in a stable order (entity id, then tag), so that offsets page through them."""
    rows = [{"entity_name": entity_type, "entity_id": entity["id"], "tag": each}
            for entity_type in ENTITIES
            for entity in call.db.tables[entity_type].values()
            for each in entity.get("tags") or ()
            if tag is None or each == tag]
    return sorted(rows, key=_position)


def _position(row: Row) -> tuple[str, str, str]:
    return row["entity_id"], row["entity_name"], row["tag"]


def _encode_offset(row: Row) -> str:
    return encode_offset(json.dumps(list(_position(row)), separators=(",", ":")))


def _decode_offset(offset: str) -> tuple[str, str, str]:
    try:
        position = json.loads(decode_position(offset))
    except ValueError:
        raise errors.InvalidOffset(offset) from None
    if not (isinstance(position, list) and len(position) == 3 and all(isinstance(p, str) for p in position)):
        raise errors.InvalidOffset(offset)
    return position[0], position[1], position[2]


def _page(call: AdminCall, tag: str | None, path: str) -> dict[str, Any]:
    query = call.query
    size = page_size(query.get("size"))
    rows = _rows(call, tag)
    if "offset" in query:
        after = _decode_offset(query["offset"])
        rows = [row for row in rows if _position(row) > after]
    if len(rows) <= size:
        return {"data": rows, "next": None}
    offset = _encode_offset(rows[size - 1])
    suffix = f"&size={query['size']}" if "size" in query else ""
    return {"data": rows[:size], "next": f"{path}?offset={escape_uri(offset)}{suffix}", "offset": offset}


async def list_tags(call: AdminCall) -> Answer:
    return 200, _page(call, None, "/tags")


async def list_by_tag(call: AdminCall) -> Answer:
    tag = call.params["tags"]
    if not TAG.fullmatch(tag.encode()):
        raise errors.InvalidOptions("tags", "invalid filter syntax")
    return 200, _page(call, tag, f"/tags/{escape_uri(tag)}")


def tag_endpoints() -> list[Endpoint]:
    return [Endpoint("/tags", {"GET": list_tags}), Endpoint("/tags/{tags}", {"GET": list_by_tag})]
