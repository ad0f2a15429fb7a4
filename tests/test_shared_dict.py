"""``ngx.shared.DICT`` (``nginx_http_lua_shared_dict``): the LMDB store, checked against a
model of nginx's rules; the Lua methods through the real engine and sandbox; and one count
kept by two worker processes of a real ``twist kongish``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.shared_dict import ENTRY_OVERHEAD, ITEM_OVERHEAD, SharedDict, SharedDictZone
from kongish.settings import ConfigError, Settings, parse_shared_dicts
from kongish.testing import LuaHarness
from tests.harness import deferred
from tests.test_e2e_workers import _Workers

LONG_KEY = b"k" * 600  # past LMDB's key size: stored under its hash


class _Clock:
    """A wall clock the test moves; quarter seconds are exact in milliseconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _zone(case: SynchronousTestCase, *specs: tuple[str, int]) -> SharedDictZone:
    zone = SharedDictZone.create(specs or [("d", 8192)])
    case.addCleanup(zone.close)
    return zone


class StoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _Clock()
        self.zone = _zone(self, ("d", 8192), ("other", 1024 * 1024))
        self.d, self.other = self.zone.dicts(self.clock)

    def test_set_get_and_flags(self) -> None:
        self.assertEqual(self.d.set(b"k", b"v"), (True, None, False))
        self.assertEqual(self.d.get(b"k"), b"v")
        self.assertEqual(self.d.set(b"f", b"v", 0, 7), (True, None, False))
        self.assertEqual(self.d.get(b"f"), (b"v", 7))
        self.assertEqual(self.d.get_stale(b"f"), (b"v", 7, False))
        self.assertEqual(self.d.get_stale(b"k"), (b"v", None, False))
        self.assertIsNone(self.d.get(b"missing"))
        self.assertIsNone(self.d.get_stale(b"missing"))
        self.assertIsNone(self.other.get(b"k"))  # dicts are apart

    def test_value_types(self) -> None:
        for value in (b"", b"\x00binary\xff", 1.5, -3.0, True, False):
            self.d.set(b"k", value)
            self.assertEqual(self.d.get(b"k"), value)
        self.d.set(b"k", 3)
        self.assertEqual(type(self.d.get(b"k")), float)
        self.assertEqual(self.d.set(b"k", {"a": 1}), (None, "bad value type"))
        self.assertEqual(self.d.set(b"k", None), (True, None, False))
        self.assertIsNone(self.d.get(b"k"))

    def test_keys_lua_resty_core_refuses(self) -> None:
        self.assertEqual(self.d.set(b"", b"v"), (None, "empty key"))
        self.assertEqual(self.d.get(b""), (None, "empty key"))
        self.assertEqual(self.d.incr(b"x" * 65536, 1), (None, "key too long"))
        self.assertEqual(self.d.set(LONG_KEY, b"long"), (True, None, False))
        self.assertEqual(self.d.set(LONG_KEY[:-1] + b"j", b"other"), (True, None, False))
        self.assertEqual(self.d.get(LONG_KEY), b"long")
        self.assertEqual(sorted(self.d.get_keys()), [LONG_KEY[:-1] + b"j", LONG_KEY])

    def test_add_replace_delete(self) -> None:
        self.assertEqual(self.d.replace(b"k", b"v"), (False, "not found", False))
        self.assertEqual(self.d.add(b"k", b"v"), (True, None, False))
        self.assertEqual(self.d.add(b"k", b"w"), (False, "exists", False))
        self.assertEqual(self.d.safe_add(b"k", b"w"), (False, "exists", False))
        self.assertEqual(self.d.replace(b"k", b"w"), (True, None, False))
        self.assertEqual(self.d.get(b"k"), b"w")
        self.assertEqual(self.d.add(b"k", None), (False, "attempt to add or replace nil values", False))
        self.assertEqual(self.d.delete(b"k"), (True, None, False))
        self.assertEqual(self.d.delete(b"k"), (True, None, False))
        self.assertIsNone(self.d.get(b"k"))

    def test_expired_entries_are_gone_but_stale(self) -> None:
        self.d.set(b"k", b"v", 1.5, 3)
        self.assertEqual(self.d.ttl(b"k"), 1.5)
        self.clock.now += 1
        self.assertEqual(self.d.ttl(b"k"), 0.5)
        self.assertEqual(self.d.get(b"k"), (b"v", 3))
        self.clock.now += 1
        self.assertEqual(self.d.get_stale(b"k"), (b"v", 3, True))
        self.assertEqual(self.d.ttl(b"k"), (None, "not found"))
        self.assertEqual(self.d.expire(b"k", 10), (None, "not found"))
        self.assertEqual(self.d.get_stale(b"k"), (b"v", 3, True))
        self.assertIsNone(self.d.get(b"k"))  # which drops it, as the oldest expired entry
        self.assertIsNone(self.d.get_stale(b"k"))
        self.d.set(b"k", b"v", 1)
        self.clock.now += 2
        self.assertEqual(self.d.replace(b"k", b"w"), (False, "not found", False))
        self.d.set(b"k", b"v", 1)
        self.clock.now += 2
        self.assertEqual(self.d.add(b"k", b"w"), (True, None, False))  # over the expired one
        self.assertEqual(self.d.ttl(b"k"), 0)

    def test_expire_and_negative_exptime(self) -> None:
        self.d.set(b"k", b"v")
        self.assertIs(self.d.expire(b"k", 2), True)
        self.assertEqual(self.d.ttl(b"k"), 2)
        self.assertIs(self.d.expire(b"k", 0), True)
        self.assertEqual(self.d.ttl(b"k"), 0)
        self.assertEqual(self.d.expire(b"missing", 1), (None, "not found"))
        self.assertRaises(ValueError, self.d.set, b"k", b"v", -1)

    def test_incr(self) -> None:
        self.assertEqual(self.d.incr(b"n", 1), (None, "not found"))
        self.assertEqual(self.d.incr(b"n", 1, 10), (11.0, None, False))
        self.assertEqual(self.d.incr(b"n", -2.5), 8.5)
        self.assertEqual(self.d.incr(b"n", 1, 0), (9.5, None, False))
        self.d.set(b"s", b"text")
        self.assertEqual(self.d.incr(b"s", 1, 0), (None, "not a number"))
        self.d.set(b"t", 5, 2, 9)
        self.assertEqual(self.d.incr(b"t", 1), 6.0)
        self.assertEqual((self.d.ttl(b"t"), self.d.get(b"t")), (2, (6.0, 9)))  # expiry and flags kept
        self.assertEqual(self.d.incr(b"i", 1, 0, 1), (1.0, None, False))
        self.clock.now += 2
        self.assertEqual(self.d.incr(b"i", 1), (None, "not found"))  # init_ttl passed
        self.assertEqual(self.d.incr(b"i", 1, 5), (6.0, None, False))

    def test_capacity_and_free_space_count_each_entry(self) -> None:
        self.assertEqual((self.d.capacity, self.d.free_space()), (8192, 8192))
        self.d.set(b"key", b"value")
        self.d.set(b"n", 1)
        self.d.set(b"b", True)
        self.assertEqual(self.d.free_space(), 8192 - 3 * ENTRY_OVERHEAD - (3 + 5) - (1 + 8) - (1 + 1))
        self.d.delete(b"key")
        self.d.delete(b"n")
        self.d.delete(b"b")
        self.assertEqual(self.d.free_space(), 8192)

    def test_set_drops_the_least_recently_used_and_says_forcible(self) -> None:
        value = b"x" * 1000  # 1065 bytes an entry: seven fit in 8192
        for number in range(7):
            self.assertEqual(self.d.set(b"%d" % number, value), (True, None, False))
        self.assertEqual(self.d.get(b"0"), value)  # 0 is now the most recently used
        self.assertEqual(self.d.set(b"new", value), (True, None, True))
        self.assertIsNone(self.d.get(b"1"))
        self.assertEqual(self.d.get(b"0"), value)
        self.assertEqual(self.d.get_keys(0), [b"2", b"3", b"4", b"5", b"6", b"new", b"0"])

    def test_safe_calls_answer_no_memory_and_drop_nothing(self) -> None:
        value = b"x" * 1000
        for number in range(7):
            self.d.set(b"%d" % number, value)
        self.assertEqual(self.d.safe_set(b"new", value), (False, "no memory", False))
        self.assertEqual(self.d.safe_add(b"new", value), (False, "no memory", False))
        self.assertEqual(self.d.safe_set(b"0", b"x" * 2000), (False, "no memory", False))
        self.assertEqual(self.d.get(b"0"), value)  # kept: the call changed nothing
        self.assertEqual(len(self.d.get_keys(0)), 7)
        self.assertEqual(self.d.safe_set(b"0", b"small"), (True, None, False))  # fits in its place

    def test_a_value_larger_than_the_dict_is_refused_without_dropping(self) -> None:
        self.d.set(b"keep", b"v")
        self.assertEqual(self.d.set(b"huge", b"x" * 9000), (False, "no memory", False))
        self.assertEqual(self.d.get(b"keep"), b"v")

    def test_incr_with_init_makes_room_as_set_does(self) -> None:
        for number in range(7):
            self.d.set(b"%d" % number, b"x" * 1000)
        self.d.set(b"pad", b"x" * (self.d.free_space() - ENTRY_OVERHEAD - 3 - 10))  # 10 bytes left
        self.assertEqual(self.d.incr(b"n", 1, 0), (1.0, None, True))
        self.assertIsNone(self.d.get(b"0"))

    def test_calls_drop_two_expired_entries_at_the_old_end(self) -> None:
        for key in (b"a", b"b", b"c"):
            self.d.set(key, b"v", 1)
        self.d.set(b"live", b"v")
        self.clock.now += 2
        before = self.d.free_space()
        self.d.get(b"live")
        self.assertEqual(self.d.free_space(), before + 2 * (ENTRY_OVERHEAD + 2))
        self.assertEqual(self.d.get_stale(b"c"), (b"v", None, True))  # the third waits its turn
        self.assertIsNone(self.d.get_stale(b"a"))

    def test_flush_all_and_flush_expired(self) -> None:
        for key in (b"a", b"b", b"c", b"d", b"e"):
            self.d.set(key, b"v")
        self.d.flush_all()
        self.assertEqual(self.d.get_keys(0), [])
        self.assertEqual(self.d.get_stale(b"e"), (b"v", None, True))  # as nginx's, until dropped
        self.assertLess(self.d.free_space(), 8192)
        self.assertEqual(self.d.flush_expired(1), 1)  # three went with flush_all, as nginx's
        self.assertIsNone(self.d.get(b"e"))  # which drops it
        self.assertEqual(self.d.flush_expired(), 0)
        self.assertEqual(self.d.free_space(), 8192)

    def test_flush_expired_counts_and_spares_the_living(self) -> None:
        for number in range(5):
            self.d.set(b"e%d" % number, b"v", 1)
        self.d.set(b"live", b"v")
        self.clock.now += 1
        self.assertEqual(self.d.get_keys(0), [b"live"])  # expired at its last millisecond
        self.assertEqual(self.d.flush_expired(2), 2)
        self.assertEqual(self.d.flush_expired(0), 3)
        self.assertEqual(self.d.get_keys(), [b"live"])

    def test_get_keys_oldest_first_with_a_count(self) -> None:
        for number in range(1500):
            self.other.set(b"%d" % number, 1)
        self.assertEqual(len(self.other.get_keys()), 1024)
        self.assertEqual(len(self.other.get_keys(0)), 1500)
        self.assertEqual(self.other.get_keys(3), [b"0", b"1", b"2"])

    def test_lists(self) -> None:
        self.assertEqual(self.d.lpush(b"l", b"b"), 1)
        self.assertEqual(self.d.lpush(b"l", b"a"), 2)
        self.assertEqual(self.d.rpush(b"l", 3), 3)
        self.assertEqual(self.d.llen(b"l"), 3)
        self.assertEqual(self.d.get(b"l"), (None, "value is a list"))
        self.assertEqual(self.d.incr(b"l", 1), (None, "not a number"))
        self.assertEqual(self.d.rpush(b"l", True), (None, "bad value type"))
        self.assertEqual(self.d.rpop(b"l"), 3.0)
        self.assertEqual(self.d.lpop(b"l"), b"a")
        self.assertEqual(self.d.lpop(b"l"), b"b")
        self.assertEqual((self.d.lpop(b"l"), self.d.llen(b"l")), (None, 0))
        self.assertEqual(self.d.free_space(), 8192)  # the emptied list is deleted
        self.d.set(b"s", b"v")
        for call in (self.d.lpush, self.d.rpush):
            self.assertEqual(call(b"s", b"x"), (None, "value not a list"))
        for read in (self.d.lpop, self.d.rpop, self.d.llen):
            self.assertEqual(read(b"s"), (None, "value not a list"))

    def test_a_list_costs_its_items_and_set_replaces_it(self) -> None:
        self.d.rpush(b"l", b"abc")
        self.d.rpush(b"l", 1)
        self.assertEqual(self.d.free_space(), 8192 - ENTRY_OVERHEAD - 1 - 2 * ITEM_OVERHEAD - 3 - 8)
        self.assertIs(self.d.expire(b"l", 1), True)
        self.clock.now += 2
        self.assertEqual(self.d.rpush(b"l", b"fresh"), 1)  # the expired list is replaced
        self.d.set(b"l", b"plain")
        self.assertEqual(self.d.free_space(), 8192 - ENTRY_OVERHEAD - 1 - 5)

    def test_push_never_drops_entries(self) -> None:
        for number in range(7):
            self.d.set(b"%d" % number, b"x" * 1000)
        self.assertEqual(self.d.rpush(b"l", b"x" * 1000), (False, "no memory"))
        self.assertEqual(len(self.d.get_keys(0)), 7)

    def test_close_removes_the_creators_directory_only(self) -> None:
        zone = SharedDictZone.create([("z", 8192)])
        path = zone.path
        self.assertIs(SharedDictZone.attach(path), zone)  # one environment per process
        zone.dicts()[0].set(b"k", b"v")
        zone.close()
        self.assertFalse(os.path.exists(path))


