"""``ngx.shared.DICT``: OpenResty's ``lua_shared_dict``, shared by every worker process of a node.

nginx keeps each dict in a shared memory zone under a mutex, so that ``incr`` and ``add``
are atomic across its workers. kongish keeps them in one LMDB environment per node
(:class:`SharedDictZone`): memory-mapped, so a call costs microseconds and no server or
socket; multi-process, so every worker opens the master's environment; and
transactional, so every call runs in one write transaction and two workers never
increment the same count at once. Every call is synchronous, as in OpenResty.

Each dict keeps nginx's rules: entries in least-recently-used order (every lookup of a
key, ``get`` included, makes it the most recent), a size that ``set``, ``add`` and
``incr`` make room within by dropping the least recently used entries (and say so with
``forcible``), the ``safe_*`` calls that answer ``no memory`` instead, and two expired
entries dropped from the old end at each call. Values answer as lua-resty-core's
``ngx.shared.DICT`` methods do, tuple for tuple (see :class:`SharedDict`).

How the size is counted: each entry costs :data:`ENTRY_OVERHEAD` bytes plus its key and
value (8 for a number, 1 for a boolean), and each list item :data:`ITEM_OVERHEAD` bytes
plus its value; nginx's slab allocator rounds to its own slot sizes, so the number of
entries that fit differs a little from nginx's. ``capacity()`` is the declared size and
``free_space()`` what is left of it by that count.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import attrs
import lmdb

#: What one entry costs beyond its key and value (nginx's rbtree node and shdict header).
ENTRY_OVERHEAD = 64
#: What one list item costs beyond its value (nginx's list node).
ITEM_OVERHEAD = 24
#: lua-nginx-module refuses smaller zones ("invalid lua shared dict size").
MIN_SIZE = 8192
#: ``get_keys()`` without a count returns at most this many keys.
DEFAULT_KEYS = 1024
MAX_KEY = 65535

# Operations of ``store``: lua-nginx-module's flags.
SET, ADD, REPLACE, SAFE = 0, 1, 2, 4

# Value types, numbered as Lua's (and lua-nginx-module's) are.
_BOOLEAN, _NUMBER, _STRING, _LIST = 1, 3, 4, 5
#: An entry's expiry in milliseconds: never, and (``flush_all``) long ago.
_NEVER = 2**63 - 1
_FLUSHED = -(2**63)
#: type, flags, expiry (ms), LRU sequence number, length of the key kept in the record.
_RECORD = struct.Struct("<BIqQI")
#: bytes used, last LRU sequence number given.
_STATE = struct.Struct("<qQ")
_SEQ = struct.Struct(">Q")
_DOUBLE = struct.Struct("<d")
#: a list's first and past-last item indexes, and its items' cost.
_LIST_HEAD = struct.Struct("<qqQ")
_INDEX = struct.Struct(">Q")
_INDEX_BIAS = 2**63
#: LMDB keys are at most 511 bytes: longer dict keys are stored under their SHA-256.
_INLINE_KEY = 500
_ZONE_FILE = "zone.json"

Value = bytes | float | bool


class _NoMemory(Exception):
    """The dict (or the LMDB map under it) has no room: the call answers ``no memory``."""


def key_problem(key: bytes) -> str | None:
    """lua-resty-core's answer for a key it refuses, or None."""
    if not key:
        return "empty key"
    if len(key) > MAX_KEY:
        return "key too long"
    return None


def _stored_key(key: bytes) -> bytes:
    if len(key) <= _INLINE_KEY:
        return b"\x00" + key
    return b"\x01" + hashlib.sha256(key).digest()


def _value_kind(value: Any) -> int | None:
    if type(value) is bytes:
        return _STRING
    if type(value) is bool:
        return _BOOLEAN
    if type(value) in (int, float):
        return _NUMBER
    return None


def _value_cost(kind: int, value: Any) -> int:
    if kind == _STRING:
        return len(value)
    return 8 if kind == _NUMBER else 1


