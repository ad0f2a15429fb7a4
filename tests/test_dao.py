"""The entity database: Kong's write rules, and that memory always matches what SQLite holds."""
from __future__ import annotations

import copy
import functools
import sqlite3
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kongish import errors
from kongish.db import sqlite
from kongish.db.constraints import References
from kongish.db.dao import Database, decode_offset, encode_offset, is_uuid
from kongish.db.sqlite import SQLiteStorage
from kongish.db.thread import StorageThread
from kongish.schema import ENTITIES
from kongish.testing import serverless_schema_plugin

NOW = 1700000000


PLUGINS = {name: serverless_schema_plugin(name) for name in ("pre-function", "post-function")}


class InlineWorker:
    """Runs SQLiteStorage's sqlite3 calls on the calling thread, so a test stays synchronous."""

    def run(self, function, *args) -> Deferred:
        return maybeDeferred(function, *args)

    def stop(self, outcome):
        return outcome


def sqlite_storage(path: str) -> SQLiteStorage:
    """A real SQLiteStorage on ``path``; commits skip fsync, which these tests do not measure."""
    connection = sqlite.connect_migrated(path)
    connection.execute("PRAGMA synchronous=OFF")
    # InlineWorker stands in for StorageThread: the same run and stop, on the calling thread.
    return SQLiteStorage(connection, cast(StorageThread, InlineWorker()))


_E = TypeVar("_E", bound=Exception)


class DatabaseCase(SynchronousTestCase):
    def open(self, path: str | None = None) -> Database:
        storage = sqlite_storage(path or self.mktemp() + ".db")
        self.addCleanup(storage.close)
        clock = Clock()
        clock.advance(NOW)
        database = Database(storage, PLUGINS.get, clock)
        self.successResultOf(ensureDeferred(database.load()))
        return database

    def done(self, coroutine) -> Any:
        return self.successResultOf(ensureDeferred(coroutine))

    def refused(self, coroutine, kind: type[_E]) -> _E:
        return cast(_E, self.failureResultOf(ensureDeferred(coroutine), kind).value)