class CrossProcessTests(SynchronousTestCase):
    def test_incr_is_atomic_across_processes(self) -> None:
        """Two processes on one zone, as two workers: every increment counts, and each
        value is handed to exactly one caller."""
        zone = _zone(self, ("counters", 1024 * 1024))
        script = ("import sys\n"
                  "from kongish.lua.shared_dict import SharedDictZone\n"
                  "d = SharedDictZone.attach(sys.argv[1]).dicts()[0]\n"
                  "print(' '.join(str(int(d.incr(b'hits', 1, 0)[0])) for _ in range(int(sys.argv[2]))))\n")
        source = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join([source, *sys.path]))
        processes = [subprocess.Popen([sys.executable, "-c", script, zone.path, "2000"],
                                      stdout=subprocess.PIPE, env=environment) for _ in range(2)]
        outputs = [process.communicate(timeout=120)[0] for process in processes]
        self.assertEqual([process.returncode for process in processes], [0, 0])
        values = [int(value) for output in outputs for value in output.split()]
        self.assertEqual(sorted(values), list(range(1, 4001)))
        self.assertEqual(zone.dicts()[0].get(b"hits"), 4000.0)


# A model of nginx's rules, for the property test ------------------------------------------

@attrs.define
class _ModelEntry:
    kind: str  # "string", "number", "boolean", "list"
    value: Any
    flags: int
    expires: float  # ms; inf: never