@attrs.define(slots=True)
class _Entry:
    kind: int
    flags: int
    #: Milliseconds, as the dict's clock counts them; ``_NEVER`` for no expiry.
    expires: int
    seq: int
    key: bytes
    #: bytes, float or bool; a list's (first index, past-last index, items' cost).
    value: Any

    @property
    def cost(self) -> int:
        if self.kind == _LIST:
            return ENTRY_OVERHEAD + len(self.key) + self.value[2]
        return ENTRY_OVERHEAD + len(self.key) + _value_cost(self.kind, self.value)

    def pack(self, stored: bytes) -> bytes:
        kept = self.key if stored[0] == 1 else b""
        head = _RECORD.pack(self.kind, self.flags, self.expires, self.seq, len(kept)) + kept
        if self.kind == _STRING:
            return head + self.value
        if self.kind == _NUMBER:
            return head + _DOUBLE.pack(self.value)
        if self.kind == _BOOLEAN:
            return head + (b"\x01" if self.value else b"\x00")
        return head + _LIST_HEAD.pack(*self.value)

    @classmethod
    def unpack(cls, stored: bytes, record: bytes) -> _Entry:
        kind, flags, expires, seq, kept = _RECORD.unpack_from(record)
        start = _RECORD.size + kept
        key = record[_RECORD.size:start] if kept else stored[1:]
        body = record[start:]
        value: Any
        if kind == _STRING:
            value = bytes(body)
        elif kind == _NUMBER:
            value = _DOUBLE.unpack(body)[0]
        elif kind == _BOOLEAN:
            value = body == b"\x01"
        else:
            value = _LIST_HEAD.unpack(body)
        return cls(kind, flags, expires, seq, key, value)


def _read(txn: lmdb.Transaction, key: bytes, db: Any) -> bytes | None:
    """``txn.get``: bytes, as the environment is opened without ``buffers``."""
    return cast("bytes | None", txn.get(key, db=db))


def _pack_item(value: Any) -> bytes:
    return b"s" + value if type(value) is bytes else b"n" + _DOUBLE.pack(value)


def _unpack_item(item: bytes) -> Value:
    return item[1:] if item[:1] == b"s" else _DOUBLE.unpack(item[1:])[0]


@attrs.frozen
class _Handles:
    """One dict's LMDB databases: entries by key, keys by LRU sequence, list items."""

    data: Any
    lru: Any
    items: Any
    meta: Any
    state_key: bytes


@attrs.define(eq=False)
class _Session:
    """One call's write transaction on one dict: nginx's operations under its zone's mutex."""

    txn: lmdb.Transaction
    handles: _Handles
    capacity: int
    now: int
    used: int = 0
    seq: int = 0

    def load(self) -> None:
        state = _read(self.txn, self.handles.state_key, self.handles.meta)
        if state is not None:
            self.used, self.seq = _STATE.unpack(state)

    def save(self) -> None:
        self.txn.put(self.handles.state_key, _STATE.pack(self.used, self.seq), db=self.handles.meta)

    def expired(self, entry: _Entry) -> bool:
        """nginx's lookup: an entry is gone once its expiry has passed."""
        return entry.expires < self.now

    def lookup(self, stored: bytes) -> _Entry | None:
        """The entry, expired or not, made the most recently used (as nginx's lookup does)."""
        record = _read(self.txn, stored, self.handles.data)
        if record is None:
            return None
        entry = _Entry.unpack(stored, record)
        self.put(stored, entry)
        return entry

    def put(self, stored: bytes, entry: _Entry) -> None:
        """Write ``entry`` as the most recently used."""
        handles = self.handles
        if entry.seq:
            self.txn.delete(_SEQ.pack(entry.seq), db=handles.lru)
        self.seq += 1
        entry.seq = self.seq
        self.txn.put(_SEQ.pack(entry.seq), stored, db=handles.lru)
        self.txn.put(stored, entry.pack(stored), db=handles.data)

    def insert(self, stored: bytes, entry: _Entry) -> None:
        self.used += entry.cost
        self.put(stored, entry)

    def remove(self, stored: bytes, entry: _Entry) -> None:
        handles = self.handles
        self.txn.delete(stored, db=handles.data)
        self.txn.delete(_SEQ.pack(entry.seq), db=handles.lru)
        if entry.kind == _LIST:
            first, end, _ = entry.value
            for index in range(first, end):
                self.txn.delete(stored + _INDEX.pack(index + _INDEX_BIAS), db=handles.items)
        self.used -= entry.cost

    def oldest(self, count: int = 0) -> Iterator[tuple[bytes, _Entry]]:
        """Entries from the least recently used on (``count`` of them; 0: all), untouched."""
        data = self.handles.data
        with self.txn.cursor(db=self.handles.lru) as cursor:
            for number, (_, value) in enumerate(cursor.iternext(), 1):
                stored = cast(bytes, value)
                record = _read(self.txn, stored, data)
                assert record is not None, "every LRU entry names an entry"
                yield stored, _Entry.unpack(stored, record)
                if number == count:
                    return

    def _drop_oldest(self, forced: bool) -> int:
        """nginx's ``expire(ctx, n)``: drop the oldest entry if ``forced``, then the oldest
        while they have expired (by ``flush_expired``'s rule), three entries at most (two
        unforced); how many were dropped."""
        freed = 0
        for stored, entry in list(self.oldest(3 if forced else 2)):
            if (freed or not forced) and entry.expires > self.now:
                break
            self.remove(stored, entry)
            freed += 1
        return freed

    def expire_oldest(self) -> None:
        """What every nginx call does first: drop up to two expired entries at the old end."""
        self._drop_oldest(forced=False)

    def make_room(self, need: int, safe: bool) -> bool:
        """Room for ``need`` more bytes, dropping least recently used entries unless ``safe``;
        whether any was dropped (``forcible``)."""
        if self.used + need <= self.capacity:
            return False
        if safe or need > self.capacity:
            raise _NoMemory()
        while self.used + need > self.capacity:
            if self._drop_oldest(forced=True) == 0:
                raise _NoMemory()
        return True


