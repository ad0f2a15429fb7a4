-- The `kong` table (Kong 3.x PDK), backed by the request being served.
-- Argument checks and their messages follow Kong's kong/pdk/*.lua.

local P, S, ngx, cjson, stop, info, cache = ...

local concat, find, format, gsub, lower, sort, sub =
  table.concat, string.find, string.format, string.gsub, string.lower, table.sort,
  string.sub
local error, ipairs, pairs, pcall, select, setmetatable, tonumber, tostring, type, unpack =
  error, ipairs, pairs, pcall, select, setmetatable, tonumber, tostring, type, unpack

local kong = {version = info.version, version_num = info.version_num}

local PHASES = {
  rewrite_access_header = S.phases("rewrite", "access", "response", "header_filter", "error", "admin_api"),
  header_body_log = S.phases("response", "header_filter", "body_filter", "log", "error", "admin_api"),
  body_filter = S.phases("body_filter"),
  access_and_rewrite = S.phases("rewrite", "access"),
  access_rewrite_balancer = S.phases("rewrite", "access", "balancer"),
}

local function first(value)
  if type(value) == "table" then return value[1] end
  return value
end

local function client_header(name)
  local values = P.header_values("client", name)
  return values and values[1]
end

local function check_max(name, value)
  if value == nil then return end
  if type(value) ~= "number" then error(name .. " must be a number", 3) end
  if value < 1 then error(name .. " must be >= 1", 3) end
  if value > 1000 then error(name .. " must be <= 1000", 3) end
end

-- Header checks from kong.pdk.private.checks.
local function validate_header(name, value)
  if type(name) ~= "string" then
    error(format("invalid header name %q: got %s, expected string", tostring(name), type(name)), 3)
  end
  local kind = type(value)
  if kind ~= "string" and kind ~= "number" and kind ~= "boolean" then
    error(format("invalid header value for %q: got %s, expected string, number or boolean", name, kind), 3)
  end
end

local function validate_headers(headers)
  if type(headers) ~= "table" then error("headers must be a table", 3) end
  for name, value in pairs(headers) do
    if type(name) ~= "string" then
      error(format("invalid header name %q: got %s, expected string", tostring(name), type(name)), 3)
    end
    local kind = type(value)
    if kind == "table" then
      for _, item in ipairs(value) do
        if type(item) ~= "string" then
          error(format("invalid header value in array %q: got %s, expected string", name, type(item)), 3)
        end
      end
    elseif kind ~= "string" and kind ~= "number" and kind ~= "boolean" then
      error(format("invalid header value for %q: got %s, expected string, number, boolean or "
                   .. "array of strings", name, kind), 3)
    end
  end
end

-- Kong sends an empty header value as a single space.
local function header_values(value)
  if type(value) == "table" then
    local values = {}
    for i, item in ipairs(value) do values[i] = item == "" and " " or item end
    return values
  end
  value = tostring(value)
  return {value == "" and " " or value}
end

local function is_transfer_encoding(name)
  local lowered = lower(name)
  return lowered == "transfer-encoding" or lowered == "transfer_encoding"
end