class WriteRuleTests(DatabaseCase):
    def test_insert_fills_every_field_and_timestamps(self) -> None:
        db = self.open()
        service = self.done(db.insert("services", {"name": "s", "host": "a.test"}))
        self.assertEqual((service["created_at"], service["updated_at"], service["port"]), (NOW, NOW, 80))
        self.assertEqual(db.find("services", "s"), service)
        self.assertEqual(db.find("services", service["id"].upper()), service)

    def test_supplied_id_is_kept_and_a_second_use_is_a_primary_key_violation(self) -> None:
        db = self.open()
        given_id = str(uuid.uuid4())
        self.assertEqual(self.done(db.insert("consumers", {"id": given_id, "username": "a"}))["id"], given_id)
        error = self.refused(db.insert("consumers", {"id": given_id, "username": "b"}),
                             errors.PrimaryKeyViolation)
        self.assertEqual(error.body()["message"], f"primary key violation on key '{{id=\"{given_id}\"}}'")

    def test_update_merges_and_refreshes_updated_at(self) -> None:
        db = self.open()
        service = self.done(db.insert("services", {"name": "s", "host": "a.test", "port": 81}))
        cast(Clock, db.clock).advance(5)
        updated = self.done(db.update("services", "s", {"retries": 1}))
        self.assertEqual((updated["port"], updated["retries"]), (81, 1))
        self.assertEqual((updated["created_at"], updated["updated_at"]), (NOW, NOW + 5))
        self.assertEqual(updated["id"], service["id"])

    def test_upsert_by_name_replaces_everything_and_keeps_the_id(self) -> None:
        db = self.open()
        first = self.done(db.upsert("services", "s", {"host": "a.test", "port": 81}))
        cast(Clock, db.clock).advance(5)
        second = self.done(db.upsert("services", "s", {"host": "b.test"}))
        self.assertEqual((second["id"], second["name"], second["port"]), (first["id"], "s", 80))
        self.assertEqual((second["created_at"], second["updated_at"]), (NOW, NOW + 5))

    def test_upsert_by_id_uses_the_id(self) -> None:
        db = self.open()
        entity_id = str(uuid.uuid4())
        self.assertEqual(self.done(db.upsert("consumers", entity_id, {"username": "u"}))["id"], entity_id)

    def test_unique_names(self) -> None:
        db = self.open()
        self.done(db.insert("services", {"name": "s", "host": "a.test"}))
        error = self.refused(db.insert("services", {"name": "s", "host": "b.test"}), errors.UniqueViolation)
        self.assertEqual((error.status, error.body()["fields"]), (409, {"name": "s"}))

    def test_plugin_scope_is_unique(self) -> None:
        db = self.open()
        plugin = {"name": "post-function", "config": {"log": ["x=1"]}}
        self.done(db.insert("plugins", plugin))
        error = self.refused(db.insert("plugins", plugin), errors.UniqueViolation)
        self.assertEqual(error.body()["message"], "UNIQUE violation detected on "
                         "'{consumer=null,name=\"post-function\",route=null,service=null}'")

    def test_dangling_foreign_key(self) -> None:
        db = self.open()
        missing = str(uuid.uuid4())
        error = self.refused(db.insert("routes", {"paths": ["/"], "service": {"id": missing}}),
                             errors.ForeignKeyViolation)
        self.assertEqual(error.body()["fields"], {"service": {"id": missing}})

    def test_foreign_key_by_name(self) -> None:
        db = self.open()
        service = self.done(db.insert("services", {"name": "s", "host": "a.test"}))
        route = self.done(db.insert("routes", {"paths": ["/"], "service": {"name": "s"}}))
        self.assertEqual(route["service"], {"id": service["id"]})
        error = self.refused(db.insert("routes", {"paths": ["/"], "service": {"name": "t"}}),
                             errors.ForeignKeysUnresolved)
        self.assertEqual(error.code, 13)

    def test_service_with_routes_cannot_go_and_its_plugins_go_with_it(self) -> None:
        db = self.open()
        service = self.done(db.insert("services", {"name": "s", "host": "a.test"}))
        route = self.done(db.insert("routes", {"paths": ["/"], "service": {"id": service["id"]}}))
        self.done(db.insert("plugins", {"name": "pre-function", "service": {"id": service["id"]},
                                       "config": {"access": ["x=1"]}}))
        error = self.refused(db.delete("services", service["id"]), errors.ReferencedBy)
        self.assertEqual(error.body()["fields"], {"@referenced_by": "routes"})
        self.done(db.delete("routes", route["id"]))
        self.done(db.delete("services", service["id"]))
        self.assertEqual(db.tables["plugins"], {})

    def test_plugin_protocols_must_meet_its_route(self) -> None:
        db = self.open()
        route = self.done(db.insert("routes", {"paths": ["/"], "protocols": ["http"]}))
        error = self.refused(db.insert("plugins", {"name": "pre-function", "route": {"id": route["id"]},
                                                   "protocols": ["grpc"], "config": {"access": ["x=1"]}}),
                             errors.SchemaViolation)
        self.assertEqual(error.fields, {"protocols": "must match the associated route's protocols"})

    def test_deleting_a_missing_entity_is_fine(self) -> None:
        db = self.open()
        self.assertIsNone(self.done(db.delete("services", str(uuid.uuid4()))))

    def test_a_name_freed_can_be_taken_again(self) -> None:
        db = self.open()
        self.done(db.insert("services", {"name": "s", "host": "a.test"}))
        self.done(db.update("services", "s", {"name": "t"}))
        self.done(db.insert("services", {"name": "s", "host": "b.test"}))
        self.refused(db.insert("services", {"name": "t", "host": "c.test"}), errors.UniqueViolation)
        self.done(db.delete("services", "t"))
        self.done(db.insert("services", {"name": "t", "host": "c.test"}))
        self.done(db.update("services", "t", {"name": "t", "host": "d.test"}))  # its own name is no clash

    def test_a_name_another_writer_took_is_taken(self) -> None:
        path = self.mktemp() + ".db"
        writer, follower = self.open(path), self.open(path)
        self.done(writer.insert("services", {"name": "s", "host": "a.test"}))
        self.done(follower.catch_up())
        self.refused(follower.insert("services", {"name": "s", "host": "b.test"}), errors.UniqueViolation)
        self.done(writer.delete("services", "s"))
        self.done(follower.catch_up())
        self.done(follower.insert("services", {"name": "s", "host": "b.test"}))

    def test_listeners_run_after_each_change(self) -> None:
        db = self.open()
        calls = []
        db.listeners.append(lambda changes: calls.append(len(db.tables["consumers"])))
        self.done(db.insert("consumers", {"username": "u"}))
        self.refused(db.insert("consumers", {"username": "u"}), errors.UniqueViolation)
        self.assertEqual(calls, [1])


