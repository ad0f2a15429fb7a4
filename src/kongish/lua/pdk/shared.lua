-- ngx.shared: the node's lua_shared_dict dicts (nginx_http_lua_shared_dict), shared by
-- all its worker processes (kongish/lua/shared_dict.py keeps them in LMDB).
--
-- The methods answer as lua-resty-core's do (Kong loads resty.core): set and its kin
-- return ok, err, forcible; get returns value (and flags when not 0); incr the new
-- number. A dict is an empty table whose metatable holds the methods, known by
-- identity: dict.get(key) fails with 'bad "zone" argument', and no code can write into
-- a dict or into ngx.shared, so the sandbox hands them out as they are (one dict, one
-- table, whichever chunk asks).

local P, names = ...

local error, format, select, setmetatable, tonumber, tostring, type =
  error, string.format, select, setmetatable, tonumber, tostring, type
local huge = math.huge

-- NaN and the infinities are no time, flag or count (Python could not take them either).
local function finite(number)
  return number == number and number ~= huge and number ~= -huge
end

local SET, ADD, REPLACE, SAFE = 0, 1, 2, 4
local DEFAULT_KEYS = 1024
local MAX_KEY = 65535

local ids = {}  -- dict table -> its index in P's dicts

local function zone(self)
  local id = type(self) == "table" and ids[self]
  if not id then
    error('bad "zone" argument', 3)
  end
  return id
end

-- resty.core's key rules: nil is refused, other values go through tostring.
local function check_key(key)
  if key == nil then
    return nil, "nil key"
  end
  if type(key) ~= "string" then
    key = tostring(key)
  end
  if #key == 0 then
    return nil, "empty key"
  end
  if #key > MAX_KEY then
    return nil, "key too long"
  end
  return key
end

local function number_argument(value, what)
  local number = tonumber(value)
  if number == nil then
    error(format("bad %s arg: number expected, got %s", what, type(value)), 3)
  end
  if not finite(number) then
    error(format('bad "%s" argument', what), 3)
  end
  return number
end

local function store(self, operation, key, value, exptime, flags)
  local id = zone(self)
  if exptime == nil then
    exptime = 0
  elseif type(exptime) ~= "number" or exptime < 0 or not finite(exptime) then
    error('bad "exptime" argument', 3)
  end
  if flags == nil then
    flags = 0
  elseif type(flags) ~= "number" or not finite(flags) then
    error('bad "flags" argument', 3)
  end
  local err
  key, err = check_key(key)
  if not key then
    return nil, err
  end
  local kind = type(value)
  if kind ~= "string" and kind ~= "number" and kind ~= "boolean" and kind ~= "nil" then
    return nil, "bad value type"
  end
  return P.shdict_store(id, operation, key, value, exptime, flags)
end

-- Python's None comes back as no value at all: a missing key is one nil, as in OpenResty.
local function at_least_one(...)
  if select("#", ...) == 0 then
    return nil
  end
  return ...
end

local methods = {}

function methods.get(self, key)
  local id = zone(self)
  local checked, err = check_key(key)
  if not checked then return nil, err end
  return at_least_one(P.shdict_get(id, checked))
end

function methods.get_stale(self, key)
  local id = zone(self)
  local checked, err = check_key(key)
  if not checked then return nil, err end
  return at_least_one(P.shdict_get_stale(id, checked))
end

function methods.set(self, key, value, exptime, flags)
  return store(self, SET, key, value, exptime, flags)
end

function methods.safe_set(self, key, value, exptime, flags)
  return store(self, SET + SAFE, key, value, exptime, flags)
end

function methods.add(self, key, value, exptime, flags)
  return store(self, ADD, key, value, exptime, flags)
end

function methods.safe_add(self, key, value, exptime, flags)
  return store(self, ADD + SAFE, key, value, exptime, flags)
end

function methods.replace(self, key, value, exptime, flags)
  return store(self, REPLACE, key, value, exptime, flags)
end

function methods.delete(self, key)
  return store(self, SET, key, nil)
end

function methods.incr(self, key, value, init, init_ttl)
  local id = zone(self)
  local checked, err = check_key(key)
  if not checked then return nil, err end
  value = number_argument(value, "value")
  if init ~= nil then
    init = number_argument(init, "init")
  end
  if init_ttl ~= nil then
    init_ttl = number_argument(init_ttl, "init_ttl")
    if init_ttl < 0 then
      error('bad "init_ttl" argument', 2)
    end
    if init == nil then
      error('must provide "init" when providing "init_ttl"', 2)
    end
  else
    init_ttl = 0
  end
  return P.shdict_incr(id, checked, value, init, init_ttl)
end

function methods.ttl(self, key)
  local id = zone(self)
  local checked, err = check_key(key)
  if not checked then return nil, err end
  return P.shdict_ttl(id, checked)
end

function methods.expire(self, key, exptime)
  local id = zone(self)
  if type(exptime) ~= "number" or exptime < 0 or not finite(exptime) then
    error('bad "exptime" argument', 2)
  end
  local checked, err = check_key(key)
  if not checked then return nil, err end
  return P.shdict_expire(id, checked, exptime)
end

function methods.flush_all(self)
  P.shdict_flush_all(zone(self))
end

local function count_argument(value, default, caller)
  if value == nil then
    return default
  end
  local number = tonumber(value)
  if number == nil or not finite(number) then
    error(format("bad argument #1 to '%s' (number expected, got %s)", caller, type(value)), 3)
  end
  return number
end

function methods.flush_expired(self, max_count)
  local id = zone(self)
  return P.shdict_flush_expired(id, count_argument(max_count, 0, "flush_expired"))
end

function methods.get_keys(self, max_count)
  local id = zone(self)
  return P.shdict_get_keys(id, count_argument(max_count, DEFAULT_KEYS, "get_keys"))
end

function methods.capacity(self)
  return P.shdict_capacity(zone(self))
end

function methods.free_space(self)
  return P.shdict_free_space(zone(self))
end

local function push(self, key, value, left)
  local id = zone(self)
  local checked, err = check_key(key)
  if not checked then return nil, err end
  local kind = type(value)
  if kind ~= "string" and kind ~= "number" then
    return nil, "bad value type"
  end
  return P.shdict_push(id, checked, value, left)
end

local function pop(self, key, left)
  local id = zone(self)
  local checked, err = check_key(key)
  if not checked then return nil, err end
  return at_least_one(P.shdict_pop(id, checked, left))
end

function methods.lpush(self, key, value) return push(self, key, value, true) end
function methods.rpush(self, key, value) return push(self, key, value, false) end
function methods.lpop(self, key) return pop(self, key, true) end
function methods.rpop(self, key) return pop(self, key, false) end

function methods.llen(self, key)
  local id = zone(self)
  local checked, err = check_key(key)
  if not checked then return nil, err end
  return P.shdict_llen(id, checked)
end

local function read_only(what)
  return function(_, name)
    error(format("Cannot modify %s.%s. Protected by the sandbox.", what, tostring(name)), 0)
  end
end

local dicts = {}
for index = 1, #names do
  local name = names[index]
  local dict = setmetatable({}, {__index = methods, __newindex = read_only("ngx.shared." .. name),
                                 __metatable = false})
  ids[dict] = index - 1
  dicts[name] = dict
end

return setmetatable({}, {__index = dicts, __newindex = read_only("ngx.shared"), __metatable = false})
