"""CRUD endpoints for services, routes, consumers and plugins, generated as Kong generates them.

Every entity type gets ``/{type}`` and ``/{type}/{type}``. Each of its foreign
keys (a route's ``service``) adds the nested collection of the parent
(``/services/{services}/routes[/{routes}]``) and the parent seen from the
child (``/routes/{routes}/service``). Path parameters are named after the
entity type, which is also how ``/endpoints`` lists them.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import attrs

from kongish import errors
from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.schema import ENTITIES, infer
from kongish.schema.lua import tonumber

Entity = dict[str, Any]
Answer = tuple[int, Any]

_MAX_TAGS = 5
#: One tag of a ``?tags=`` filter: printable ASCII except ``,`` and ``/``, or UTF-8 bytes.
TAG = re.compile(rb"[\x20-\x2b\x2d\x2e\x30-\x7e\x80-\xf4]+")


def escape_uri(text: str) -> str:
    """``ngx.escape_uri``: everything but letters, digits and ``-_.~`` is percent-encoded."""
    return quote(text, safe="")


def entity_input(call: AdminCall, entity_type: str, stored: Entity | None = None) -> dict[str, Any]:
    """The body's arguments, with form strings inferred into the schema's types.

    A plugin's ``config`` is inferred with the plugin named in the body, or
    else the stored one (Kong's PATCH reads the plugin first for that).
    """
    decoded = call.body()
    if not decoded.from_form:
        return decoded.args
    name = decoded.args.get("name")
    if not isinstance(name, str):
        name = stored.get("name") if stored is not None else None
    return infer(ENTITIES[entity_type], decoded.args, plugins=call.plugins, plugin_name=name)


def _lookup(call: AdminCall, entity_type: str) -> Entity:
    """The entity a path parameter names (id or endpoint key), or a 404."""
    entity = call.db.find(entity_type, call.params[entity_type])
    if entity is None:
        raise errors.NotFound()
    return entity


def _belongs(entity: Entity | None, field: str, parent: Entity) -> bool:
    reference = entity.get(field) if entity is not None else None
    return isinstance(reference, dict) and reference.get("id") == parent["id"]


@attrs.frozen
class Collection:
    """``/{type}`` and ``/{type}/{type}``: Kong's top-level collection and entity endpoints."""

    entity_type: str

    def endpoints(self) -> list[Endpoint]:
        t = self.entity_type
        return [
            Endpoint(f"/{t}", {"GET": self.list, "POST": self.create}),
            Endpoint(f"/{t}/{{{t}}}", {"GET": self.read, "PUT": self.put,
                                       "PATCH": self.patch, "DELETE": self.delete}),
        ]

    async def list(self, call: AdminCall) -> Answer:
        query = call.query
        if self.entity_type == "consumers" and "custom_id" in query:
            # Kong answers this lookup with at most one consumer and no paging.
            found = [c for c in call.db.tables["consumers"].values() if c["custom_id"] == query["custom_id"]]
            return 200, {"data": found[:1], "next": None}
        suffix = ""
        if "tags" in query:
            suffix += f"&tags={escape_uri(query['tags'])}"
        if "size" in query:
            suffix += f"&size={query['size']}"
        return 200, _page(call, self.entity_type, lambda entity: True, f"/{self.entity_type}", suffix)

    async def create(self, call: AdminCall) -> Answer:
        return 201, await call.db.insert(self.entity_type, entity_input(call, self.entity_type))

    async def read(self, call: AdminCall) -> Answer:
        return 200, _lookup(call, self.entity_type)

    async def put(self, call: AdminCall) -> Answer:
        key = call.params[self.entity_type]
        stored = call.db.find(self.entity_type, key)
        return 200, await call.db.upsert(self.entity_type, key, entity_input(call, self.entity_type, stored))

    async def patch(self, call: AdminCall) -> Answer:
        stored = _lookup(call, self.entity_type)
        return 200, await call.db.update(self.entity_type, stored["id"],
                                         entity_input(call, self.entity_type, stored))

    async def delete(self, call: AdminCall) -> Answer:
        stored = call.db.find(self.entity_type, call.params[self.entity_type])
        if stored is not None:
            await call.db.delete(self.entity_type, stored["id"])
        return 204, None


@attrs.frozen
class NestedCollection:
    """``/{parent}/{parent}/{type}[/{type}]``: children through one foreign key.

    As in Kong, a missing parent is a 404, a child of another parent is a 404
    (DELETE included), POST and PUT attach the child to the parent, and PATCH
    does unless the body names another parent.
    """

    entity_type: str
    parent_type: str
    field: str

    def endpoints(self) -> list[Endpoint]:
        base = f"/{self.parent_type}/{{{self.parent_type}}}/{self.entity_type}"
        return [
            Endpoint(base, {"GET": self.list, "POST": self.create}),
            Endpoint(f"{base}/{{{self.entity_type}}}", {"GET": self.read, "PUT": self.put,
                                                          "PATCH": self.patch, "DELETE": self.delete}),
        ]

    def _owned(self, call: AdminCall, parent: Entity) -> Entity:
        child = call.db.find(self.entity_type, call.params[self.entity_type])
        if not _belongs(child, self.field, parent):
            raise errors.NotFound()
        return child

    async def list(self, call: AdminCall) -> Answer:
        parent = _lookup(call, self.parent_type)
        path = f"/{self.parent_type}/{escape_uri(call.params[self.parent_type])}/{self.entity_type}"
        return 200, _page(call, self.entity_type,
                          lambda entity: _belongs(entity, self.field, parent), path, "")

    async def create(self, call: AdminCall) -> Answer:
        parent = _lookup(call, self.parent_type)
        args = {**entity_input(call, self.entity_type), self.field: {"id": parent["id"]}}
        return 201, await call.db.insert(self.entity_type, args)

    async def read(self, call: AdminCall) -> Answer:
        return 200, self._owned(call, _lookup(call, self.parent_type))

    async def put(self, call: AdminCall) -> Answer:
        parent = _lookup(call, self.parent_type)
        key = call.params[self.entity_type]
        stored = call.db.find(self.entity_type, key)
        args = {**entity_input(call, self.entity_type, stored), self.field: {"id": parent["id"]}}
        return 200, await call.db.upsert(self.entity_type, key, args)

    async def patch(self, call: AdminCall) -> Answer:
        parent = _lookup(call, self.parent_type)
        stored = self._owned(call, parent)
        args = entity_input(call, self.entity_type, stored)
        if self.field not in args:
            args = {**args, self.field: {"id": parent["id"]}}
        return 200, await call.db.update(self.entity_type, stored["id"], args)

    async def delete(self, call: AdminCall) -> Answer:
        stored = self._owned(call, _lookup(call, self.parent_type))
        await call.db.delete(self.entity_type, stored["id"])
        return 204, None


@attrs.frozen
class ReferencedEntity:
    """``/{type}/{type}/{field}``: the entity a foreign key points at (``/routes/{routes}/service``).

    PUT on a child without a parent creates the parent and links it, as Kong
    does; DELETE is refused, since the parent may have other children.
    """

    entity_type: str
    field: str
    target_type: str

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(f"/{self.entity_type}/{{{self.entity_type}}}/{self.field}",
                         {"GET": self.read, "PUT": self.put, "PATCH": self.patch, "DELETE": self.delete})]

    def _target(self, call: AdminCall) -> Entity:
        reference = _lookup(call, self.entity_type).get(self.field)
        target = call.db.find(self.target_type, reference["id"]) if reference else None
        if target is None:
            raise errors.NotFound()
        return target

    async def read(self, call: AdminCall) -> Answer:
        return 200, self._target(call)

    async def put(self, call: AdminCall) -> Answer:
        child = _lookup(call, self.entity_type)
        reference = child.get(self.field)
        key = reference["id"] if reference else str(uuid.uuid4())
        stored = call.db.find(self.target_type, key)
        target = await call.db.upsert(self.target_type, key, entity_input(call, self.target_type, stored))
        if reference is None:
            await call.db.update(self.entity_type, child["id"], {self.field: {"id": target["id"]}})
        return 200, target

    async def patch(self, call: AdminCall) -> Answer:
        target = self._target(call)
        return 200, await call.db.update(self.target_type, target["id"],
                                         entity_input(call, self.target_type, target))

    async def delete(self, call: AdminCall) -> Answer:
        self._target(call)
        raise errors.MethodNotAllowed()