@attrs.define
class _Model:
    """What a dict should hold: entries oldest first, in plain Python."""

    capacity: int
    now: int = 1_000_000
    entries: OrderedDict[bytes, _ModelEntry] = attrs.Factory(OrderedDict)

    def cost(self, key: bytes, entry: _ModelEntry) -> int:
        if entry.kind == "list":
            return ENTRY_OVERHEAD + len(key) + sum(ITEM_OVERHEAD + _size(item) for item in entry.value)
        return ENTRY_OVERHEAD + len(key) + _size(entry.value)

    @property
    def used(self) -> int:
        return sum(self.cost(key, entry) for key, entry in self.entries.items())

    def expiry(self, exptime: float) -> float:
        return self.now + int(exptime * 1000) if exptime > 0 else float("inf")

    def lookup(self, key: bytes) -> _ModelEntry | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def gone(self, entry: _ModelEntry | None) -> bool:
        return entry is None or entry.expires < self.now

    def drop_oldest(self, forced: bool) -> int:
        freed = 0
        for key in list(self.entries)[:3 if forced else 2]:
            if (freed or not forced) and self.entries[key].expires > self.now:
                break
            del self.entries[key]
            freed += 1
        return freed

    def room(self, need: int, safe: bool) -> bool | None:
        if self.used + need <= self.capacity:
            return False
        if safe or need > self.capacity:
            return None
        while self.used + need > self.capacity:
            if not self.drop_oldest(True):
                return None
        return True

    def saved(self) -> OrderedDict[bytes, _ModelEntry]:
        """A copy to go back to: the store's failed calls change nothing."""
        return OrderedDict((key, attrs.evolve(entry, value=list(entry.value) if entry.kind == "list"
                                              else entry.value)) for key, entry in self.entries.items())

    def store(self, operation: str, key: bytes, value: Any, exptime: float, flags: int) -> Any:
        saved = self.saved()
        if value is None and operation in ("add", "safe_add", "replace"):
            return False, "attempt to add or replace nil values", False
        self.drop_oldest(False)
        entry = self.lookup(key)
        if operation == "replace" and self.gone(entry):
            return False, "not found", False
        if operation in ("add", "safe_add") and not self.gone(entry):
            return False, "exists", False
        self.entries.pop(key, None)
        if value is None:
            return True, None, False
        new = _ModelEntry(_kind(value), float(value) if _kind(value) == "number" else value, flags,
                          self.expiry(exptime))
        forcible = self.room(self.cost(key, new), operation.startswith("safe"))
        if forcible is None:
            self.entries = saved
            return False, "no memory", False
        self.entries[key] = new
        return True, None, forcible

    def get(self, key: bytes, stale: bool) -> Any:
        if not stale:
            self.drop_oldest(False)
        entry = self.lookup(key)
        if entry is None or (not stale and self.gone(entry)):
            return None
        if entry.kind == "list":
            return None, "value is a list"
        if stale:
            return entry.value, entry.flags or None, self.gone(entry)
        return (entry.value, entry.flags) if entry.flags else entry.value

    def incr(self, key: bytes, value: float, init: float | None) -> Any:
        saved = self.saved()
        self.drop_oldest(False)
        entry = self.lookup(key)
        if not self.gone(entry):
            assert entry is not None
            if entry.kind != "number":
                return None, "not a number"
            entry.value += value
            return entry.value if init is None else (entry.value, None, False)
        if init is None:
            return None, "not found"
        self.entries.pop(key, None)
        new = _ModelEntry("number", float(init + value), 0, float("inf"))
        forcible = self.room(self.cost(key, new), False)
        if forcible is None:
            self.entries = saved
            return None, "no memory"
        self.entries[key] = new
        return new.value, None, forcible

    def push(self, key: bytes, value: Any, left: bool) -> Any:
        saved = self.saved()
        self.drop_oldest(False)
        entry = self.lookup(key)
        if entry is not None and self.gone(entry):
            del self.entries[key]
            entry = None
        if entry is not None and entry.kind != "list":
            return None, "value not a list"
        item = float(value) if type(value) is int else value
        need = ITEM_OVERHEAD + _size(item) + (ENTRY_OVERHEAD + len(key) if entry is None else 0)
        if self.used + need > self.capacity:
            self.entries = saved
            return False, "no memory"
        if entry is None:
            entry = self.entries[key] = _ModelEntry("list", [], 0, float("inf"))
        if left:
            entry.value.insert(0, item)
        else:
            entry.value.append(item)
        return len(entry.value)

    def pop(self, key: bytes, left: bool) -> Any:
        self.drop_oldest(False)
        entry = self.lookup(key)
        if self.gone(entry):
            return None
        assert entry is not None
        if entry.kind != "list":
            return None, "value not a list"
        item = entry.value.pop(0 if left else -1)
        if not entry.value:
            del self.entries[key]
        return item

    def ttl(self, key: bytes) -> Any:
        entry = self.lookup(key)
        if self.gone(entry):
            return None, "not found"
        assert entry is not None
        return 0 if entry.expires == float("inf") else (entry.expires - self.now) / 1000

    def expire(self, key: bytes, exptime: float) -> Any:
        entry = self.lookup(key)
        if self.gone(entry):
            return None, "not found"
        assert entry is not None
        entry.expires = self.expiry(exptime)
        return True

    def flush_all(self) -> None:
        for entry in self.entries.values():
            entry.expires = float("-inf")
        self.drop_oldest(True)

    def flush_expired(self, count: int) -> int:
        freed = 0
        for key in list(self.entries):
            if self.entries[key].expires <= self.now:
                del self.entries[key]
                freed += 1
                if freed == count:
                    break
        return freed

    def keys(self) -> list[bytes]:
        return [key for key, entry in self.entries.items() if entry.expires > self.now]


