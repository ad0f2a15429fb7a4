-- Helpers shared by the ngx and kong tables: URI escaping, query-string
-- codecs, header tables and Kong's phase checks.  Pure Lua, so byte strings
-- never leave the VM.

local P, exceed, OUTPUT_LIMIT, OUTPUT_EXCEEDED = ...

local byte, char, find, format, gsub, lower, sub =
  string.byte, string.char, string.find, string.format, string.gsub, string.lower, string.sub
local concat, sort = table.concat, table.sort
local error, ipairs, pairs, select, setmetatable, tonumber, tostring, type =
  error, ipairs, pairs, select, setmetatable, tonumber, tostring, type

local S = {}

-- A table in this request's Lua state (ngx.ctx, kong.ctx.*), made on first use.
function S.request_slot(name)
  local slot = P.slot()
  local value = slot[name]
  if value == nil then
    value = {}
    slot[name] = value
  end
  return value
end

-- Query arguments and headers: a repeated key collects its values in an array.
local function add_value(values, key, value)
  local existing = values[key]
  if existing == nil then
    values[key] = value
  elseif type(existing) == "table" then
    existing[#existing + 1] = value
  else
    values[key] = {existing, value}
  end
end

local function percent(c)
  return format("%%%02X", byte(c))
end

-- ngx.escape_uri: type 2 (the default) escapes everything but RFC 3986
-- unreserved characters; type 0 also leaves the reserved ones (a whole URI).
function S.escape_uri(value, escape_type)
  if value == nil then return "" end
  value = tostring(value)
  if escape_type == 0 then
    return (gsub(value, "[^%w%-%._~!#$&'()*+,/:;=?@%[%]]", percent))
  end
  return (gsub(value, "[^%w%-%._~]", percent))
end

local function from_hex(hex)
  return char(tonumber(hex, 16))
end

function S.unescape_uri(value)
  if value == nil then return "" end
  value = tostring(value)
  if not find(value, "[%%+]") then return value end
  return (gsub(gsub(value, "+", " "), "%%(%x%x)", from_hex))
end

local function query_value(value)
  local kind = type(value)
  if kind == "string" or kind == "number" then
    return S.escape_uri(value)
  end
  error(format("attempt to use %s as query arg value", kind), 3)
end

-- ngx.encode_args; keys are sorted so the result does not depend on hash order.
function S.encode_args(args)
  if type(args) ~= "table" then
    error(format("bad argument #1 to 'encode_args' (table expected, got %s)", type(args)), 2)
  end
  local keys = {}
  for key in pairs(args) do
    local kind = type(key)
    if kind ~= "string" and kind ~= "number" then
      error(format("attempt to use %s as query arg key", kind), 2)
    end
    keys[#keys + 1] = key
  end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, key in ipairs(keys) do
    local name, value = S.escape_uri(key), args[key]
    local values = type(value) == "table" and value or {value}
    for _, item in ipairs(values) do
      if item == true then
        parts[#parts + 1] = name
      elseif item ~= false then
        parts[#parts + 1] = name .. "=" .. query_value(item)
      end
    end
  end
  return concat(parts, "&")
end

-- ngx.decode_args: repeated keys become arrays, a bare key is true.
function S.decode_args(query, max_args)
  if type(query) ~= "string" then
    error(format("bad argument #1 to 'decode_args' (string expected, got %s)", type(query)), 2)
  end
  max_args = max_args or 100
  local args, count, position = {}, 0, 1
  while position <= #query + 1 and (max_args <= 0 or count < max_args) do
    local stop = find(query, "&", position, true) or #query + 1
    local pair = sub(query, position, stop - 1)
    position = stop + 1
    if pair ~= "" then
      local equals = find(pair, "=", 1, true)
      local key, value
      if equals then
        key, value = S.unescape_uri(sub(pair, 1, equals - 1)), S.unescape_uri(sub(pair, equals + 1))
      else
        key, value = S.unescape_uri(pair), true
      end
      if key ~= "" then
        count = count + 1
        add_value(args, key, value)
      end
    end
  end
  if max_args > 0 and count >= max_args and position <= #query then
    return args, "truncated"
  end
  return args
end

local SQL_ESCAPES = {
  ["\0"] = "\\0", ["\b"] = "\\b", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\26"] = "\\Z", ["\\"] = "\\\\", ["'"] = "\\'", ['"'] = '\\"',
}

function S.quote_sql_str(value)
  return "'" .. gsub(tostring(value), "[%z\b\n\r\t\26\\'\"]", SQL_ESCAPES) .. "'"
end

-- Header tables as ngx.req.get_headers returns them: lower-case keys, a
-- string per header or an array when repeated; lookups ignore case and
-- accept "_" for "-".
local function normalize_header_name(name)
  return (gsub(lower(name), "_", "-"))
end
S.normalize_header_name = normalize_header_name

local header_lookup = {
  __index = function(headers, name)
    if type(name) ~= "string" then return nil end
    local normalized = normalize_header_name(name)
    if normalized ~= name then return headers[normalized] end
    return nil
  end,
}

function S.headers_table(flat, max_headers, raw)
  local headers, count = {}, 0
  max_headers = max_headers or 100
  for i = 1, #flat, 2 do
    if max_headers > 0 and count >= max_headers then
      return raw and headers or setmetatable(headers, header_lookup), "truncated"
    end
    count = count + 1
    local name = flat[i]
    add_value(headers, raw and name or lower(name), flat[i + 1])
  end
  return raw and headers or setmetatable(headers, header_lookup)
end

-- Body output and header values are kept in Python, outside the VM's memory
-- cap, so each request may hand over OUTPUT_LIMIT bytes of them: P.emit and
-- P.change_header answer true past that, and going over ends the run like any
-- exceeded budget. Data bigger than the whole limit never crosses at all.
local function check_output(size)
  if size > OUTPUT_LIMIT then
    return exceed(OUTPUT_EXCEEDED)
  end
end

local function check_refusal(refused)
  if refused then
    return exceed(OUTPUT_EXCEEDED)
  end
end

function S.emit(data)
  check_output(#data)
  return check_refusal(P.emit(data))
end

-- kong.response.exit's body is output too.
function S.exit(status, body)
  if body ~= nil then check_output(#body) end
  return check_refusal(P.exit(status, body))
end

local function total_size(...)
  local size = 0
  for i = 1, select("#", ...) do
    local value = select(i, ...)
    if type(value) == "string" then size = size + #value end
  end
  return size
end

-- Every header change goes through here: Twisted refuses names that are not
-- HTTP tokens, so they become a clear Lua error instead.
function S.change_header(target, operation, name, ...)
  if type(name) ~= "string" or not find(name, "^[%w!#$%%&'*+%-.^_`|~]+$") then
    error(format("invalid header name %q", tostring(name)), 0)
  end
  check_output(total_size(...))
  return check_refusal(P.change_header(target, operation, name, ...))
end

-- A single string for one header value, an array for several, nil for none.
function S.header_value(values)
  if values == nil then return nil end
  if #values == 1 then return values[1] end
  return values
end

-- Kong's phase checker (kong.pdk.private.phases): same bits, same message.
local PHASE_BITS = {
  rewrite = 0x10, access = 0x20, balancer = 0x40, response = 0x80, header_filter = 0x200,
  body_filter = 0x400, log = 0x2000, preread = 0x4000, error = 0x01000000, admin_api = 0x10000000,
}
local PHASE_ORDER = {"rewrite", "access", "balancer", "response", "header_filter", "body_filter",
                     "log", "preread", "error", "admin_api"}

function S.phases(...)
  local names, set = {}, {}
  for _, name in ipairs({...}) do set[name] = true end
  for _, name in ipairs(PHASE_ORDER) do
    if set[name] then names[#names + 1] = name end
  end
  return {set = set, names = concat(names, ", ")}
end

function S.check_phase(allowed)
  local phase = P.phase()
  if not allowed.set[phase] then
    error(format("function cannot be called in %s phase (only in: %s)",
                 PHASE_BITS[phase] and phase or "'unknown phase'", allowed.names), 3)
  end
end

-- OpenResty refuses some APIs outside the request-processing phases.
local NGINX_CONTEXTS = {
  header_filter = "header_filter_by_lua*", body_filter = "body_filter_by_lua*", log = "log_by_lua*",
}

function S.check_request_phase()
  local context = NGINX_CONTEXTS[P.phase()]
  if context then
    error("API disabled in the context of " .. context, 3)
  end
end

return S
