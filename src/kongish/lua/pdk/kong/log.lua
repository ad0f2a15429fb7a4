-- kong.log (Kong 3.x PDK): messages to the error log at nginx's levels.

local P, ngx = ...

local concat, find, format, sort = table.concat, string.find, string.format, table.sort
local ipairs, pairs, select, setmetatable, tostring, type =
  ipairs, pairs, select, setmetatable, tostring, type

local function concatenated(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  return concat(parts)
end

-- A Lua-literal rendering for kong.log.inspect, keys sorted.
local function inspect(value, indent, seen)
  local kind = type(value)
  if kind == "string" then return format("%q", value) end
  if kind ~= "table" then return tostring(value) end
  if seen[value] then return "<cycle>" end
  seen[value] = true
  local keys = {}
  for key in pairs(value) do keys[#keys + 1] = key end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  if #keys == 0 then
    seen[value] = nil
    return "{}"
  end
  local inner, lines = indent .. "  ", {}
  for _, key in ipairs(keys) do
    local label = type(key) == "string" and find(key, "^[%a_][%w_]*$") and key
      or "[" .. inspect(key, inner, seen) .. "]"
    lines[#lines + 1] = inner .. label .. " = " .. inspect(value[key], inner, seen)
  end
  seen[value] = nil
  return "{\n" .. concat(lines, ",\n") .. "\n" .. indent .. "}"
end

local log = {}
for name, level in pairs({debug = ngx.DEBUG, info = ngx.INFO, notice = ngx.NOTICE, warn = ngx.WARN,
                          err = ngx.ERR, crit = ngx.CRIT, alert = ngx.ALERT, emerg = ngx.EMERG}) do
  log[name] = function(...) P.log(level, concatenated(...)) end
end

function log.inspect(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = inspect((select(i, ...)), "", {}) end
  P.log(ngx.NOTICE, concat(parts, " "))
end

return setmetatable(log, {__call = function(_, ...) return log.notice(...) end})