def _kind(value: Any) -> str:
    if type(value) is bytes:
        return "string"
    return "boolean" if type(value) is bool else "number"


def _size(value: Any) -> int:
    if type(value) is bytes:
        return len(value)
    return 1 if type(value) is bool else 8


_KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", LONG_KEY])
_VALUES = st.one_of(st.sampled_from([b"", b"v", b"x" * 300, b"y" * 1500, b"z" * 3000]),
                    st.integers(-5, 5), st.booleans())
_EXPTIMES = st.sampled_from([0, 0, 0.25, 0.5, 1, 2])
_OPERATIONS = st.one_of(
    st.tuples(st.sampled_from(["set", "safe_set", "add", "safe_add", "replace"]), _KEYS,
              st.one_of(_VALUES, st.none()), _EXPTIMES, st.sampled_from([0, 0, 5])),
    st.tuples(st.just("delete"), _KEYS),
    st.tuples(st.just("incr"), _KEYS, st.integers(-3, 3), st.sampled_from([None, 0, 10])),
    st.tuples(st.sampled_from(["get", "get_stale", "ttl", "lpop", "rpop", "llen"]), _KEYS),
    st.tuples(st.just("expire"), _KEYS, _EXPTIMES),
    st.tuples(st.sampled_from(["lpush", "rpush"]), _KEYS,
              st.one_of(st.sampled_from([b"i", b"j" * 400]), st.integers(0, 3))),
    st.tuples(st.just("flush_all")),
    st.tuples(st.just("flush_expired"), st.sampled_from([0, 1, 2])),
    st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1])),
)


class StorePropertyTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None, derandomize=True)
    @given(st.lists(_OPERATIONS, max_size=60))
    def test_the_store_keeps_nginx_rules(self, operations: list[tuple[Any, ...]]) -> None:
        """Every answer, the keys (oldest first) and the free space match the model's after
        each call, evictions and expiry included."""
        clock = _Clock()
        zone = SharedDictZone.create([("d", 8192)])
        try:
            (store,) = zone.dicts(clock)
            model = _Model(8192, now=int(clock.now * 1000))
            for operation in operations:
                name, args = operation[0], operation[1:]
                if name == "advance":
                    clock.now += args[0]
                    model.now = int(clock.now * 1000)
                    continue
                self.assertEqual(_call(store, name, args), _apply(model, name, args), operation)
                self.assertEqual(store.get_keys(0), model.keys(), operation)
                self.assertEqual(store.free_space(), max(0, model.capacity - model.used), operation)
        finally:
            zone.close()


def _call(store: SharedDict, name: str, args: tuple[Any, ...]) -> Any:
    if name in ("set", "safe_set", "add", "safe_add", "replace"):
        return getattr(store, name)(*args)
    if name == "incr":
        key, value, init = args
        return store.incr(key, value, init)
    return getattr(store, name)(*args)


def _apply(model: _Model, name: str, args: tuple[Any, ...]) -> Any:
    if name in ("set", "safe_set", "add", "safe_add", "replace"):
        return model.store(name, *args)
    if name == "delete":
        return model.store("set", args[0], None, 0, 0)
    if name in ("get", "get_stale"):
        return model.get(args[0], name == "get_stale")
    if name in ("lpush", "rpush"):
        return model.push(args[0], args[1], name == "lpush")
    if name in ("lpop", "rpop"):
        return model.pop(args[0], name == "lpop")
    if name == "llen":
        model.drop_oldest(False)
        entry = model.lookup(args[0])
        if model.gone(entry):
            return 0
        assert entry is not None
        return len(entry.value) if entry.kind == "list" else (None, "value not a list")
    return getattr(model, name)(*args)


