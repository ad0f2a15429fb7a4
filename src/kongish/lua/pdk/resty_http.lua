-- resty.http: lua-resty-http's API over kongish's own upstream client.
--
-- Each request is one call to Python (P.http_request) that the worker coroutine
-- awaits: other requests flow meanwhile, in every phase (header_filter, body_filter
-- and log included, which OpenResty's cosockets cannot serve). Connections are the
-- node's pooled ones, so connect() only records where to send, set_keepalive() and
-- close() have nothing to release, and a refused connection shows as request()'s
-- error. The response body is read whole (up to lua_outbound_body_limit); body_reader
-- hands it out in chunks. Errors are lua-resty-http's: nil and a string.

local P, await, ngx = ...

local concat, find, lower, upper, ipairs, pairs, rawget, setmetatable, tonumber, tostring, type, error =
  table.concat, string.find, string.lower, string.upper, ipairs, pairs, rawget, setmetatable, tonumber,
  tostring, type, error
local huge = math.huge

-- RFC 9110's token: what a method and a header name may be.
local TOKEN = "^[%w!#$%%&'*+%-.^_`|~]+$"

-- A timeout in ms, as cosockets take them: a finite number, 0 or more.
local function timeout_ms(value, default)
  if value == nil then return default end
  local ms = tonumber(value)
  if ms == nil or ms < 0 or ms ~= ms or ms == huge then
    error("bad timeout value", 3)
  end
  return ms
end

-- cosockets' default timeouts (lua_socket_connect_timeout and friends), in ms
local DEFAULT_TIMEOUT = 60000

local _M = {_VERSION = "0.17.2"}
local mt = {__index = _M}

-- Response headers: looked up in any case, "_" standing for "-", as lua-resty-http's.
local function header_table(flat)
  local names = {}
  local headers = setmetatable({}, {
    __index = function(t, name)
      if type(name) ~= "string" then return nil end
      local real = names[lower(name):gsub("_", "-")]
      return real and rawget(t, real)
    end,
  })
  for i = 1, #flat, 2 do
    local name, value = flat[i], flat[i + 1]
    local key = lower(name)
    local real = names[key]
    if real == nil then
      names[key] = name
      headers[name] = value
    else
      local existing = rawget(headers, real)
      if type(existing) == "table" then
        existing[#existing + 1] = value
      else
        headers[real] = {existing, value}
      end
    end
  end
  return headers
end

function _M.new()
  return setmetatable({
    connect_timeout = DEFAULT_TIMEOUT, send_timeout = DEFAULT_TIMEOUT, read_timeout = DEFAULT_TIMEOUT,
  }, mt)
end

function _M.set_timeout(self, timeout)
  local ms = timeout_ms(timeout, DEFAULT_TIMEOUT)
  self.connect_timeout, self.send_timeout, self.read_timeout = ms, ms, ms
end

function _M.set_timeouts(self, connect, send, read)
  self.connect_timeout = timeout_ms(connect, self.connect_timeout)
  self.send_timeout = timeout_ms(send, self.send_timeout)
  self.read_timeout = timeout_ms(read, self.read_timeout)
end

function _M.parse_uri(_, uri, query_in_path)
  if query_in_path == nil then query_in_path = true end
  if type(uri) ~= "string" then
    return nil, "bad uri: " .. tostring(uri)
  end
  local scheme, rest = uri:match("^(https?)://(.*)$")
  if not scheme then
    if uri:sub(1, 2) == "//" then
      return nil, "schemaless URIs require a request context: " .. uri
    end
    return nil, "bad uri: " .. uri
  end
  local authority, path = rest:match("^([^/%?#]*)(.*)$")
  authority = authority:gsub("^.*@", "")  -- userinfo is not sent as a header here
  local host, port = authority:match("^%[(.-)%]:?(%d*)$")
  if not host then
    host, port = authority:match("^([^:]*):?(%d*)$")
  end
  if not host or host == "" then
    return nil, "bad uri: " .. uri
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  path = path:gsub("#.*$", "")
  local query = ""
  local mark = path:find("?", 1, true)
  if mark then
    path, query = path:sub(1, mark - 1), path:sub(mark + 1)
  end
  if path == "" then path = "/" end
  if query_in_path and query ~= "" then
    return {scheme, host, port, path .. "?" .. query}
  end
  return {scheme, host, port, path, query}
end

-- connect(host, port, options) or connect{scheme, host, port, ssl_verify, ssl_server_name}
function _M.connect(self, options, port, extra)
  if type(options) ~= "table" then
    options = {host = options, port = port, ssl_verify = extra and extra.ssl_verify}
  end
  local host = options.host
  if type(host) ~= "string" or host == "" then
    return nil, "no host specified"
  end
  if find(host, "[%c%s/?#@]") then
    return nil, "bad host: " .. host
  end
  if host:sub(1, 5) == "unix:" then
    return nil, "unix domain sockets are not supported"
  end
  local scheme = options.scheme or "http"
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "unsupported scheme: " .. tostring(scheme)
  end
  self.scheme, self.host = scheme, host
  self.port = tonumber(options.port) or (scheme == "https" and 443 or 80)
  self.ssl_verify = options.ssl_verify ~= false
  return true
end

function _M.set_keepalive()
  return 1
end

function _M.close()
  return 1
end

local function body_text(body)
  local kind = type(body)
  if body == nil or kind == "string" then return body end
  if kind == "number" then return tostring(body) end
  if kind == "table" then return concat(body) end
  if kind == "function" then
    local parts = {}
    while true do
      local chunk = body()
      if chunk == nil or chunk == "" then break end
      parts[#parts + 1] = chunk
    end
    return concat(parts)
  end
  error("bad body: " .. kind, 3)
end

-- The headers as {name, value, ...}, or nil and the error for a name that is no token.
local function header_list(headers)
  local flat = {}
  for name, value in pairs(headers or {}) do
    name = tostring(name)
    if not find(name, TOKEN) then
      return nil, "invalid header name: " .. name
    end
    if type(value) == "table" then
      for _, item in ipairs(value) do
        flat[#flat + 1], flat[#flat + 2] = tostring(name), tostring(item)
      end
    else
      flat[#flat + 1], flat[#flat + 2] = tostring(name), tostring(value)
    end
  end
  return flat
end

local function chunks_of(body)
  local offset = 1
  return function(size)
    if offset > #body then return nil end
    size = tonumber(size) or #body
    if size < 1 then size = #body end
    local chunk = body:sub(offset, offset + size - 1)
    offset = offset + #chunk
    return chunk
  end
end

function _M.request(self, params)
  params = params or {}
  if not self.host then
    return nil, "not connected"
  end
  local query = params.query
  if type(query) == "table" then
    query = ngx.encode_args(query)
  elseif query ~= nil then
    query = tostring(query)
    if query:sub(1, 1) == "?" then query = query:sub(2) end
  end
  local path = tostring(params.path or "/")
  if query == nil or query == "" then
    local mark = path:find("?", 1, true)
    if mark then
      path, query = path:sub(1, mark - 1), path:sub(mark + 1)
    end
  end
  -- nothing that would end the request line early reaches the wire
  if find(path, "[%c ]") then
    return nil, "bad path: " .. path
  end
  if query and find(query, "[%c ]") then
    return nil, "bad query: " .. query
  end
  local method = upper(tostring(params.method or "GET"))
  if not find(method, TOKEN) then
    return nil, "bad method: " .. method
  end
  local sent, header_err = header_list(params.headers)
  if not sent then
    return nil, header_err
  end
  local status, reason, headers, body = await(
    P.http_request, self.scheme, self.host, self.port, method, path, query, sent,
    body_text(params.body), self.connect_timeout / 1000, self.send_timeout / 1000,
    self.read_timeout / 1000, self.ssl_verify)
  if status == nil then
    return nil, reason
  end
  local res = {status = status, reason = reason, headers = header_table(headers), has_body = #body > 0,
               body_reader = chunks_of(body)}
  function res.read_body()
    return body
  end
  function res.read_trailers() end
  return res
end

function _M.request_uri(self, uri, params)
  params = params or {}
  local parsed, err = self:parse_uri(uri, false)
  if not parsed then
    return nil, err
  end
  local scheme, host, port, path, query = parsed[1], parsed[2], parsed[3], parsed[4], parsed[5]
  local ssl_verify = params.ssl_verify
  if ssl_verify == nil then ssl_verify = true end
  local ok, connect_err = self:connect{scheme = scheme, host = host, port = port, ssl_verify = ssl_verify}
  if not ok then
    return nil, connect_err
  end
  local request = {}
  for key, value in pairs(params) do request[key] = value end
  request.path = params.path or path
  if params.query == nil and query ~= "" then request.query = query end
  local res, request_err = self:request(request)
  if not res then
    return nil, request_err
  end
  res.body = res:read_body()
  return res
end

return _M