@attrs.define(eq=False)
class SharedDict:
    """One ``lua_shared_dict``, as its Lua methods see it (lua-resty-core's return values).

    Keys are bytes (Lua's ``tostring`` is applied before); values bytes, numbers (float),
    booleans, and None to delete. ``clock`` gives seconds (a reactor's ``seconds``): every
    process of a node reads the same wall clock.
    """

    name: str
    capacity: int
    _env: lmdb.Environment
    _handles: _Handles
    _clock: Callable[[], float] = time.time
    #: The zone, kept while a dict is in use (a zone removes its directory once collected).
    _zone: Any = None

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _expiry(self, exptime: float) -> int:
        if exptime < 0:
            raise ValueError('bad "exptime" argument')
        return self._now() + int(exptime * 1000) if exptime > 0 else _NEVER

    def _keyed(self, key: bytes, work: Callable[[_Session], tuple[Any, bool]], no_memory: Any) -> Any:
        problem = key_problem(key)
        if problem is not None:
            return None, problem
        return self._call(work, no_memory)

    def _call(self, work: Callable[[_Session], tuple[Any, bool]], no_memory: Any) -> Any:
        """``work`` in one write transaction, kept if it says so; ``no_memory`` when the
        dict or the LMDB map has no room left."""
        txn = self._env.begin(write=True)
        try:
            session = _Session(txn, self._handles, self.capacity, self._now())
            session.load()
            answer, keep = work(session)
            if keep:
                session.save()
                txn.commit()
            else:
                txn.abort()
            return answer
        except (_NoMemory, lmdb.MapFullError):
            txn.abort()
            return no_memory
        except BaseException:
            txn.abort()
            raise

    # get, get_stale

    def get(self, key: bytes) -> Any:
        """``value`` or ``value, flags`` (flags when not 0), nil when missing or expired."""
        def work(session: _Session) -> tuple[Any, bool]:
            session.expire_oldest()
            entry = session.lookup(_stored_key(key))
            if entry is None or session.expired(entry):
                return None, True
            if entry.kind == _LIST:
                return (None, "value is a list"), True
            return ((entry.value, entry.flags) if entry.flags else entry.value), True
        return self._keyed(key, work, None)

    def get_stale(self, key: bytes) -> Any:
        """``value, flags, stale``: an expired value too, until it is dropped."""
        def work(session: _Session) -> tuple[Any, bool]:
            entry = session.lookup(_stored_key(key))
            if entry is None:
                return None, True
            if entry.kind == _LIST:
                return (None, "value is a list"), True
            return (entry.value, entry.flags or None, session.expired(entry)), True
        return self._keyed(key, work, None)

    # set, safe_set, add, safe_add, replace, delete

    def store(self, operation: int, key: bytes, value: Any, exptime: float = 0,
              flags: int = 0) -> Any:
        """``ok, err, forcible``: ``set`` and its kin (``operation``: ``SET``, ``ADD``,
        ``REPLACE``, or'ed with ``SAFE``); ``value`` None deletes."""
        problem = key_problem(key)
        if problem is not None:
            return None, problem
        kind = None if value is None else _value_kind(value)
        if value is not None and kind is None:
            return None, "bad value type"
        if kind is None and operation & (ADD | REPLACE):
            return False, "attempt to add or replace nil values", False
        expires = self._expiry(exptime)
        flags = int(flags) & 0xFFFFFFFF

        def work(session: _Session) -> tuple[Any, bool]:
            session.expire_oldest()
            stored = _stored_key(key)
            entry = session.lookup(stored)
            present = entry is not None and not session.expired(entry)
            if operation & REPLACE and not present:
                return (False, "not found", False), True
            if operation & ADD and present:
                return (False, "exists", False), True
            if entry is not None:
                session.remove(stored, entry)
            if kind is None:
                return (True, None, False), True
            new = _Entry(kind, flags, expires, 0, key, float(value) if kind == _NUMBER else value)
            forcible = session.make_room(new.cost, bool(operation & SAFE))
            session.insert(stored, new)
            return (True, None, forcible), True
        return self._call(work, (False, "no memory", False))

    def set(self, key: bytes, value: Any, exptime: float = 0, flags: int = 0) -> Any:
        return self.store(SET, key, value, exptime, flags)

    def safe_set(self, key: bytes, value: Any, exptime: float = 0, flags: int = 0) -> Any:
        return self.store(SET | SAFE, key, value, exptime, flags)

    def add(self, key: bytes, value: Any, exptime: float = 0, flags: int = 0) -> Any:
        return self.store(ADD, key, value, exptime, flags)

    def safe_add(self, key: bytes, value: Any, exptime: float = 0, flags: int = 0) -> Any:
        return self.store(ADD | SAFE, key, value, exptime, flags)

    def replace(self, key: bytes, value: Any, exptime: float = 0, flags: int = 0) -> Any:
        return self.store(REPLACE, key, value, exptime, flags)

    def delete(self, key: bytes) -> Any:
        return self.store(SET, key, None)

    # incr

    def incr(self, key: bytes, value: float, init: float | None = None, init_ttl: float = 0) -> Any:
        """The new number (``value, nil, forcible`` when given ``init``); a missing or expired
        key is ``init + value`` (expiring after ``init_ttl`` seconds), else ``not found``."""
        problem = key_problem(key)
        if problem is not None:
            return None, problem
        expires = self._expiry(init_ttl)

        def work(session: _Session) -> tuple[Any, bool]:
            session.expire_oldest()
            stored = _stored_key(key)
            entry = session.lookup(stored)
            if entry is not None and not session.expired(entry):
                if entry.kind != _NUMBER:
                    return (None, "not a number"), True
                entry.value += value
                session.put(stored, entry)
                return (entry.value if init is None else (entry.value, None, False)), True
            if init is None:
                return (None, "not found"), True
            if entry is not None:
                session.remove(stored, entry)
            new = _Entry(_NUMBER, 0, expires, 0, key, float(init + value))
            forcible = session.make_room(new.cost, safe=False)
            session.insert(stored, new)
            return (new.value, None, forcible), True
        return self._call(work, (None, "no memory"))

    # ttl, expire

    def ttl(self, key: bytes) -> Any:
        """Seconds left (0: never expires), or ``nil, "not found"``."""
        def work(session: _Session) -> tuple[Any, bool]:
            entry = session.lookup(_stored_key(key))
            if entry is None or session.expired(entry):
                return (None, "not found"), True
            return (0 if entry.expires == _NEVER else (entry.expires - session.now) / 1000), True
        return self._keyed(key, work, None)

    def expire(self, key: bytes, exptime: float) -> Any:
        """A key's new expiry, ``exptime`` seconds from now (0: never): true, or ``nil, "not found"``."""
        problem = key_problem(key)
        if problem is not None:
            return None, problem
        expires = self._expiry(exptime)

        def work(session: _Session) -> tuple[Any, bool]:
            stored = _stored_key(key)
            entry = session.lookup(stored)
            if entry is None or session.expired(entry):
                return (None, "not found"), True
            entry.expires = expires
            session.put(stored, entry)
            return True, True
        return self._call(work, None)

    # flush_all, flush_expired, get_keys

    def flush_all(self) -> None:
        """Every entry expires (``get_stale`` still reads it); the memory is freed as entries
        are dropped (``flush_expired``, or room made for new ones)."""
        def work(session: _Session) -> tuple[Any, bool]:
            for stored, entry in list(session.oldest()):
                entry.expires = _FLUSHED
                session.txn.put(stored, entry.pack(stored), db=self._handles.data)
            session._drop_oldest(forced=True)
            return None, True
        self._call(work, None)

    def flush_expired(self, max_count: int = 0) -> int:
        """Drops expired entries, oldest first, at most ``max_count`` (0: all); how many."""
        def work(session: _Session) -> tuple[Any, bool]:
            freed = 0
            for stored, entry in list(session.oldest()):
                if entry.expires <= session.now:
                    session.remove(stored, entry)
                    freed += 1
                    if freed == max_count:
                        break
            return freed, True
        return int(self._call(work, 0))

    def get_keys(self, max_count: int = DEFAULT_KEYS) -> list[bytes]:
        """Keys not expired, least recently used first, at most ``max_count`` (0: all)."""
        now = self._now()
        keys: list[bytes] = []
        with self._env.begin() as txn:
            session = _Session(txn, self._handles, self.capacity, now)
            for _, entry in session.oldest():
                if entry.expires > now:
                    keys.append(entry.key)
                    if len(keys) == max_count:
                        break
        return keys

    def free_space(self) -> int:
        """What is left of the declared size (see the module's note on how it is counted)."""
        with self._env.begin() as txn:
            session = _Session(txn, self._handles, self.capacity, 0)
            session.load()
            return max(0, self.capacity - session.used)

    # lists

    def push(self, key: bytes, value: Any, left: bool) -> Any:
        """``lpush``/``rpush``: the list's new length. No entry is dropped to make room."""
        problem = key_problem(key)
        if problem is not None:
            return None, problem
        if type(value) is bool or _value_kind(value) is None:
            return None, "bad value type"
        item = _pack_item(value if type(value) is bytes else float(value))

        def work(session: _Session) -> tuple[Any, bool]:
            session.expire_oldest()
            stored = _stored_key(key)
            entry = session.lookup(stored)
            if entry is not None and session.expired(entry):
                session.remove(stored, entry)
                entry = None
            if entry is not None and entry.kind != _LIST:
                return (None, "value not a list"), True
            item_cost = ITEM_OVERHEAD + len(item) - 1
            if entry is None:
                entry = _Entry(_LIST, 0, _NEVER, 0, key, (0, 0, 0))
                session.make_room(entry.cost + item_cost, safe=True)
                session.insert(stored, entry)
            else:
                session.make_room(item_cost, safe=True)
            first, end, cost = entry.value
            index = first - 1 if left else end
            session.txn.put(stored + _INDEX.pack(index + _INDEX_BIAS), item, db=self._handles.items)
            entry.value = (index, end, cost + item_cost) if left else (first, end + 1, cost + item_cost)
            session.used += item_cost
            session.put(stored, entry)
            return entry.value[1] - entry.value[0], True
        return self._call(work, (False, "no memory"))

    def lpush(self, key: bytes, value: Any) -> Any:
        return self.push(key, value, left=True)

    def rpush(self, key: bytes, value: Any) -> Any:
        return self.push(key, value, left=False)

    def lpop(self, key: bytes) -> Any:
        return self.pop(key, left=True)

    def rpop(self, key: bytes) -> Any:
        return self.pop(key, left=False)

    def pop(self, key: bytes, left: bool) -> Any:
        """``lpop``/``rpop``: the item, nil for no list; an emptied list is deleted."""
        def work(session: _Session) -> tuple[Any, bool]:
            session.expire_oldest()
            stored = _stored_key(key)
            entry = session.lookup(stored)
            if entry is None or session.expired(entry):
                return None, True
            if entry.kind != _LIST:
                return (None, "value not a list"), True
            first, end, cost = entry.value
            index = first if left else end - 1
            item_key = stored + _INDEX.pack(index + _INDEX_BIAS)
            item = _read(session.txn, item_key, self._handles.items)
            assert item is not None, "a list holds its items from first to end"
            session.txn.delete(item_key, db=self._handles.items)
            item_cost = ITEM_OVERHEAD + len(item) - 1
            entry.value = (first + 1, end, cost - item_cost) if left else (first, end - 1, cost - item_cost)
            session.used -= item_cost
            if entry.value[0] == entry.value[1]:
                session.remove(stored, entry)
            else:
                session.put(stored, entry)
            return _unpack_item(item), True
        return self._keyed(key, work, None)

    def llen(self, key: bytes) -> Any:
        """The list's length, 0 for no list."""
        def work(session: _Session) -> tuple[Any, bool]:
            session.expire_oldest()
            entry = session.lookup(_stored_key(key))
            if entry is None or session.expired(entry):
                return 0, True
            if entry.kind != _LIST:
                return (None, "value not a list"), True
            return entry.value[1] - entry.value[0], True
        return self._keyed(key, work, None)


