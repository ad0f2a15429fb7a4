-- The `ngx` table of lua-nginx-module, backed by the request being served.

local P, S, cjson, re, await, stop, info = ...

local concat, format, floor, gsub = table.concat, string.format, math.floor, string.gsub
local os_date = os.date
local error, ipairs, pairs, rawset, select, setmetatable, tonumber, tostring, type, unpack =
  error, ipairs, pairs, rawset, select, setmetatable, tonumber, tostring, type, unpack

local ngx = {
  OK = 0, ERROR = -1, AGAIN = -2, DONE = -4, DECLINED = -5,
  STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8,
  null = cjson.null,
  is_subrequest = false,
  re = re,
}

local STATUSES = {
  HTTP_CONTINUE = 100, HTTP_SWITCHING_PROTOCOLS = 101, HTTP_OK = 200, HTTP_CREATED = 201,
  HTTP_ACCEPTED = 202, HTTP_NO_CONTENT = 204, HTTP_PARTIAL_CONTENT = 206,
  HTTP_SPECIAL_RESPONSE = 300, HTTP_MOVED_PERMANENTLY = 301, HTTP_MOVED_TEMPORARILY = 302,
  HTTP_SEE_OTHER = 303, HTTP_NOT_MODIFIED = 304, HTTP_TEMPORARY_REDIRECT = 307,
  HTTP_PERMANENT_REDIRECT = 308, HTTP_BAD_REQUEST = 400, HTTP_UNAUTHORIZED = 401,
  HTTP_PAYMENT_REQUIRED = 402, HTTP_FORBIDDEN = 403, HTTP_NOT_FOUND = 404, HTTP_NOT_ALLOWED = 405,
  HTTP_NOT_ACCEPTABLE = 406, HTTP_REQUEST_TIMEOUT = 408, HTTP_CONFLICT = 409, HTTP_GONE = 410,
  HTTP_UPGRADE_REQUIRED = 426, HTTP_TOO_MANY_REQUESTS = 429, HTTP_CLOSE = 444,
  HTTP_ILLEGAL = 451, HTTP_INTERNAL_SERVER_ERROR = 500, HTTP_METHOD_NOT_IMPLEMENTED = 501,
  HTTP_BAD_GATEWAY = 502, HTTP_SERVICE_UNAVAILABLE = 503, HTTP_GATEWAY_TIMEOUT = 504,
  HTTP_VERSION_NOT_SUPPORTED = 505, HTTP_INSUFFICIENT_STORAGE = 507,
}
for name, status in pairs(STATUSES) do ngx[name] = status end

-- Method constants are numbers in lua-nginx-module; set_method maps them back.
local METHODS = {
  GET = 2, HEAD = 4, POST = 8, PUT = 16, DELETE = 32, MKCOL = 64, COPY = 128, MOVE = 256,
  OPTIONS = 512, PROPFIND = 1024, PROPPATCH = 2048, LOCK = 4096, UNLOCK = 8192,
  PATCH = 16384, TRACE = 32768,
}
local METHOD_NAMES = {}
for name, number in pairs(METHODS) do
  ngx["HTTP_" .. name] = number
  METHOD_NAMES[number] = name
end

-- Output ---------------------------------------------------------------------

