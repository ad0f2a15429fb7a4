-- Global environments for plugin code, following Kong's untrusted_lua setting.
--
-- Returns new_environment(): each compiled chunk gets its own table, so its
-- global writes persist between requests but never leak into another chunk
-- or into the real globals.
--
--   on:      every real global, plus kong and ngx.
--   sandbox: Kong's list of safe globals (library tables are read-only
--            proxies), kong, ngx, a require limited to
--            untrusted_lua_sandbox_requires, and read-only views of the
--            globals named in untrusted_lua_sandbox_environment.
--
-- Plugin code reaches some real library functions in every mode (string
-- methods through the string metatable, anything through _G when on), so
-- kongish's versions replace them in the real libraries. This runs after
-- the PDK has taken its own references to the originals.
--
-- No chunk can change what another one calls or reads: each sees kong, ngx,
-- the libraries and required modules through views of its own. A view reads
-- through and refuses writes; a plain data table read through one (say
-- kong.configuration.plugins) comes back as the reader's own copy, so # and
-- ipairs work on it. What acts on the running request passes through as it
-- is: ngx.header, ngx.var, ngx.arg, ngx.ctx and kong.ctx.shared / plugin (the
-- request's own tables); ngx.status and ngx.ctx can be assigned. ngx.shared
-- passes too: it and its dicts refuse writes themselves (pdk/shared.lua), and a
-- dict's methods know it by identity.

local mode, requires, exposed, driver = ...

local G = _G
local error, format, ipairs, next, pairs, pcall, require, setmetatable, tostring, type =
  error, string.format, ipairs, next, pairs, pcall, require, setmetatable, tostring, type

-- C functions that call Lua callbacks nest on the C stack; the driver counts them.
string.gsub = driver.guard_callbacks(string.gsub, 3)
table.sort = driver.guard_callbacks(table.sort, 2)
-- C work on large strings and arrays is charged to the budget call by call.
for _, name in ipairs({"byte", "find", "format", "gmatch", "gsub", "lower", "match", "rep",
                       "reverse", "sub", "upper"}) do
  string[name] = driver.metered(string[name])
end
for _, name in ipairs({"concat", "sort", "insert", "remove"}) do
  table[name] = driver.metered(table[name])
end
-- ngx.exit and ngx.sleep work inside user coroutines, which cannot resume a worker.
coroutine.resume, coroutine.wrap = driver.coroutine.resume, driver.coroutine.wrap
-- An xpcall message handler cannot outrun the budget.
xpcall = driver.xpcall

-- OpenResty's print: ngx.log at NOTICE level, to the error log, never stdout.
local log, NOTICE = G.ngx.log, G.ngx.NOTICE
function print(...)
  return log(NOTICE, ...)
end

-- The PDK's Lua modules (cjson) are found by require like any installed module.
for name, module in pairs(__kongish_modules) do
  package.loaded[name] = module
end

-- Views ----------------------------------------------------------------------

-- Tables that are viewed rather than copied: the PDK's namespaces, library
-- tables, modules; marked with every table they hold.
local namespaces = setmetatable({}, {__mode = "k"})

local function mark(t)
  if namespaces[t] then
    return t
  end
  namespaces[t] = true
  for _, value in next, t do
    if type(value) == "table" then
      mark(value)
    end
  end
  return t
end

mark(G.ngx)
mark(G.kong)

-- Fields read as they are, and fields written through, per viewed table.
local PASS = {
  [G.ngx] = {header = true, var = true, arg = true, ctx = true, shared = true},
  [G.kong.ctx] = {shared = true, plugin = true},
}
local WRITABLE = {[G.ngx] = {status = true, ctx = true}}

-- Each view's table, so that pairs, ipairs and next walk views as tables.
local viewed = setmetatable({}, {__mode = "k"})

local raw_next, raw_pairs, raw_ipairs = next, pairs, ipairs

local function view_next(t, key)
  local value = viewed[t]
  if value == nil then
    return raw_next(t, key)
  end
  local next_key = raw_next(value, key)
  if next_key == nil then
    return nil
  end
  return next_key, t[next_key]
end

local function view_ipairs_step(t, i)
  i = i + 1
  local item = t[i]
  if item ~= nil then
    return i, item
  end
end

-- Every mode's code reaches the real globals' pairs (through _G when on).
function G.next(t, key)
  return view_next(t, key)
end

function G.pairs(t)
  if viewed[t] == nil then
    return raw_pairs(t)
  end
  return view_next, t, nil
end

function G.ipairs(t)
  if viewed[t] == nil then
    return raw_ipairs(t)
  end
  return view_ipairs_step, t, 0
end

-- One chunk's viewer: its views are made once each and kept with it.
local function new_viewer()
  local views = setmetatable({}, {__mode = "k"})
  local view

  local function copy(value, copies)
    if type(value) ~= "table" then
      return value
    end
    if namespaces[value] then
      return view(value, "?")
    end
    local existing = copies[value]
    if existing then
      return existing
    end
    local result = {}
    copies[value] = result
    for key, item in next, value do
      result[copy(key, copies)] = copy(item, copies)
    end
    return result
  end

  function view(value, name)
    if type(value) ~= "table" then
      return value
    end
    if not namespaces[value] then
      return copy(value, {})
    end
    local existing = views[value]
    if existing then
      return existing
    end
    local pass, writable = PASS[value], WRITABLE[value]
    local proxy = setmetatable({}, {
      __index = function(_, key)
        local item = value[key]
        if type(item) ~= "table" or (pass and pass[key]) then
          return item
        end
        return views[item] or view(item, name .. "." .. tostring(key))
      end,
      __newindex = function(_, key, item)
        if writable and writable[key] then
          value[key] = item
          return
        end
        error(format("Cannot modify %s.%s. Protected by the sandbox.", name, tostring(key)), 0)
      end,
    })
    views[value] = proxy
    viewed[proxy] = value
    return proxy
  end

  return view
end

if mode == "on" then
  local ENVIRONMENT = {__index = G}
  return function()
    local view = new_viewer()
    return setmetatable({kong = view(mark(G.kong), "kong"), ngx = view(mark(G.ngx), "ngx")}, ENVIRONMENT)
  end
end

-- Kong's kong/tools/sandbox/environment/lua.lua list.
local SAFE = [[
_VERSION assert   error ipairs next   pairs pcall print select
tonumber tostring type  unpack xpcall

bit.arshift bit.band bit.bnot bit.bor    bit.bswap bit.bxor
bit.lshift  bit.rol  bit.ror  bit.rshift bit.tobit bit.tohex

coroutine.create coroutine.resume coroutine.running
coroutine.status coroutine.wrap   coroutine.yield

io.type

jit.os jit.arch jit.version jit.version_num

math.abs   math.acos math.asin  math.atan math.atan2 math.ceil
math.cos   math.cosh math.deg   math.exp  math.floor math.fmod
math.frexp math.huge math.ldexp math.log  math.log10 math.max
math.min   math.modf math.pi    math.pow  math.rad   math.random
math.sin   math.sinh math.sqrt  math.tan  math.tanh

os.clock os.date os.difftime os.time

string.byte    string.char string.find  string.format string.gmatch
string.gsub    string.len  string.lower string.match  string.rep
string.reverse string.sub  string.upper

table.clear  table.concat table.insert table.maxn table.move table.new
table.pack   table.remove table.sort   table.unpack
]]

local function optional_module(name)
  local ok, module = pcall(require, name)
  return ok and module or nil
end

-- Where the safe names come from: the real globals, except LuaJIT's table
-- extras (modules of their own).
local SOURCE = setmetatable({
  table = setmetatable({
    new = optional_module("table.new"),
    clear = optional_module("table.clear"),
  }, {__index = G.table}),
}, {__index = G})

-- Kong's link(): "a.b.c" makes namespace.a.b.c the global _G.a.b.c, seen
-- through the chunk's views like everything else.
local linked = {}

local function link(namespace, path, source)
  local head, rest = path:match("^([^%.]+)%.?(.*)$")
  local value = head and source[head]
  if value == nil then
    return
  end
  if rest == "" then
    namespace[head] = type(value) == "table" and mark(value) or value
    if type(value) == "table" then
      linked[value] = true
    end
    return
  end
  local inner = namespace[head]
  if type(value) ~= "table" or linked[inner] then
    return
  end
  if type(inner) ~= "table" then
    inner = {}
    namespace[head] = inner
  end
  link(inner, rest, value)
end

local namespace = {}
for id in SAFE:gmatch("%S+") do
  local library, field = id:match("^([^%.]+)%.(.+)$")
  if library then
    local value = SOURCE[library][field]
    if value ~= nil then
      namespace[library] = namespace[library] or {}
      namespace[library][field] = value
    end
  else
    namespace[id] = SOURCE[id]
  end
end
for _, path in ipairs(exposed) do
  link(namespace, path, G)
end
for _, value in pairs(namespace) do
  if type(value) == "table" then
    mark(value)
  end
end

local allowed = {}
for _, name in ipairs(requires) do
  allowed[name] = true
end

local function sandboxed_require(name)
  if not allowed[name] then
    error(format("require '%s' not allowed within sandbox", tostring(name)), 0)
  end
  local module = require(name)
  return type(module) == "table" and mark(module) or module
end

return function()
  local view = new_viewer()
  local env = {}
  for key, value in pairs(namespace) do
    env[key] = view(value, key)
  end
  function env.require(name)
    return view(sandboxed_require(name), name)
  end
  env.kong = view(mark(G.kong), "kong")
  env.ngx = view(mark(G.ngx), "ngx")
  env._G = env
  return env
end
