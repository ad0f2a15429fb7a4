"""CRUD endpoints for services, routes, consumers and plugins, nested or not."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import attrs

from kongish import errors
from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.schema import ENTITIES, infer

_MAX_TAGS = 5


@attrs.frozen
class Collection:
    """An entity collection, possibly nested under a parent (``/services/{x}/routes``)."""

    entity_type: str
    #: (parent entity type, the child's foreign-key field) for nested collections.
    parent: tuple[str, str] | None = None

    @property
    def base(self) -> str:
        if self.parent is None:
            return f"/{self.entity_type}"
        return f"/{self.parent[0]}/{{parent}}/{self.entity_type}"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self.base, {"GET": self.list, "POST": self.create}),
            Endpoint(self.base + "/{key}", {"GET": self.read, "PUT": self.put,
                                            "PATCH": self.patch, "DELETE": self.delete}),
        ]

    # helpers

    def _parent(self, call: AdminCall) -> dict[str, Any] | None:
        if self.parent is None:
            return None
        parent = call.db.find(self.parent[0], call.params["parent"])
        if parent is None:
            raise errors.NotFound()
        return parent

    def _owned(self, call: AdminCall, entity: dict[str, Any] | None,
               parent: dict[str, Any] | None) -> dict[str, Any] | None:
        """The entity, or None when a nested URL names a child of another parent."""
        if entity is None or parent is None:
            return entity
        reference = entity.get(self.parent[1])
        return entity if reference and reference["id"] == parent["id"] else None

    def _input(self, call: AdminCall, parent: dict[str, Any] | None,
               stored: dict[str, Any] | None = None) -> dict[str, Any]:
        decoded = call.body()
        args = decoded.args
        if decoded.from_form:
            name = args.get("name") if isinstance(args.get("name"), str) else None
            if stored is not None and name is None:
                name = stored.get("name")
            args = infer(ENTITIES[self.entity_type], args, plugins=call.plugins, plugin_name=name)
        if parent is not None:
            args = {**args, self.parent[1]: {"id": parent["id"]}}
        return args

    # handlers

    async def list(self, call: AdminCall) -> tuple[int, Any]:
        parent = self._parent(call)
        size = _page_size(call.query.get("size"))
        keep = _tag_filter(call.query.get("tags"))
        custom_id = call.query.get("custom_id") if self.entity_type == "consumers" else None

        def wanted(entity: dict[str, Any]) -> bool:
            return (self._owned(call, entity, parent) is not None and keep(entity)
                    and (custom_id is None or entity.get("custom_id") == custom_id))

        data, offset = call.db.page(self.entity_type, size, call.query.get("offset"), wanted)
        body: dict[str, Any] = {"data": data, "next": None}
        if offset is not None:
            path = self.base.replace("{parent}", call.params.get("parent", ""))
            extra = ""
            if self.parent is None:
                extra += f"&tags={quote(call.query['tags'], safe='')}" if "tags" in call.query else ""
                extra += f"&size={size}" if "size" in call.query else ""
            body["next"] = f"{path}?offset={quote(offset, safe='')}{extra}"
            body["offset"] = offset
        return 200, body

    async def create(self, call: AdminCall) -> tuple[int, Any]:
        parent = self._parent(call)
        return 201, await call.db.insert(self.entity_type, self._input(call, parent))

    async def read(self, call: AdminCall) -> tuple[int, Any]:
        parent = self._parent(call)
        entity = self._owned(call, call.db.find(self.entity_type, call.params["key"]), parent)
        if entity is None:
            raise errors.NotFound()
        return 200, entity

    async def put(self, call: AdminCall) -> tuple[int, Any]:
        parent = self._parent(call)
        existing = call.db.find(self.entity_type, call.params["key"])
        if existing is not None and self._owned(call, existing, parent) is None:
            raise errors.NotFound()
        return 200, await call.db.upsert(self.entity_type, call.params["key"],
                                         self._input(call, parent, existing))

    async def patch(self, call: AdminCall) -> tuple[int, Any]:
        parent = self._parent(call)
        existing = self._owned(call, call.db.find(self.entity_type, call.params["key"]), parent)
        if existing is None:
            raise errors.NotFound()
        return 200, await call.db.update(self.entity_type, existing["id"],
                                         self._input(call, parent, existing))

    async def delete(self, call: AdminCall) -> tuple[int, Any]:
        parent = self._parent(call)
        existing = self._owned(call, call.db.find(self.entity_type, call.params["key"]), parent)
        if existing is not None:
            await call.db.delete(self.entity_type, existing["id"])
        elif call.db.read_only:
            raise errors.OperationUnsupported("remove", self.entity_type)
        return 204, None


def _page_size(text: str | None) -> int:
    if text is None:
        return 100
    try:
        size = int(text)
    except ValueError:
        raise errors.InvalidSize("size must be a number") from None
    if not 1 <= size <= 1000:
        raise errors.InvalidSize("size must be an integer between 1 and 1000")
    return size


def _tag_filter(text: str | None):
    """Kong's ``?tags=a,b`` (all of them) and ``?tags=a/b`` (any of them)."""
    if text is None:
        return lambda entity: True
    if text == "":
        raise errors.InvalidOptions("tags", "cannot be null")
    if "," in text and "/" in text:
        raise errors.InvalidOptions("tags", "invalid filter syntax")
    wanted = text.split("/") if "/" in text else text.split(",")
    if len(wanted) > _MAX_TAGS:
        raise errors.InvalidOptions("tags", "cannot query more than 5 tags")
    if any(tag == "" for tag in wanted):
        raise errors.InvalidOptions("tags", "invalid filter syntax")
    combine = any if "/" in text else all
    return lambda entity: combine(tag in (entity.get("tags") or ()) for tag in wanted)


def entity_endpoints() -> list[Endpoint]:
    collections = [
        Collection("services"), Collection("routes"), Collection("consumers"), Collection("plugins"),
        Collection("routes", ("services", "service")),
        Collection("plugins", ("services", "service")),
        Collection("plugins", ("routes", "route")),
        Collection("plugins", ("consumers", "consumer")),
    ]
    return [endpoint for collection in collections for endpoint in collection.endpoints()]
