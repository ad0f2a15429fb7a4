-- kong.cache (Kong 3.x PDK): one table per process, like a worker's L1 cache.
--
-- Least recently used entries go first once the cache holds info.cache_entries
-- entries or info.cache_bytes: it lives in the Lua VM, whose memory cap it must
-- not fill. An entry counts its key and string value, a nominal 64 bytes for any
-- other value, and what the entry itself takes (its table, slot and key string).

local P, info = ...

local error, pcall, tostring, type = error, pcall, tostring, type

local NIL = {}
local NOMINAL_SIZE = 64
local ENTRY_SIZE = 384
local entries, count, bytes = {}, 0, 0
-- A ring of entries around a sentinel: its ``older`` is the most recently used
-- entry, its ``newer`` the least recently used one, which goes first.
local ring = {}
ring.newer, ring.older = ring, ring
local cache = {}

local function unlink(entry)
  entry.newer.older, entry.older.newer = entry.older, entry.newer
end

local function link_first(entry)
  entry.older, entry.newer = ring.older, ring
  ring.older.newer = entry
  ring.older = entry
end

local function drop(entry)
  unlink(entry)
  entries[entry.key] = nil
  count, bytes = count - 1, bytes - entry.size
end

local function lookup(key)
  local entry = entries[key]
  if entry == nil then return nil end
  if entry.expires ~= nil and entry.expires <= P.now() then
    drop(entry)
    return nil
  end
  unlink(entry)
  link_first(entry)
  return entry
end

local function store(key, value, ttl)
  local old = entries[key]
  if old ~= nil then drop(old) end
  local entry = {key = key, value = value == nil and NIL or value,
                 expires = ttl > 0 and P.now() + ttl or nil,
                 size = ENTRY_SIZE + #key + (type(value) == "string" and #value or NOMINAL_SIZE)}
  entries[key] = entry
  link_first(entry)
  count, bytes = count + 1, bytes + entry.size
  while (count > info.cache_entries or bytes > info.cache_bytes) and ring.newer ~= ring do
    drop(ring.newer)
  end
end

function cache:get(key, opts, callback, ...)
  if type(key) ~= "string" then error("key must be a string", 2) end
  if callback ~= nil and type(callback) ~= "function" then error("callback must be a function", 2) end
  local entry = lookup(key)
  if entry ~= nil then
    if entry.value == NIL then return nil end
    return entry.value
  end
  if callback == nil then return nil end
  local ok, value, err, ttl = pcall(callback, ...)
  if not ok then return nil, "failed to get from node cache: callback threw an error: " .. tostring(value) end
  if err ~= nil then return nil, "failed to get from node cache: " .. tostring(err) end
  opts = opts or {}
  store(key, value, ttl or (value == nil and opts.neg_ttl or opts.ttl) or info.cache_ttl)
  return value
end

function cache:probe(key)
  if type(key) ~= "string" then error("key must be a string", 2) end
  local entry = lookup(key)
  if entry == nil then return nil end
  local ttl = entry.expires and entry.expires - P.now() or 0
  return ttl, nil, entry.value ~= NIL and entry.value or nil
end

function cache:invalidate(key)
  if type(key) ~= "string" then error("key must be a string", 2) end
  local entry = entries[key]
  if entry ~= nil then drop(entry) end
  return true
end
cache.invalidate_local = cache.invalidate

function cache:purge()
  entries, count, bytes = {}, 0, 0
  ring.newer, ring.older = ring, ring
  return true
end

return cache
