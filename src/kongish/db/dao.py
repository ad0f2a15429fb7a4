"""The entity database: Kong's create/read/update/delete rules over an in-memory copy.

Every entity lives in memory (configurations are small and the router needs
them all anyway); writes go through ``IStorage`` first and reach memory only
once durable, so a crash never loses an acknowledged write. Writes are
serialised by a lock so uniqueness and foreign-key checks see a stable state.
Listeners run after each change, told what changed, to rebuild the router and plugin
snapshots.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime

from kongish import errors
from kongish.db.constraints import CASCADES, RESTRICTS, References, UniqueKeys, unique_keys
from kongish.db.storage import Change, IStorage
from kongish.schema import ENTITIES, complete


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def encode_offset(position: str) -> str:
    """An opaque ``offset`` for a page's last position (an entity id, or any text)."""
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_position(offset: str) -> str:
    """The text ``encode_offset`` made ``offset`` of; Kong's ``invalid offset`` otherwise."""
    try:
        return base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.InvalidOffset(offset) from None


def decode_offset(offset: str) -> str:
    """The entity id a collection page's ``offset`` holds."""
    decoded = decode_position(offset)
    if not is_uuid(decoded):
        raise errors.InvalidOffset(offset)
    return decoded


@attrs.define(eq=False)
class Database:
    """All entities of one kongish node, with Kong's write rules."""

    storage: IStorage | None
    plugins: Callable[[str], Any]
    clock: IReactorTime
    tables: dict[str, dict[str, dict[str, Any]]] = attrs.Factory(
        lambda: {name: {} for name in ENTITIES})
    #: Called after each change with the changes applied, or None when everything was replaced.
    listeners: list[Callable[[Sequence[Change] | None], None]] = attrs.Factory(list)
    #: Told the version each write stored, and awaited before the write returns: how a
    #: master's workers serve a write before the Admin API answers it.
    followers: list[Callable[[int], Awaitable[None]]] = attrs.Factory(list)
    #: The storage's configuration version that ``tables`` reflect (see ``catch_up``).
    version: int = 0
    _lock: DeferredLock = attrs.Factory(DeferredLock)
    _unique: UniqueKeys = attrs.field(init=False, default=attrs.Factory(
        lambda self: UniqueKeys.of(self.tables), takes_self=True))
    _references: References = attrs.field(init=False, default=attrs.Factory(
        lambda self: References.of(self.tables), takes_self=True))

    @property
    def read_only(self) -> bool:
        """DB-less nodes change only through declarative configuration."""
        return self.storage is None

    async def load(self) -> None:
        """Fill memory from storage (at start)."""
        assert self.storage is not None
        snapshot = await self.storage.load()
        self.version = snapshot.version
        self.replace_all(snapshot.entities)

    async def catch_up(self) -> bool:
        """Apply what other writers (worker processes, other nodes) stored since ``version``,
        from the storage's change feed; reload everything when the feed no longer reaches
        back. Listeners hear of it as of any change; True when something changed."""
        assert self.storage is not None
        await self._lock.acquire()
        try:
            since = await self.storage.changes_since(self.version)
            if since is None:
                await self.load()
            else:
                self.version = since.version
                if not since.changes:
                    return False
                self._apply(since.changes)
                self._changed(since.changes)
        finally:
            self._lock.release()
        for follower in self.followers:  # what others wrote reaches this node's workers too
            await follower(self.version)
        return True

    def _apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            table = self.tables[change.entity_type]
            old = table.pop(change.entity_id, None) if change.entity is None else table.get(change.entity_id)
            if old is not None:
                self._unique.discard(change.entity_type, old)
                self._references.discard(change.entity_type, old)
            if change.entity is not None:
                table[change.entity_id] = change.entity
                self._unique.add(change.entity_type, change.entity)
                self._references.add(change.entity_type, change.entity)

    def replace_all(self, entities: Mapping[str, Iterable[dict[str, Any]]]) -> None:
        """Swap in a whole configuration at once (stored or declarative)."""
        self.tables = {name: {} for name in ENTITIES}
        for entity_type, items in entities.items():
            self.tables[entity_type] = {entity["id"]: entity for entity in items}
        self._unique = UniqueKeys.of(self.tables)
        self._references = References.of(self.tables)
        self._changed(None)

    def _changed(self, changes: Sequence[Change] | None) -> None:
        for listener in self.listeners:
            listener(changes)

    # reads

    def find(self, entity_type: str, key: str) -> dict[str, Any] | None:
        """Look up by id, or by the endpoint key when ``key`` is not a UUID."""
        table = self.tables[entity_type]
        if is_uuid(key):
            return table.get(str(uuid.UUID(key)))
        endpoint_key = ENTITIES[entity_type].endpoint_key
        if endpoint_key is None:
            return None
        holder = self._unique.holder(entity_type, {endpoint_key: key})
        return None if holder is None else table[holder]

    def page(self, entity_type: str, size: int, offset: str | None,
             keep: Callable[[dict[str, Any]], bool] = lambda entity: True,
             ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in ascending id order, and the offset of the next page (or None)."""
        after = decode_offset(offset) if offset else None
        ids = sorted(i for i in self.tables[entity_type] if after is None or i > after)
        page: list[dict[str, Any]] = []
        for entity_id in ids:
            entity = self.tables[entity_type][entity_id]
            if not keep(entity):
                continue
            if len(page) == size:
                return page, encode_offset(page[-1]["id"])
            page.append(entity)
        return page, None

    # writes

    async def insert(self, entity_type: str, data: dict[str, Any]) -> dict[str, Any]:
        return await self._write("create", entity_type, self._insert, data)

    async def update(self, entity_type: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
        return await self._write("update", entity_type, self._update, key, data)

    async def upsert(self, entity_type: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
        return await self._write("create or update", entity_type, self._upsert, key, data)

    async def delete(self, entity_type: str, key: str) -> None:
        await self._write("remove", entity_type, self._delete, key)

    async def _write(self, verb: str, entity_type: str, plan: Callable[..., Any], *args: Any) -> Any:
        """Validate with ``plan``, then apply its changes; a DB-less node refuses here, as Kong does.

        Kong validates input before its DB-less strategy refuses the write, so a
        bad body still gets its 400, and deleting a missing entity is still a 204.
        """
        await self._lock.acquire()
        try:
            changes, result = plan(entity_type, *args)
            if changes:
                if self.storage is None:
                    raise errors.OperationUnsupported(verb, entity_type)
                self._check_constraints(changes)
                version = await self.storage.write(changes)
                self._apply(changes)
                if version == self.version + len(changes):
                    # nobody else wrote in between; otherwise catch_up reads their changes
                    # (and these again) from the feed
                    self.version = version
                self._changed(changes)
        finally:
            self._lock.release()
        if changes:
            for follower in self.followers:
                await follower(version)
        return result

    def _now(self) -> int:
        return int(self.clock.seconds())

    def _complete(self, entity_type: str, data: dict[str, Any],
                  partial_base: dict[str, Any] | None = None) -> dict[str, Any]:
        data = self._resolve_foreign(entity_type, data)
        return complete(ENTITIES[entity_type], data, plugins=self.plugins, partial_base=partial_base)

    def _insert(self, entity_type: str, data: dict[str, Any]) -> tuple[list[Change], dict[str, Any]]:
        entity = self._complete(entity_type, data)
        entity["id"] = entity.get("id") or str(uuid.uuid4())
        if entity["id"] in self.tables[entity_type]:
            raise errors.PrimaryKeyViolation(entity["id"])
        entity["created_at"] = entity["updated_at"] = self._now()
        return [Change(entity_type, entity["id"], entity)], entity

    def _update(self, entity_type: str, key: str,
                data: dict[str, Any]) -> tuple[list[Change], dict[str, Any]]:
        existing = self.find(entity_type, key)
        if existing is None:
            raise errors.NotFound()
        entity = self._complete(entity_type, data, partial_base=existing)
        entity.update(id=existing["id"], created_at=existing["created_at"], updated_at=self._now())
        return [Change(entity_type, entity["id"], entity)], entity

    def _upsert(self, entity_type: str, key: str,
                data: dict[str, Any]) -> tuple[list[Change], dict[str, Any]]:
        existing = self.find(entity_type, key)
        data = dict(data)
        if is_uuid(key):
            data["id"] = str(uuid.UUID(key))
        else:
            data[ENTITIES[entity_type].endpoint_key] = key
            if existing is not None:
                data["id"] = existing["id"]
        entity = self._complete(entity_type, data)
        entity["id"] = entity.get("id") or str(uuid.uuid4())
        replaced = self.tables[entity_type].get(entity["id"])
        entity["created_at"] = replaced["created_at"] if replaced else self._now()
        entity["updated_at"] = self._now()
        return [Change(entity_type, entity["id"], entity)], entity

    def _delete(self, entity_type: str, key: str) -> tuple[list[Change], None]:
        existing = self.find(entity_type, key)
        if existing is None:
            return [], None
        changes = [Change(child_type, child_id, None)
                   for child_type in CASCADES.get(entity_type, ())
                   for child_id in self._references.children(existing["id"], child_type)]
        changes.append(Change(entity_type, existing["id"], None))
        return changes, None

    def _resolve_foreign(self, entity_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Turn ``{"name": ...}`` style references into ``{"id": ...}``, as Kong does."""
        if not isinstance(data, dict):
            return data
        resolved = dict(data)
        for field, parent_type in ENTITIES[entity_type].foreign.items():
            reference = data.get(field)
            if not isinstance(reference, dict) or "id" in reference or len(reference) != 1:
                continue
            endpoint_key = ENTITIES[parent_type].endpoint_key
            if endpoint_key not in reference or not isinstance(reference[endpoint_key], str):
                continue
            parent = self.find(parent_type, reference[endpoint_key])
            if parent is None or is_uuid(reference[endpoint_key]):
                raise errors.ForeignKeysUnresolved(field, reference, parent_type)
            resolved[field] = {"id": parent["id"]}
        return resolved

    # constraints: what Kong's database enforces, checked against the state after ``changes``

    def _check_constraints(self, changes: list[Change]) -> None:
        deleted = {(c.entity_type, c.entity_id) for c in changes if c.entity is None}
        for change in changes:
            if change.entity is None:
                self._check_unreferenced(change.entity_type, change.entity_id, deleted)
            else:
                self._check_entity(change.entity_type, change.entity)

    def _check_unreferenced(self, entity_type: str, entity_id: str, deleted: set[tuple[str, str]]) -> None:
        for child_type in RESTRICTS.get(entity_type, ()):
            if any((child_type, child_id) not in deleted
                   for child_id in self._references.children(entity_id, child_type)):
                raise errors.ReferencedBy(entity_type, child_type)

    def _check_entity(self, entity_type: str, entity: dict[str, Any]) -> None:
        schema = ENTITIES[entity_type]
        for field, parent_type in schema.foreign.items():
            reference = entity.get(field)
            if reference is not None and reference["id"] not in self.tables[parent_type]:
                raise errors.ForeignKeyViolation(reference, parent_type, field)
        for key in unique_keys(entity_type, entity):
            if self._unique.taken(entity_type, key, entity["id"]):
                raise errors.UniqueViolation(key)
        if entity_type == "plugins":
            self._check_plugin_protocols(entity)

    def _check_plugin_protocols(self, plugin: dict[str, Any]) -> None:
        """Kong's rule: a plugin must share a protocol with its route (or a route of its service)."""
        protocols = set(plugin.get("protocols") or ())
        if plugin.get("route") is not None:
            route = self.tables["routes"][plugin["route"]["id"]]
            if not protocols & set(route["protocols"]):
                raise errors.SchemaViolation({"protocols": "must match the associated route's protocols"})
        elif plugin.get("service") is not None:
            routes = [self.tables["routes"][route_id]
                      for route_id in self._references.children(plugin["service"]["id"], "routes")]
            if routes and not any(protocols & set(route["protocols"]) for route in routes):
                raise errors.SchemaViolation({"protocols": "must match the protocols of at least "
                                                           "one route pointing to this Plugin's service"})