local function flatten(out, value, caller, position)
  local kind = type(value)
  if kind == "string" then
    out[#out + 1] = value
  elseif kind == "number" or kind == "boolean" or kind == "nil" then
    out[#out + 1] = tostring(value)
  elseif value == cjson.null then
    out[#out + 1] = "null"
  elseif kind == "table" then
    for _, item in ipairs(value) do flatten(out, item, caller, position) end
  else
    error(format("bad argument #%d to '%s' (string, number, boolean, nil, ngx.null, or array "
                 .. "table expected, got %s)", position, caller, kind), 4)
  end
end

local function output(caller, newline, ...)
  S.check_request_phase()
  if select("#", ...) == 1 and type((...)) == "string" then  -- the common case, without a table
    S.emit(newline and (...) .. "\n" or (...))
    return 1
  end
  local out = {}
  for i = 1, select("#", ...) do flatten(out, (select(i, ...)), caller, i) end
  if newline then out[#out + 1] = "\n" end
  S.emit(concat(out))
  return 1
end

function ngx.say(...) return output("say", true, ...) end
function ngx.print(...) return output("print", false, ...) end
function ngx.flush() return 1 end
function ngx.eof() return 1 end

local EXITING_PHASES = {rewrite = true, access = true}

-- ngx.exit: status >= 200 ends the request (what was said is the body);
-- ngx.OK only ends this phase handler; ngx.ERROR ends the request with 500.
-- In header_filter, body_filter and log it only ends the handler.
function ngx.exit(status)
  if type(status) ~= "number" then
    error(format("bad argument #1 to 'exit' (number expected, got %s)", type(status)), 2)
  end
  if EXITING_PHASES[P.phase()] then
    if status >= 200 then
      P.exit(status)
    elseif status == ngx.ERROR then
      P.exit(500)
    end
  end
  return stop()
end

function ngx.redirect(uri, status)
  S.check_request_phase()
  status = status or 302
  if status ~= 301 and status ~= 302 and status ~= 303 and status ~= 307 and status ~= 308 then
    error("only ngx.HTTP_MOVED_TEMPORARILY, ngx.HTTP_MOVED_PERMANENTLY, ngx.HTTP_PERMANENT_REDIRECT, "
          .. "ngx.HTTP_SEE_OTHER, and ngx.HTTP_TEMPORARY_REDIRECT are allowed", 2)
  end
  S.change_header("response", "set", "Location", tostring(uri))
  P.exit(status)
  return stop()
end

-- Response headers: ngx.header.X_Foo = "v", ngx.header["X-Foo"], ngx.header.content_type.
local SENT_PHASES = {body_filter = true, log = true}

-- ngx.header.X = value and ngx.req.set_header: nil clears, an array sets several values.
local function replace_header(target, name, value)
  if value == nil then
    return S.change_header(target, "clear", name)
  end
  local values = {}
  for i, item in ipairs(type(value) == "table" and value or {value}) do values[i] = tostring(item) end
  return S.change_header(target, "set", name, unpack(values))
end

local function set_response_header(name, value)
  if SENT_PHASES[P.phase()] then
    error("attempt to set ngx.header.HEADER after sending out response headers", 3)
  end
  return replace_header("response", gsub(tostring(name), "_", "-"), value)
end

ngx.header = setmetatable({}, {
  __index = function(_, name)
    return S.header_value(P.header_values("response", (gsub(tostring(name), "_", "-"))))
  end,
  __newindex = function(_, name, value) set_response_header(name, value) end,
})

ngx.resp = {
  get_headers = function(max_headers, raw)
    return S.headers_table(P.header_list("response"), max_headers or info.max_resp_headers, raw)
  end,
  add_header = function(name, value)
    local values = type(value) == "table" and value or {value}
    for _, item in ipairs(values) do
      S.change_header("response", "add", name, tostring(item))
    end
  end,
}

-- Request ----------------------------------------------------------------------

local req = {}
ngx.req = req

function req.get_method() return P.read("method") end

function req.set_method(method)
  local name = METHOD_NAMES[method]
  if not name then
    error(format("unsupported HTTP method: %s", tostring(method)), 2)
  end
  P.write("method", name)
end

function req.get_uri_args(max_args)
  return S.decode_args(P.read("query") or "", max_args or info.max_uri_args)
end

function req.set_uri_args(args)
  if type(args) == "table" then args = S.encode_args(args) end
  if type(args) ~= "string" then
    error(format("bad argument #1 to 'set_uri_args' (string or table expected, got %s)", type(args)), 2)
  end
  P.write("query", args)
end

-- A body past client_body_buffer_size is in nginx's temp file, which these do not read.
function req.get_post_args(max_args)
  local body = P.buffered_body()
  if body == false then return nil, "request body in temp file not supported" end
  return S.decode_args(body or "", max_args or info.max_post_args)
end

function req.get_headers(max_headers, raw)
  return S.headers_table(P.header_list("client"), max_headers or info.max_req_headers, raw)
end

function req.set_header(name, value)
  if type(name) ~= "string" then
    error(format("bad argument #1 to 'set_header' (string expected, got %s)", type(name)), 2)
  end
  return replace_header("request", name, value)
end

function req.clear_header(name) return req.set_header(name, nil) end

function req.read_body() end
function req.discard_body() end
function req.get_body_file() return nil end
function req.get_body_data() return P.buffered_body() or nil end

function req.set_body_data(data)
  if type(data) ~= "string" then
    error(format("bad argument #1 to 'set_body_data' (string expected, got %s)", type(data)), 2)
  end
  P.write("body", data)
end

function req.init_body() P.slot().body_parts = {} end

function req.append_body(data)
  local parts = P.slot().body_parts
  if not parts then error("request body not initialized by ngx.req.init_body()", 2) end
  parts[#parts + 1] = data
end

function req.finish_body()
  local slot = P.slot()
  if not slot.body_parts then error("request body not initialized by ngx.req.init_body()", 2) end
  P.write("body", concat(slot.body_parts))
  slot.body_parts = nil
end

function req.set_uri(uri)
  if type(uri) ~= "string" or uri == "" then
    error("bad argument #1 to 'set_uri' (non-empty string expected)", 2)
  end
  P.write("upstream_path", uri)
end

function req.start_time() return P.read("start_time") end
function req.http_version() return P.read("http_version") end
function req.is_internal() return false end

function req.raw_header(no_request_line)
  local lines = {}
  if not no_request_line then
    lines[1] = format("%s %s HTTP/%s", P.read("client_method"), P.read("request_uri"),
                      P.read("http_version") == 2 and "2.0" or tostring(P.read("http_version")))
  end
  local flat = P.header_list("client")
  for i = 1, #flat, 2 do lines[#lines + 1] = flat[i] .. ": " .. flat[i + 1] end
  return concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Variables --------------------------------------------------------------------

local WRITABLE_VARIABLES = {
  args = function(value) P.write("query", value) end,
  upstream_uri = function(value) P.write("upstream_uri", value) end,
  upstream_scheme = function(value) P.write("upstream_scheme", value) end,
  upstream_host = function(value) S.change_header("request", "set", "Host", value) end,
}
local READ_ONLY_VARIABLES = {
  uri = true, request_uri = true, host = true, scheme = true, remote_addr = true,
  remote_port = true, server_addr = true, server_port = true, request_method = true,
  query_string = true, is_args = true, request_id = true, status = true,
}

ngx.var = setmetatable({}, {
  __index = function(_, name) return P.var(name) end,
  __newindex = function(_, name, value)
    local setter = WRITABLE_VARIABLES[name]
    if setter then
      if value ~= nil then value = tostring(value) end
      return setter(value)
    end
    if READ_ONLY_VARIABLES[name] then
      error(format('variable "%s" not changeable', tostring(name)), 2)
    end
    error(format('variable "%s" not found for writing; maybe it is a built-in variable that is '
                 .. 'not changeable or you forgot to use "set $%s \'\';" in the config file to '
                 .. 'define it first', tostring(name), tostring(name)), 2)
  end,
})

-- body_filter's ngx.arg[1] (the chunk) and ngx.arg[2] (eof).
ngx.arg = setmetatable({}, {
  __index = function(_, index)
    if P.phase() ~= "body_filter" then return nil end
    if index == 1 then return P.read("body_chunk") end
    if index == 2 then return P.read("body_eof") end
  end,
  __newindex = function(_, index, value)
    if P.phase() ~= "body_filter" then
      error("API disabled in the current context", 2)
    end
    if index == 1 then
      local out = {}
      if value ~= nil then flatten(out, value, "arg", 1) end
      P.write("body_chunk", concat(out))
    elseif index == 2 then
      P.write("body_eof", value)
    end
  end,
})

-- Logging, time, sleeping ------------------------------------------------------

function ngx.log(level, ...)
  if type(level) ~= "number" then
    error(format("bad argument #1 to 'log' (number expected, got %s)", type(level)), 2)
  end
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  P.log(level, concat(parts))
end

function ngx.now() return floor(P.now() * 1000) / 1000 end
function ngx.time() return floor(P.now()) end
function ngx.update_time() end
function ngx.today() return os_date("%Y-%m-%d", ngx.time()) end
function ngx.localtime() return os_date("%Y-%m-%d %H:%M:%S", ngx.time()) end
function ngx.utctime() return os_date("!%Y-%m-%d %H:%M:%S", ngx.time()) end
function ngx.http_time(seconds) return os_date("!%a, %d %b %Y %H:%M:%S GMT", seconds) end
function ngx.cookie_time(seconds) return os_date("!%a, %d-%b-%y %H:%M:%S GMT", seconds) end

function ngx.parse_http_time(value)
  if type(value) ~= "string" then
    error(format("bad argument #1 to 'parse_http_time' (string expected, got %s)", type(value)), 2)
  end
  return P.parse_http_time(value)
end

function ngx.sleep(seconds)
  if type(seconds) ~= "number" or seconds < 0 then
    error("bad argument #1 to 'sleep' (invalid sleep duration)", 2)
  end
  S.check_request_phase()
  return await(P.sleep, seconds)
end

-- Codecs -------------------------------------------------------------------------

local function string_argument(caller, value)
  local kind = type(value)
  if kind == "string" then return value end
  if kind == "number" then return tostring(value) end
  if kind == "nil" then return "" end
  error(format("bad argument #1 to '%s' (string expected, got %s)", caller, kind), 3)
end

function ngx.encode_base64(value, no_padding)
  return P.encode_base64(string_argument("encode_base64", value), no_padding and true or false)
end
function ngx.decode_base64(value)
  if type(value) ~= "string" then error("string argument only", 2) end
  return P.decode_base64(value)
end
function ngx.md5(value) return P.md5(string_argument("md5", value)) end
function ngx.md5_bin(value) return P.md5_bin(string_argument("md5_bin", value)) end
function ngx.sha1_bin(value) return P.sha1_bin(string_argument("sha1_bin", value)) end
function ngx.hmac_sha1(key, value)
  return P.hmac_sha1(string_argument("hmac_sha1", key), string_argument("hmac_sha1", value))
end
function ngx.crc32_short(value) return P.crc32(string_argument("crc32_short", value)) end
ngx.crc32_long = ngx.crc32_short
ngx.escape_uri = S.escape_uri
ngx.unescape_uri = S.unescape_uri
ngx.encode_args = S.encode_args
-- Kong applies lua_max_uri_args here too.
function ngx.decode_args(query, max_args)
  return S.decode_args(query, max_args or info.max_uri_args)
end
ngx.quote_sql_str = S.quote_sql_str

-- Process information -----------------------------------------------------------

ngx.worker = {
  pid = function() return info.pid end,
  id = function() return info.worker_id end,
  count = function() return info.worker_count end,
  exiting = function() return false end,
}
ngx.config = {
  subsystem = "http", debug = false, nginx_version = 1025003, ngx_lua_version = 10026,
  is_console = false,
  prefix = function() return info.prefix end,
  nginx_configure = function() return "" end,
}
function ngx.get_phase() return P.phase() end

-- Timers ------------------------------------------------------------------------
-- The callback runs later, outside the request, as (premature, ...): premature is
-- true when the process stops before the timer is due.

local function new_timer(name, every, delay, callback, ...)
  if type(delay) ~= "number" then
    error(format("bad argument #1 to '%s' (number expected, got %s)", name, type(delay)), 3)
  end
  if delay < 0 or delay ~= delay or delay == math.huge then
    error("invalid delay", 3)
  end
  if every and delay == 0 then
    error("delay cannot be zero", 3)
  end
  if type(callback) ~= "function" then
    error(format("bad argument #2 to '%s' (function expected, got %s)", name, type(callback)), 3)
  end
  local count, args = select("#", ...), {...}
  local function job(premature)
    return callback(premature, unpack(args, 1, count))
  end
  return P.timer_at(delay, job, every)
end

ngx.timer = {
  at = function(delay, callback, ...) return new_timer("at", false, delay, callback, ...) end,
  every = function(delay, callback, ...) return new_timer("every", true, delay, callback, ...) end,
  running_count = function() return (P.timer_counts()) end,
  pending_count = function() return select(2, P.timer_counts()) end,
}

-- ngx.status, ngx.ctx and ngx.headers_sent read and write the running request.
-- ngx.ctx also holds Kong's KONG_* timing fields (KONG_PROXY_LATENCY ...): those
-- the proxy set since the last read are copied in, as Kong's runloop writes them.
local function ngx_ctx()
  local ctx = S.request_slot("ngx_ctx")
  local timings = P.timings()
  if timings then
    for name, value in pairs(timings) do rawset(ctx, name, value) end
  end
  return ctx
end

local ngx_fields = {
  status = function() return P.read("status") end,
  ctx = ngx_ctx,
  headers_sent = function() return SENT_PHASES[P.phase()] == true end,
}

return setmetatable(ngx, {
  __index = function(_, name)
    local field = ngx_fields[name]
    if field then return field() end
  end,
  __newindex = function(_, name, value)
    if name == "status" then
      if SENT_PHASES[P.phase()] then
        P.log(ngx.ERR, "attempt to set ngx.status after sending out response headers")
        return
      end
      local status = tonumber(value)
      if not status then
        error(format("bad argument to 'ngx.status' (number expected, got %s)", type(value)), 2)
      end
      return P.write("status", status)
    elseif name == "ctx" then
      if type(value) ~= "table" then error("ctx should be a table while getting a " .. type(value), 2) end
      P.slot().ngx_ctx = value
      return
    end
    rawset(ngx, name, value)
  end,
})
