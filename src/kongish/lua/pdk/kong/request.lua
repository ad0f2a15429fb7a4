-- kong.request (Kong 3.x PDK): the client's request as it arrived.

local P, S, H, ngx, cjson, info = ...

local find, gsub, lower, sub = string.find, string.gsub, string.lower, string.sub
local error, ipairs, pairs, pcall, tonumber, type = error, ipairs, pairs, pcall, tonumber, type
local client_header, check_max, first = H.client_header, H.check_max, H.first

local request = {}

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

return request