def _page(call: AdminCall, entity_type: str, keep: Callable[[Entity], bool],
          path: str, suffix: str) -> dict[str, Any]:
    """One page of a collection, with Kong's ``next`` link (``path?offset=…`` plus ``suffix``)."""
    query = call.query
    size = page_size(query.get("size"))
    wanted = _tag_filter(query.get("tags"))
    data, offset = call.db.page(entity_type, size, query.get("offset"),
                                lambda entity: keep(entity) and wanted(entity))
    if offset is None:
        return {"data": data, "next": None}
    return {"data": data, "next": f"{path}?offset={escape_uri(offset)}{suffix}", "offset": offset}


def page_size(text: str | None) -> int:
    """Kong's ``size``: Lua ``tonumber``, then an integer from 1 to 1000."""
    if text is None:
        return 100
    size = tonumber(text)
    if size is None:
        raise errors.InvalidSize("size must be a number")
    if not isinstance(size, int) or not 1 <= size <= 1000:
        raise errors.InvalidSize("size must be an integer between 1 and 1000")
    return size


def _tag_filter(text: str | None) -> Callable[[Entity], bool]:
    """Kong's ``?tags=a,b`` (all of them) and ``?tags=a/b`` (any of them)."""
    if text is None:
        return lambda entity: True
    if text == "":
        raise errors.InvalidOptions("tags", "cannot be null")
    separator = "/" if "/" in text else ","
    wanted = text.split(separator)
    if not all(TAG.fullmatch(tag.encode()) for tag in wanted):
        raise errors.InvalidOptions("tags", "invalid filter syntax")
    if len(wanted) > _MAX_TAGS:
        raise errors.InvalidOptions("tags", "cannot query more than 5 tags")
    combine = any if separator == "/" else all
    return lambda entity: combine(tag in (entity.get("tags") or ()) for tag in wanted)


def entity_endpoints() -> list[Endpoint]:
    """Every entity endpoint Kong generates for the stored entity types."""
    generated: list[Any] = []
    for entity_type, schema in ENTITIES.items():
        generated.append(Collection(entity_type))
        for field, target_type in schema.foreign.items():
            generated.append(NestedCollection(entity_type, target_type, field))
            generated.append(ReferencedEntity(entity_type, field, target_type))
    return [endpoint for item in generated for endpoint in item.endpoints()]