local function sorted_names(headers)
  local names = {}
  for name in pairs(headers) do names[#names + 1] = name end
  sort(names)
  return names
end

-- kong.response and kong.service.request change headers alike: set_header,
-- add_header, clear_header and set_headers of ``target``'s headers, allowed in
-- ``phases``, with ``change(operation, name, value)`` doing a set or an add.
local function add_header_setters(api, target, phases, change)
  function api.set_header(name, value)
    S.check_phase(phases)
    validate_header(name, value)
    change("set", name, value)
  end

  function api.add_header(name, value)
    S.check_phase(phases)
    validate_header(name, value)
    change("add", name, value)
  end

  function api.clear_header(name)
    S.check_phase(phases)
    if type(name) ~= "string" then error("header name must be a string", 2) end
    S.change_header(target, "clear", name)
  end

  function api.set_headers(headers)
    S.check_phase(phases)
    validate_headers(headers)
    for _, name in ipairs(sorted_names(headers)) do
      change("set", name, headers[name])
    end
  end
end

-- kong.request ---------------------------------------------------------------------

local request = {}
kong.request = request

local function trusted_client()
  return P.is_trusted(P.read("realip_remote_addr"))
end

function request.get_scheme() return P.read("scheme") end
function request.get_host() return P.read("host") end
function request.get_port() return P.read("server_port") end
function request.get_http_version() return P.read("http_version") end
function request.get_method() return P.read("method") end
function request.get_path() return P.read("path") end
function request.get_raw_path() return P.read("raw_path") end
function request.get_raw_query() return P.read("query") or "" end
function request.get_start_time() return P.read("start_time") * 1000 end
function request.get_id() return P.read("request_id") end

function request.get_path_with_query()
  local query = P.read("query")
  if not query or query == "" then return request.get_path() end
  return request.get_path() .. "?" .. query
end

function request.get_forwarded_scheme()
  local scheme = trusted_client() and client_header("x-forwarded-proto")
  return scheme and lower(scheme) or request.get_scheme()
end

function request.get_forwarded_host()
  local host = trusted_client() and client_header("x-forwarded-host")
  if not host then return request.get_host() end
  host = lower(host)
  if sub(host, 1, 1) == "[" then return (host:match("^(%[.-%])")) or host end
  return (gsub(host, ":%d*$", ""))
end

function request.get_forwarded_port()
  local port = trusted_client() and tonumber(client_header("x-forwarded-port"))
  return port or request.get_port()
end

function request.get_forwarded_path()
  return trusted_client() and client_header("x-forwarded-path") or request.get_path()
end

function request.get_forwarded_prefix()
  return trusted_client() and client_header("x-forwarded-prefix") or nil
end

function request.get_query(max_args)
  check_max("max_args", max_args)
  return S.decode_args(P.read("query") or "", max_args or info.max_uri_args)
end

function request.get_query_arg(name)
  if type(name) ~= "string" then error("query argument name must be a string", 2) end
  return first(request.get_query()[name])
end

function request.get_header(name)
  if type(name) ~= "string" then error("header name must be a string", 2) end
  return client_header(name)
end

function request.get_headers(max_headers)
  check_max("max_headers", max_headers)
  return S.headers_table(P.header_list("client"), max_headers or info.max_req_headers)
end

local BODY_IN_FILE =
  "request body did not fit into client body buffer, consider raising 'client_body_buffer_size'"

function request.get_raw_body()
  local body = P.buffered_body()
  if body == false then return nil, BODY_IN_FILE end
  return body or ""
end

function request.get_uri_captures()
  local captures = P.read("uri_captures_json")
  if not captures then return {unnamed = {}, named = {}} end
  captures = cjson.decode(captures)
  -- as ngx.re.match gives them: [0] the whole match, [1] the first group, false for a
  -- group that did not take part
  local unnamed, named = {}, {}
  for i, value in ipairs(captures.unnamed) do unnamed[i - 1] = value ~= cjson.null and value end
  for name, value in pairs(captures.named) do named[name] = value ~= cjson.null and value end
  return {unnamed = unnamed, named = named}
end

local function mime_type(content_type)
  return lower((gsub(content_type, "%s*;.*$", "")))
end

-- As Kong's: the type is the lower-cased Content-Type (or ``mimetype``) up to its
-- first ";", matched by prefix; a multipart body is read as lua-multipart reads it
-- (fields to values, a repeated name to an array), with the boundary taken from
-- the Content-Type or ``mimetype`` as given.
local CONTENT_TYPE_POST = "application/x-www-form-urlencoded"
local CONTENT_TYPE_JSON = "application/json"
local CONTENT_TYPE_FORM_DATA = "multipart/form-data"

function request.get_body(mimetype, max_args)
  local content_type = mimetype or client_header("content-type")
  if not content_type then return nil, "missing content type" end
  local mime = lower(content_type)
  local semicolon = find(mime, ";", 1, true)
  if semicolon then mime = sub(mime, 1, semicolon - 1) end
  if find(mime, CONTENT_TYPE_POST, 1, true) == 1 then
    check_max("max_args", max_args)
    local args, err = ngx.req.get_post_args(max_args or info.max_post_args)
    if not args then return nil, err, CONTENT_TYPE_POST end
    return args, nil, CONTENT_TYPE_POST
  elseif find(mime, CONTENT_TYPE_JSON, 1, true) == 1 then
    local raw, err = request.get_raw_body()
    if not raw then return nil, err, CONTENT_TYPE_JSON end
    local ok, body = pcall(cjson.decode, raw)
    if not ok or type(body) ~= "table" then return nil, "invalid json body", CONTENT_TYPE_JSON end
    return body, nil, CONTENT_TYPE_JSON
  elseif find(mime, CONTENT_TYPE_FORM_DATA, 1, true) == 1 then
    local raw, err = request.get_raw_body()
    if not raw then return nil, err, CONTENT_TYPE_FORM_DATA end
    return P.multipart(raw, content_type), nil, CONTENT_TYPE_FORM_DATA
  end
  return nil, "unsupported content type '" .. content_type .. "'", mime
end

-- kong.response ----------------------------------------------------------------------

local response = {}
kong.response = response

local function check_status(status)
  if type(status) ~= "number" then error("code must be a number", 3) end
  if status < 100 or status > 599 then error("code must be a number between 100 and 599", 3) end
end

-- kong.response and kong.service.response read a response alike: its status
-- (the P.read field ``status``) and the headers of P's ``headers`` source.
local function add_response_getters(api, status, headers)
  function api.get_status()
    S.check_phase(PHASES.header_body_log)
    return P.read(status)
  end

  function api.get_headers(max_headers)
    S.check_phase(PHASES.header_body_log)
    check_max("max_headers", max_headers)
    return S.headers_table(P.header_list(headers), max_headers or info.max_resp_headers)
  end

  function api.get_header(name)
    S.check_phase(PHASES.header_body_log)
    if type(name) ~= "string" then error("header name must be a string", 2) end
    return first(P.header_values(headers, name))
  end
end

add_response_getters(response, "status", "response")

function response.get_source()
  S.check_phase(PHASES.header_body_log)
  return P.read("source")
end

function response.set_status(status)
  S.check_phase(PHASES.rewrite_access_header)
  check_status(status)
  P.write("status", status)
end

local function set_response_header(operation, name, value)
  if is_transfer_encoding(name) then
    return P.log(ngx.WARN, "manually setting Transfer-Encoding. Ignored.")
  end
  S.change_header("response", operation, name, unpack(header_values(value)))
end

add_header_setters(response, "response", PHASES.rewrite_access_header, set_response_header)

-- Kong buffers the chunks in the request context and hands the whole body
-- over with the last one.
function response.get_raw_body()
  S.check_phase(PHASES.body_filter)
  local slot = P.slot()
  local chunk, eof = ngx.arg[1], ngx.arg[2]
  local buffer = slot.body_buffer
  if eof and not buffer then return chunk end
  if chunk ~= "" then
    buffer = buffer or {}
    buffer[#buffer + 1] = chunk
    slot.body_buffer = buffer
  end
  if eof then
    local body = concat(buffer)
    slot.body_buffer = nil
    ngx.arg[1] = body
    return body
  end
  ngx.arg[1] = ""
  return nil
end

-- Before the last chunk the new body replaces the rest of the stream;
-- on the last chunk it replaces that chunk.
function response.set_raw_body(body)
  S.check_phase(PHASES.body_filter)
  if type(body) ~= "string" then error("body must be a string", 2) end
  if not ngx.arg[2] then P.write("replacement_body", body) end
  ngx.arg[1] = ngx.arg[2] and body or ""
  P.slot().body_buffer = nil
end

local CONTENT_TYPE_JSON = "application/json; charset=utf-8"

-- ``empty_body`` is what an exit without a body sends: "" for kong.response.exit
-- (Kong sends no body), nil for kong.response.error (the proxy renders Kong's
-- default error message).
local function send(status, body, headers, empty_body)
  local has_content_type = false
  for _, name in ipairs(sorted_names(headers or {})) do
    local lowered = gsub(lower(name), "_", "-")
    has_content_type = has_content_type or lowered == "content-type"
    set_response_header("set", name, headers[name])
  end
  if type(body) == "table" then
    local ok, json = pcall(cjson.encode, body)
    if not ok then error(format("body encoding failed while flushing response: %s", json), 3) end
    body = json
    if not has_content_type then S.change_header("response", "set", "Content-Type", CONTENT_TYPE_JSON) end
  end
  if P.phase() == "header_filter" then
    P.write("status", status)
    if body ~= nil then P.write("replacement_body", body) end
  else
    if body == nil then body = empty_body end
    S.exit(status, body)
  end
  return stop()
end

function response.exit(status, body, headers)
  S.check_phase(PHASES.rewrite_access_header)
  check_status(status)
  if body ~= nil and type(body) ~= "string" and type(body) ~= "table" then
    error("body must be a nil, string or table", 2)
  end
  if headers ~= nil and type(headers) ~= "table" then error("headers must be a nil or table", 2) end
  if headers ~= nil then validate_headers(headers) end
  return send(status, body, headers, "")
end

-- kong.response.error: without a message the proxy renders Kong's default
-- body in the format the client accepts; a given message is sent as JSON.
function response.error(status, message, headers)
  S.check_phase(PHASES.rewrite_access_header)
  if type(status) ~= "number" then error("code must be a number", 2) end
  if status < 400 or status > 599 then error("code must be a number between 400 and 599", 2) end
  if message ~= nil and type(message) ~= "string" then error("message must be a nil or string", 2) end
  if headers ~= nil then validate_headers(headers) end
  if message == nil then return send(status, nil, headers) end
  return send(status, {message = message, request_id = P.read("request_id")}, headers)
end

-- kong.service ----------------------------------------------------------------------

local service_request = {}
local service_response = {}
kong.service = {request = service_request, response = service_response}

add_header_setters(service_request, "request", PHASES.access_rewrite_balancer,
                   function(operation, name, value)
                     S.change_header("request", operation, name, unpack(header_values(value)))
                   end)

function service_request.set_scheme(scheme)
  S.check_phase(PHASES.access_rewrite_balancer)
  if type(scheme) ~= "string" then error("scheme must be a string", 2) end
  if scheme ~= "http" and scheme ~= "https" then error("invalid scheme: " .. scheme, 2) end
  P.write("upstream_scheme", scheme)
end

function service_request.set_path(path)
  S.check_phase(PHASES.access_and_rewrite)
  if type(path) ~= "string" then error("path must be a string", 2) end
  if sub(path, 1, 1) ~= "/" then error("path must start with /", 2) end
  P.write("upstream_path", path)
end

function service_request.set_raw_query(query)
  S.check_phase(PHASES.access_and_rewrite)
  if type(query) ~= "string" then error("query must be a string", 2) end
  P.write("query", query)
end

function service_request.set_query(args)
  S.check_phase(PHASES.access_and_rewrite)
  if type(args) ~= "table" then error("args must be a table", 2) end
  P.write("query", S.encode_args(args))
end

local METHODS = {
  GET = true, HEAD = true, PUT = true, POST = true, DELETE = true, OPTIONS = true, MKCOL = true,
  COPY = true, MOVE = true, PROPFIND = true, PROPPATCH = true, LOCK = true, UNLOCK = true,
  PATCH = true, TRACE = true, CONNECT = true,
}

function service_request.set_method(method)
  S.check_phase(PHASES.access_and_rewrite)
  if type(method) ~= "string" then error("method must be a string", 2) end
  if not METHODS[method] then error("invalid method: " .. method, 2) end
  P.write("method", method)
end

function service_request.set_raw_body(body)
  S.check_phase(PHASES.access_and_rewrite)
  if type(body) ~= "string" then error("body must be a string", 2) end
  P.write("body", body)
end

function service_request.set_body(args, mimetype)
  S.check_phase(PHASES.access_and_rewrite)
  if type(args) ~= "table" then error("args must be a table", 2) end
  if mimetype ~= nil and type(mimetype) ~= "string" then error("mime must be a string", 2) end
  local content_type = mimetype or client_header("content-type")
  if not content_type then
    error("content type was neither explicitly given as an argument or received as a header", 2)
  end
  local mime = mime_type(content_type)
  local body
  if mime == "application/x-www-form-urlencoded" then
    body = S.encode_args(args)
  elseif mime == "application/json" then
    local ok, json = pcall(cjson.encode, args)
    if not ok then return nil, json end
    body = json
  else
    return nil, "unsupported content type '" .. mime .. "'"
  end
  if mimetype then S.change_header("request", "set", "Content-Type", mimetype) end
  P.write("body", body)
  return true
end

add_response_getters(service_response, "service_status", "service")

-- kong.client, kong.router, kong.ip, kong.node, kong.plugin --------------------------

kong.client = {
  get_ip = function() return P.read("realip_remote_addr") end,
  get_port = function() return P.read("remote_port") end,
  get_forwarded_ip = function() return P.read("remote_addr") end,
  get_forwarded_port = function() return P.read("remote_port") end,
  get_protocol = function() return P.read("scheme") end,
  get_consumer = function() return nil end,
  get_credential = function() return nil end,
  get_consumer_groups = function() return nil end,
}

local function decoded(field)
  local json = P.read(field)
  return json and cjson.decode(json)
end

kong.router = {
  get_route = function() return decoded("route_json") end,
  get_service = function() return decoded("service_json") end,
}

kong.ip = {is_trusted = function(address) return P.is_trusted(address) end}

kong.node = {
  get_id = function() return info.node_id end,
  get_hostname = function() return info.hostname end,
}

kong.plugin = {get_id = function() return P.plugin()[2] end}

kong.nginx = {get_subsystem = function() return "http" end}

kong.table = {
  new = function() return {} end,
  clear = function(t)
    for key in pairs(t) do t[key] = nil end
  end,
}

-- kong.log -------------------------------------------------------------------------

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

kong.log = setmetatable(log, {__call = function(_, ...) return log.notice(...) end})

-- kong.ctx ---------------------------------------------------------------------------

kong.ctx = setmetatable({}, {
  __index = function(_, name)
    if name == "shared" then return S.request_slot("kong_shared") end
    if name == "plugin" then
      local plugins = S.request_slot("kong_plugin")
      local key = P.plugin()[2]
      local ctx = plugins[key]
      if ctx == nil then
        ctx = {}
        plugins[key] = ctx
      end
      return ctx
    end
  end,
})

-- kong.cache: pdk_kong_cache.lua ----------------------------------------------------------

kong.cache = cache

-- kong.configuration: read-only ---------------------------------------------------------

kong.configuration = setmetatable({}, {
  __index = info.configuration,
  __newindex = function() error("cannot write to configuration", 2) end,
  __metatable = false,
})

return kong
