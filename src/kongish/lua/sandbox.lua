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

local mode, requires, exposed, driver = ...

local G = _G
local error, format, ipairs, pairs, pcall, require, setmetatable, tostring, type =
  error, string.format, ipairs, pairs, pcall, require, setmetatable, tostring, type

-- C functions that call Lua callbacks nest on the C stack; the driver counts them.
string.gsub = driver.guard_callbacks(string.gsub, 3)
table.sort = driver.guard_callbacks(table.sort, 2)
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

if mode == "on" then
  local ENVIRONMENT = {__index = G}
  return function()
    return setmetatable({kong = G.kong, ngx = G.ngx}, ENVIRONMENT)
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

local function refuse_writes(name)
  return function(_, key)
    error(format("Cannot modify %s.%s. Protected by the sandbox.", name, tostring(key)), 0)
  end
end

-- Views of the globals exposed by untrusted_lua_sandbox_environment; tables
-- inside them are viewed the same way, so no write reaches the real one.
local views = setmetatable({}, {__mode = "k"})

local function view(value, name)
  if type(value) ~= "table" then
    return value
  end
  local proxy = setmetatable({}, {
    __index = function(_, key)
      return view(value[key], name .. "." .. tostring(key))
    end,
    __newindex = refuse_writes(name),
  })
  views[proxy] = true
  return proxy
end

-- Kong's link(): "a.b.c" makes namespace.a.b.c a view of _G.a.b.c.
local function link(namespace, path, source, prefix)
  local head, rest = path:match("^([^%.]+)%.?(.*)$")
  local value = head and source[head]
  if value == nil then
    return
  end
  local name = prefix and prefix .. "." .. head or head
  if rest == "" then
    namespace[head] = view(value, name)
    return
  end
  local inner = namespace[head]
  if type(value) ~= "table" or views[inner] then
    return
  end
  if type(inner) ~= "table" then
    inner = {}
    namespace[head] = inner
  end
  link(inner, rest, value, name)
end

-- Library tables become proxies whose every write fails (a plain table's
-- __newindex would miss writes to existing keys).
local function protect(namespace, name)
  for key, value in pairs(namespace) do
    if type(value) == "table" and not views[value] then
      namespace[key] = protect(value, name and name .. "." .. key or key)
    end
  end
  if not name then
    return namespace
  end
  return setmetatable({}, {__index = namespace, __newindex = refuse_writes(name)})
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
local BASE = protect(namespace)

local allowed = {}
for _, name in ipairs(requires) do
  allowed[name] = true
end

local function sandboxed_require(name)
  if not allowed[name] then
    error(format("require '%s' not allowed within sandbox", tostring(name)), 0)
  end
  return require(name)
end

return function()
  local env = {}
  for key, value in pairs(BASE) do
    env[key] = value
  end
  env.require = sandboxed_require
  env.kong = G.kong
  env.ngx = G.ngx
  env._G = env
  return env
end
