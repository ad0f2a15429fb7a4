-- kong.response (Kong 3.x PDK): the response the client gets.

local P, S, H, ngx, cjson, stop = ...

local concat, format, gsub, lower = table.concat, string.format, string.gsub, string.lower
local error, ipairs, pcall, type = error, ipairs, pcall, type
local PHASES, sorted_names, validate_headers = H.PHASES, H.sorted_names, H.validate_headers

local response = {}

local function check_status(status)
  if type(status) ~= "number" then error("code must be a number", 3) end
  if status < 100 or status > 599 then error("code must be a number between 100 and 599", 3) end
end

H.add_response_getters(response, "status", "response")

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
  if H.is_transfer_encoding(name) then
    return P.log(ngx.WARN, "manually setting Transfer-Encoding. Ignored.")
  end
  H.change_header("response", operation, name, value)
end

H.add_header_setters(response, "response", PHASES.rewrite_access_header, set_response_header)

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

return response