# Through the real engine and sandbox --------------------------------------------------------

class LuaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lua = LuaHarness.start({"nginx_http_lua_shared_dict": "cache 1m; lua_shared_dict small 8k"})

    def _body(self, *sources: str) -> bytes:
        context = self.lua.request()
        self.successResultOf(self.lua.run(list(sources), context))
        return b"".join(context.response.body)

    def test_errors_are_lua_strings(self) -> None:
        body = self._body("""
            local d = ngx.shared.cache
            d:add('lock', 1)
            local _, exists = d:add('lock', 1)
            local _, missing = d:incr('absent', 1)
            local _, not_list = d:lpush('lock', 'x')
            local _, no_memory = d:safe_set('big', string.rep('x', 2 * 1024 * 1024))
            ngx.say(type(exists), ' ', exists == 'exists', ' ', missing == 'not found', ' ',
                    not_list == 'value not a list', ' ', no_memory == 'no memory', ' ', 'err: ' .. exists)
        """)
        self.assertEqual(body, b"string true true true true err: exists\n")

    def test_no_time_or_count_that_is_not_finite(self) -> None:
        for call, message in [("d:set('k', 1, math.huge)", 'bad "exptime" argument'),
                              ("d:set('k', 1, 0/0)", 'bad "exptime" argument'),
                              ("d:set('k', 1, 0, 0/0)", 'bad "flags" argument'),
                              ("d:expire('k', math.huge)", 'bad "exptime" argument'),
                              ("d:incr('k', 0/0)", 'bad "value" argument'),
                              ("d:incr('k', 1, 0, math.huge)", 'bad "init_ttl" argument'),
                              ("d:get_keys(0/0)", "bad argument #1 to 'get_keys'")]:
            body = self._body(f"local d = ngx.shared.cache "
                              f"local ok, err = pcall(function() return {call} end) "
                              "ngx.say(type(err), ' ', err)")
            self.assertTrue(body.startswith(b"string "), (call, body))
            self.assertIn(message.encode(), body, call)

    def test_methods_answer_as_lua_resty_core(self) -> None:
        body = self._body("""
            local d = ngx.shared.cache
            local function show(...)
              local out = {select('#', ...)}
              for i = 1, select('#', ...) do out[#out + 1] = tostring((select(i, ...))) end
              ngx.say(table.concat(out, ' '))
            end
            show(d:set('k', 'v', 0, 5))
            show(d:get('k'))
            show(d:get_stale('k'))
            show(d:get('missing'))
            show(d:add('k', 'w'))
            show(d:replace('nope', 1))
            show(d:safe_set('big', string.rep('x', 2 * 1024 * 1024)))
            show(d:incr('n', 1))
            show(d:incr('n', 1, 41))
            show(d:incr('n', 1))
            show(d:incr('k', 1))
            show(d:set('t', {}))
            show(d:set(nil, 1))
            show(d:get(''))
            show(d:set(12, true))
            show(d:get('12'))
            show(d:ttl('k'))
            show(d:expire('k', 10))
            show(d:ttl('k'))
            show(d:delete('k'))
            show(d:rpush('l', 'a'), d:lpush('l', 2), d:llen('l'), d:lpop('l'), d:rpop('l'), d:llen('l'))
            show(d:lpop('l'))
            d:rpush('l', 'b')
            show(d:get('l'))
            show(d:capacity(), ngx.shared.small:capacity(), ngx.shared.small:free_space())
            show(d:flush_expired(), d:flush_all())
            show(ngx.shared.missing, type(ngx.shared))
        """)
        self.assertEqual(body.decode().splitlines(), [
            "3 true nil false", "2 v 5", "3 v 5 false", "1 nil", "3 false exists false",
            "3 false not found false", "3 false no memory false", "2 nil not found",
            "3 42 nil false", "1 43", "2 nil not a number", "2 nil bad value type",
            "2 nil nil key", "2 nil empty key", "3 true nil false", "1 true", "1 0", "1 true",
            "1 10", "3 true nil false", "6 1 2 2 2 a 0", "1 nil", "2 nil value is a list",
            "3 1048576 8192 8192", "1 0", "2 nil table"])

    def test_dicts_are_read_only_and_know_themselves(self) -> None:
        body = self._body("""
            local d = ngx.shared.cache
            local function why(...) ngx.say((select(2, pcall(...)):gsub('^%[string "[^"]*"%]:%d+: ', ''))) end
            why(d.get, 'k')
            why(d.set, {}, 'k', 'v')
            why(function() d.get = print end)
            why(function() ngx.shared.cache = {} end)
            why(function() d:set('k', 'v', -1) end)
            why(d.incr, d, 'k', 'x')
            why(d.incr, d, 'k', 1, nil, 5)
            why(d.expire, d, 'k')
        """)
        self.assertEqual(body.decode().splitlines(), [
            'bad "zone" argument', 'bad "zone" argument',
            "Cannot modify ngx.shared.cache.get. Protected by the sandbox.",
            "Cannot modify ngx.shared.cache. Protected by the sandbox.",
            'bad "exptime" argument', "bad value arg: number expected, got string",
            'must provide "init" when providing "init_ttl"', 'bad "exptime" argument'])

    def test_every_chunk_sees_the_same_dicts(self) -> None:
        self.assertEqual(self._body("ngx.shared.cache:set('from', 'first chunk')",
                                    "ngx.say(ngx.shared.cache:get('from'))"), b"first chunk\n")
        self.assertEqual(self._body("ngx.say((ngx.shared.cache:incr('runs', 1, 0)))"), b"1\n")
        self.assertEqual(self._body("ngx.say((ngx.shared.cache:incr('runs', 1, 0)))"), b"2\n")

    def test_expiry_follows_the_reactors_clock(self) -> None:
        self._body("ngx.shared.cache:set('k', 'v', 1.5)")
        self.lua.reactor.advance(1)
        self.assertEqual(self._body("ngx.say(ngx.shared.cache:get('k'), ' ', ngx.shared.cache:ttl('k'))"),
                         b"v 0.5\n")
        self.lua.reactor.advance(1)
        self.assertEqual(self._body("ngx.say(tostring(select(3, ngx.shared.cache:get_stale('k'))), ' ', "
                                    "tostring(ngx.shared.cache:get('k')))"), b"true nil\n")

    def test_get_keys_is_a_table_of_strings(self) -> None:
        body = self._body("""
            local d = ngx.shared.cache
            for i = 1, 5 do d:set('key' .. i, i) end
            local keys = d:get_keys(3)
            ngx.say(#keys, ' ', table.concat(keys, ','), ' ', #d:get_keys(), ' ', #d:get_keys(0))
        """)
        self.assertEqual(body, b"3 key1,key2,key3 5 5\n")

    def test_without_declared_dicts_ngx_shared_is_empty(self) -> None:
        lua = LuaHarness.start()
        context = lua.request()
        self.successResultOf(lua.run(["ngx.say(type(ngx.shared), ' ', tostring(ngx.shared.cache))"], context))
        self.assertEqual(context.response.body, [b"table nil\n"])

    def test_trusted_code_uses_the_same_dicts(self) -> None:
        lua = LuaHarness.start({"untrusted_lua": "on", "nginx_http_lua_shared_dict": "d 12k"})
        context = lua.request()
        code = "ngx.shared.d:set('k', 1) ngx.say(ngx.shared.d:incr('k', 1))"
        self.successResultOf(lua.run([code], context))
        self.assertEqual(context.response.body, [b"2\n"])


EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                       "rate_limit_shared_dict.lua")


class RateLimitExampleTests(SynchronousTestCase):
    """``examples/rate_limit_shared_dict.lua``, the very file README points to."""

    def test_the_sixth_request_in_a_window_gets_429(self) -> None:
        lua = LuaHarness.start({"nginx_http_lua_shared_dict": "rate_limit 1m"})
        with open(EXAMPLE, encoding="utf-8") as example:
            limiter = example.read()

        def request() -> tuple[int | None, bytes, Sequence[bytes] | None]:
            context = lua.request()
            self.successResultOf(lua.run([limiter, "ngx.say('hello') ngx.exit(200)"], context))
            response = context.response
            return (response.status, b"".join(response.body),
                    response.headers.getRawHeaders(b"X-RateLimit-Remaining"))

        self.assertEqual([request() for _ in range(5)],
                         [(200, b"hello\n", [b"%d" % left]) for left in (4, 3, 2, 1, 0)])
        status, body, remaining = request()
        self.assertEqual((status, remaining), (429, [b"0"]))
        self.assertIn(b"API rate limit exceeded", body)
        lua.reactor.advance(60)  # the next window
        self.assertEqual(request(), (200, b"hello\n", [b"4"]))


class SettingTests(SynchronousTestCase):
    def test_kongs_injected_directive_forms(self) -> None:
        self.assertEqual(parse_shared_dicts(None), ())
        self.assertEqual(parse_shared_dicts("counters 5m"), (("counters", 5 * 1024 * 1024),))
        self.assertEqual(parse_shared_dicts("a 12k; lua_shared_dict b 1048576;"),
                         (("a", 12 * 1024), ("b", 1048576)))
        settings = Settings.load(environ={"KONGISH_NGINX_HTTP_LUA_SHARED_DICT": "rate 1m"})
        self.assertEqual(settings.lua_shared_dicts, (("rate", 1024 * 1024),))
        self.assertEqual(Settings.load(environ={}).lua_shared_dicts, ())

    def test_what_nginx_would_refuse(self) -> None:
        for value, message in [
            ("a 5m; b 1m", "expected 'lua_shared_dict <name> <size>' after ';'"),
            ("a", "expected '<name> <size>'"),
            ("lua_shared_dict a 5m", "expected '<name> <size>'"),
            ("a 5x", 'invalid lua shared dict size "5x" of "a"'),
            ("a 4k", 'invalid lua shared dict size "4k" of "a" (at least 8k)'),
            ("a 1m; lua_shared_dict a 2m", 'lua_shared_dict "a" is duplicate'),
        ]:
            with self.assertRaises(ConfigError) as raised:
                Settings.load(environ={"KONGISH_NGINX_HTTP_LUA_SHARED_DICT": value})
            self.assertIn(message, str(raised.exception))
            self.assertTrue(str(raised.exception).startswith("nginx_http_lua_shared_dict: "))