#: Zones this process has open, by directory: LMDB must not open one environment twice
#: in one process, so a node's engine and its service share the service's.
_OPEN: dict[str, SharedDictZone] = {}


@attrs.define(eq=False)
class SharedDictZone:
    """One node's dicts: an LMDB environment in a directory its creator removes at close.

    The master of a node with workers creates it (:meth:`create`) and hands its ``path`` to
    the workers, which :meth:`attach`; a node in one process creates its own.
    """

    path: str
    #: (name, size in bytes) of each dict, as declared (``nginx_http_lua_shared_dict``).
    specs: tuple[tuple[str, int], ...]
    env: lmdb.Environment
    owner: bool
    _handles: tuple[_Handles, ...] = attrs.field(factory=tuple)
    _cleanup: Any = None

    @classmethod
    def create(cls, specs: Sequence[tuple[str, int]], directory: str | None = None, *,
               register: bool = True) -> SharedDictZone:
        """A new, empty zone in a temporary directory (under ``directory`` if given), removed
        at close or, failing that, when the zone is collected or the process exits.

        ``register``: other parts of this process may :meth:`attach` to it by path.
        """
        specs = tuple((str(name), int(size)) for name, size in specs)
        path = tempfile.mkdtemp(prefix="kongish-shared-dicts-", dir=directory)
        total = sum(size for _, size in specs)
        layout = {"specs": specs, "map_size": 4 * total + 32 * 1024 * 1024, "max_dbs": 3 * len(specs) + 1}
        with open(os.path.join(path, _ZONE_FILE), "w", encoding="utf-8") as zone_file:
            json.dump(layout, zone_file)  # a few bytes, once at start
        zone = cls._open(path, layout, owner=True)
        zone._cleanup = weakref.finalize(zone, shutil.rmtree, path, ignore_errors=True)
        if register:
            _OPEN[path] = zone
        return zone

    @classmethod
    def attach(cls, path: str) -> SharedDictZone:
        """The zone another process (the master) created at ``path``, with its dicts; this
        process's own if it has it open already."""
        if path in _OPEN:
            return _OPEN[path]
        with open(os.path.join(path, _ZONE_FILE), encoding="utf-8") as zone_file:
            layout = json.load(zone_file)
        zone = cls._open(path, layout, owner=False)
        # a worker killed mid-read leaves its reader slot taken, which keeps LMDB from reusing
        # pages; its replacement, attaching here, clears the slots of processes that are gone
        zone.env.reader_check()
        _OPEN[path] = zone
        return zone

    @classmethod
    def _open(cls, path: str, layout: dict[str, Any], owner: bool) -> SharedDictZone:
        env = lmdb.open(path, map_size=layout["map_size"], max_dbs=layout["max_dbs"], create=owner,
                        subdir=True, sync=False, metasync=False, readahead=False, meminit=False)
        specs = tuple((str(name), int(size)) for name, size in layout["specs"])
        meta = env.open_db(b"meta")
        handles = tuple(
            _Handles(env.open_db(b"%d:data" % index), env.open_db(b"%d:lru" % index),
                     env.open_db(b"%d:items" % index), meta, b"state:%d" % index)
            for index in range(len(specs)))
        return cls(path, specs, env, owner, handles)

    def dicts(self, clock: Callable[[], float] = time.time) -> list[SharedDict]:
        """Each declared dict, in declaration order, reading time from ``clock``."""
        return [SharedDict(name, size, self.env, handles, clock, self)
                for (name, size), handles in zip(self.specs, self._handles, strict=True)]

    def close(self) -> None:
        """Close the environment; its creator also removes the directory."""
        if _OPEN.get(self.path) is self:
            del _OPEN[self.path]
        self.env.close()
        if self._cleanup is not None:
            self._cleanup()


