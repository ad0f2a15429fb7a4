-- kong.service (Kong 3.x PDK): the request kongish sends upstream, and the
-- upstream's response.

local P, S, H, cjson = ...

local sub = string.sub
local error, pcall, type = error, pcall, type
local PHASES = H.PHASES

local service_request = {}
local service_response = {}

H.add_header_setters(service_request, "request", PHASES.access_rewrite_balancer,
                     function(operation, name, value)
                       H.change_header("request", operation, name, value)
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
  local content_type = mimetype or H.client_header("content-type")
  if not content_type then
    error("content type was neither explicitly given as an argument or received as a header", 2)
  end
  local mime = H.mime_type(content_type)
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

H.add_response_getters(service_response, "service_status", "service")

return {request = service_request, response = service_response}