class DBlessTests(SynchronousTestCase):
    """Without storage, input is validated first and only then refused, as Kong's off strategy does."""

    def setUp(self) -> None:
        self.db = Database(None, PLUGINS.get, Clock())
        self.db.replace_all({"services": [{**ENTITIES["services"].record.output(
            ENTITIES["services"].record.fill_record({"host": "a.test"})),
            "id": "0b5a2b3c-93d4-4b8d-8d55-63e21c2cb2f1", "name": "s", "created_at": 1, "updated_at": 1}]})

    def refused(self, coroutine, kind):
        return self.failureResultOf(ensureDeferred(coroutine), kind).value

    def test_writes_are_unsupported(self) -> None:
        cases = [(self.db.insert("services", {"host": "b.test"}), "create"),
                 (self.db.update("services", "s", {"port": 81}), "update"),
                 (self.db.upsert("services", "t", {"host": "b.test"}), "create or update"),
                 (self.db.delete("services", "s"), "remove")]
        for coroutine, verb in cases:
            error = self.refused(coroutine, errors.OperationUnsupported)
            self.assertEqual((error.status, error.message),
                             (405, f"cannot {verb} 'services' entities when not using a database"))

    def test_invalid_input_is_a_schema_violation_first(self) -> None:
        error = self.refused(self.db.insert("services", {"port": "80"}), errors.SchemaViolation)
        self.assertEqual(error.fields, {"host": "required field missing", "port": "expected an integer"})

    def test_deleting_a_missing_entity_succeeds(self) -> None:
        self.assertIsNone(self.successResultOf(ensureDeferred(self.db.delete("services", "nope"))))


class OffsetTests(SynchronousTestCase):
    @given(st.uuids())
    def test_round_trip(self, value: uuid.UUID) -> None:
        self.assertEqual(decode_offset(encode_offset(str(value))), str(value))

    @given(st.text(max_size=40))
    def test_garbage_is_an_invalid_offset_never_a_crash(self, text: str) -> None:
        try:
            decoded = decode_offset(text)
        except errors.InvalidOffset as error:
            self.assertEqual(error.code, 7)
        else:
            self.assertEqual(str(uuid.UUID(decoded)), decoded)


# The property: random write sequences keep Kong's invariants, and SQLite agrees with memory.

_NAMES = st.sampled_from([None, "a", "b"])