def lua_primitives(dicts: Sequence[SharedDict], table_from: Callable[[Any], Any],
                   reserve: Callable[[int], None],
                   refusal: Callable[[], str | None] = lambda: None) -> dict[bytes, Callable[..., Any]]:
    """The PDK primitives ``shared.lua`` calls, each given a dict's index first. Lua gets
    bytes, numbers, booleans and (``get_keys``) a table of strings, never a Python object.

    While ``refusal()`` says why (a dry run: the dicts are the live ones), every call that
    would change a dict answers ``nil, why`` (``false, why`` for a store) instead."""
    def keys(index: int, max_count: int) -> Any:
        found = dicts[int(index)].get_keys(int(max_count))
        reserve(sum(len(key) for key in found) + 16 * len(found))
        return table_from(found)

    def store(index: int, operation: int, key: bytes, value: Any, exptime: float, flags: float) -> Any:
        return dicts[int(index)].store(int(operation), key, value, exptime, int(flags))

    def incr(index: int, key: bytes, value: float, init: float | None, init_ttl: float) -> Any:
        return dicts[int(index)].incr(key, value, init, init_ttl)

    primitives: dict[bytes, Callable[..., Any]] = {
        b"shdict_get": lambda index, key: dicts[int(index)].get(key),
        b"shdict_get_stale": lambda index, key: dicts[int(index)].get_stale(key),
        b"shdict_store": store,
        b"shdict_incr": incr,
        b"shdict_ttl": lambda index, key: dicts[int(index)].ttl(key),
        b"shdict_expire": lambda index, key, exptime: dicts[int(index)].expire(key, exptime),
        b"shdict_flush_all": lambda index: dicts[int(index)].flush_all(),
        b"shdict_flush_expired": lambda index, count: dicts[int(index)].flush_expired(int(count)),
        b"shdict_get_keys": keys,
        b"shdict_capacity": lambda index: dicts[int(index)].capacity,
        b"shdict_free_space": lambda index: dicts[int(index)].free_space(),
        b"shdict_push": lambda index, key, value, left: dicts[int(index)].push(key, value, bool(left)),
        b"shdict_pop": lambda index, key, left: dicts[int(index)].pop(key, bool(left)),
        b"shdict_llen": lambda index, key: dicts[int(index)].llen(key),
    }
    for name in _WRITES:
        primitives[name] = _refusable(primitives[name], refusal, name == b"shdict_store")
    return {name: _lua_strings(primitive) for name, primitive in primitives.items()}


#: The primitives that change a dict.
_WRITES = (b"shdict_store", b"shdict_incr", b"shdict_expire", b"shdict_flush_all", b"shdict_flush_expired",
           b"shdict_push", b"shdict_pop")


def _refusable(primitive: Callable[..., Any], refusal: Callable[[], str | None],
               store: bool) -> Callable[..., Any]:
    def refused_or_done(*args: Any) -> Any:
        why = refusal()
        if why is None:
            return primitive(*args)
        return (False if store else None, why)
    return refused_or_done


def _lua_strings(primitive: Callable[..., Any]) -> Callable[..., Any]:
    """``primitive`` answering its error strings (``"exists"``, ``"not found"``...) as bytes:
    with ``encoding=None`` a Python ``str`` would reach Lua as a Python object, never equal
    to the Lua string ``"exists"``."""
    def answer(*args: Any) -> Any:
        result = primitive(*args)
        if type(result) is str:
            return result.encode()
        if type(result) is tuple:
            return tuple(item.encode() if type(item) is str else item for item in result)
        return result
    return answer