# Two worker processes of a real twist kongish ----------------------------------------------

#: Counts in the node's dict, then keeps its worker busy for 20 ms, so that requests arriving
#: meanwhile are accepted by the other worker.
COUNT = ("local hits = ngx.shared.counters:incr('hits', 1, 0) "
         "local started = ngx.now() repeat ngx.update_time() until ngx.now() - started > 0.02 "
         "ngx.say(hits, ' ', ngx.worker.pid()) return ngx.exit(200)")


class SharedDictWorkerTests(_Workers):
    @deferred
    async def test_workers_share_one_count(self) -> None:
        await self._start_workers(nginx_http_lua_shared_dict="counters 1m")
        await self._route("count", COUNT)
        await self._route("read", "ngx.say(ngx.shared.counters:get('hits')) return ngx.exit(200)")
        values: list[int] = []
        pids: set[int] = set()
        for _ in range(50):  # a batch reaches both workers as a rule; this bounds the wait for one
            for status, body in await self._many("/count", 20):
                self.assertEqual(status, 200, body)
                hits, pid = body.split()
                values.append(int(hits))
                pids.add(int(pid))
            if len(pids) == 2:
                break
        self.assertEqual(sorted(pids), await self._worker_pids())
        self.assertEqual(sorted(values), list(range(1, len(values) + 1)))
        self.assertEqual(await self._get("/read"), (200, b"%d\n" % len(values)))

    @deferred
    async def test_the_zone_is_removed_at_stop(self) -> None:
        temporary = os.path.abspath(self.mktemp())
        os.makedirs(temporary)
        await self._launch({"KONGISH_NGINX_WORKER_PROCESSES": "2", "TMPDIR": temporary,
                            "KONGISH_NGINX_HTTP_LUA_SHARED_DICT": "counters 1m"})
        zones = [name for name in os.listdir(temporary) if name.startswith("kongish-shared-dicts-")]
        self.assertEqual(len(zones), 1)
        assert self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGTERM)
        await self.process.ended
        self.assertEqual([name for name in os.listdir(temporary) if name.startswith("kongish-shared")], [])