@st.composite
def operations(draw) -> tuple[str, str, Any, dict[str, Any]]:
    """One write: (method, entity type, key index or None, body); references are picked later."""
    entity_type = draw(st.sampled_from(sorted(ENTITIES)))
    body: dict[str, Any]
    if entity_type == "services":
        body = {"name": draw(_NAMES), "host": "a.test", "port": draw(st.sampled_from([80, 81, "80"]))}
    elif entity_type == "routes":
        body = {"name": draw(_NAMES), "paths": ["/"],
                "service": draw(st.sampled_from(["pick", "pick", "missing", None]))}
    elif entity_type == "consumers":
        body = {"username": draw(_NAMES), "custom_id": draw(st.sampled_from([None, "c"]))}
    else:
        body = {"name": draw(st.sampled_from(["pre-function", "post-function"])),
                "config": {"access": ["x=1"]},
                "protocols": draw(st.sampled_from([["http"], ["http", "grpc"], ["grpc"]]))}
        for field in ("route", "service", "consumer"):
            body[field] = draw(st.sampled_from(["pick", "missing", None, None, None]))
    method = draw(st.sampled_from(["insert", "insert", "update", "upsert", "delete"]))
    return method, entity_type, draw(st.integers(0, 3)), body


def _pick(db: Database, entity_type: str, index: int) -> str:
    ids = sorted(db.tables[entity_type])
    return ids[index % len(ids)] if ids else str(uuid.UUID(int=index))


def _references(db: Database, entity_type: str, body: dict[str, Any], index: int) -> dict[str, Any]:
    body = dict(body)
    for field, target in ENTITIES[entity_type].foreign.items():
        if body.get(field) == "pick":
            body[field] = {"id": _pick(db, target, index)}
        elif body.get(field) == "missing":
            body[field] = {"id": str(uuid.UUID(int=index + 1))}
    return body


class InvariantTests(DatabaseCase):
    def check_invariants(self, db: Database) -> None:
        for entity_type, schema in ENTITIES.items():
            table = db.tables[entity_type]
            for field in schema.unique:
                values = [e[field] for e in table.values() if e[field] is not None]
                self.assertEqual(len(values), len(set(values)), (entity_type, field))
            for entity in table.values():
                for field, target in schema.foreign.items():
                    if entity[field] is not None:
                        self.assertIn(entity[field]["id"], db.tables[target], (entity_type, field))
        scopes = [(p["name"], str(p["route"]), str(p["service"]), str(p["consumer"]))
                  for p in db.tables["plugins"].values()]
        self.assertEqual(len(scopes), len(set(scopes)))
        # the indexes a write keeps agree with what a scan of the tables finds
        self.assertEqual(db._references, References.of(db.tables))
        for entity_type, schema in ENTITIES.items():
            for entity in db.tables[entity_type].values():
                key = entity.get(schema.endpoint_key) if schema.endpoint_key else None
                if isinstance(key, str) and not is_uuid(key):
                    self.assertEqual(db.find(entity_type, key), entity, (entity_type, key))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(operations(), min_size=5, max_size=30))
    def test_random_writes(self, steps) -> None:
        path = self.mktemp() + ".db"
        db = self.open(path)
        for method, entity_type, index, body in steps:
            before = copy.deepcopy(db.tables)
            body = _references(db, entity_type, body, index)
            key = _pick(db, entity_type, index)
            calls: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
                "insert": functools.partial(db.insert, entity_type, body),
                "update": functools.partial(db.update, entity_type, key, body),
                "upsert": functools.partial(db.upsert, entity_type, key, body),
                "delete": functools.partial(db.delete, entity_type, key)}
            call = calls[method]
            outcome = ensureDeferred(call())
            failures: list[Failure] = []
            outcome.addErrback(failures.append)
            self.assertTrue(outcome.called)
            if failures:
                failures[0].trap(errors.KongError)
                self.assertEqual(db.tables, before, "a refused write changed nothing")
            self.check_invariants(db)
        reloaded = self.open(path)
        self.assertEqual(reloaded.tables, db.tables)
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        stored = connection.execute("SELECT COUNT(*) FROM entities").fetchone()[0]
        self.assertEqual(stored, sum(len(table) for table in db.tables.values()))
