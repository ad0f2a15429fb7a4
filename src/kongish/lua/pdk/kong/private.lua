-- What the kong.* namespaces share: Kong's argument checks (kong.pdk.private.checks),
-- its phase sets (kong.pdk.private.phases) and the header helpers of kong.request,
-- kong.response and kong.service.

local P, S, info = ...

local format, gsub, lower, sort = string.format, string.gsub, string.lower, table.sort
local error, ipairs, pairs, tostring, type, unpack = error, ipairs, pairs, tostring, type, unpack

local H = {}

H.PHASES = {
  rewrite_access_header = S.phases("rewrite", "access", "response", "header_filter", "error", "admin_api"),
  header_body_log = S.phases("response", "header_filter", "body_filter", "log", "error", "admin_api"),
  body_filter = S.phases("body_filter"),
  access_and_rewrite = S.phases("rewrite", "access"),
  access_rewrite_balancer = S.phases("rewrite", "access", "balancer"),
}

function H.first(value)
  if type(value) == "table" then return value[1] end
  return value
end

function H.client_header(name)
  local values = P.header_values("client", name)
  return values and values[1]
end

function H.check_max(name, value)
  if value == nil then return end
  if type(value) ~= "number" then error(name .. " must be a number", 3) end
  if value < 1 then error(name .. " must be >= 1", 3) end
  if value > 1000 then error(name .. " must be <= 1000", 3) end
end

-- Header checks from kong.pdk.private.checks.
function H.validate_header(name, value)
  if type(name) ~= "string" then
    error(format("invalid header name %q: got %s, expected string", tostring(name), type(name)), 3)
  end
  local kind = type(value)
  if kind ~= "string" and kind ~= "number" and kind ~= "boolean" then
    error(format("invalid header value for %q: got %s, expected string, number or boolean", name, kind), 3)
  end
end

function H.validate_headers(headers)
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

-- ``S.change_header`` of one header of ``target`` to ``value``: a string, number or
-- boolean, or an array of strings. Kong sends an empty header value as a single space.
function H.change_header(target, operation, name, value)
  if type(value) == "table" then
    local values = {}
    for i, item in ipairs(value) do values[i] = item == "" and " " or item end
    return S.change_header(target, operation, name, unpack(values))
  end
  if type(value) ~= "string" then value = tostring(value) end
  return S.change_header(target, operation, name, value == "" and " " or value)
end

function H.is_transfer_encoding(name)
  local lowered = lower(name)
  return lowered == "transfer-encoding" or lowered == "transfer_encoding"
end

function H.sorted_names(headers)
  local names = {}
  for name in pairs(headers) do names[#names + 1] = name end
  sort(names)
  return names
end

-- kong.response and kong.service.request change headers alike: set_header,
-- add_header, clear_header and set_headers of ``target``'s headers, allowed in
-- ``phases``, with ``change(operation, name, value)`` doing a set or an add.
function H.add_header_setters(api, target, phases, change)
  function api.set_header(name, value)
    S.check_phase(phases)
    H.validate_header(name, value)
    change("set", name, value)
  end

  function api.add_header(name, value)
    S.check_phase(phases)
    H.validate_header(name, value)
    change("add", name, value)
  end

  function api.clear_header(name)
    S.check_phase(phases)
    if type(name) ~= "string" then error("header name must be a string", 2) end
    S.change_header(target, "clear", name)
  end

  function api.set_headers(headers)
    S.check_phase(phases)
    H.validate_headers(headers)
    for _, name in ipairs(H.sorted_names(headers)) do
      change("set", name, headers[name])
    end
  end
end

function H.mime_type(content_type)
  return lower((gsub(content_type, "%s*;.*$", "")))
end

-- kong.response and kong.service.response read a response alike: its status
-- (the P.read field ``status``) and the headers of P's ``headers`` source.
function H.add_response_getters(api, status, headers)
  function api.get_status()
    S.check_phase(H.PHASES.header_body_log)
    return P.read(status)
  end

  function api.get_headers(max_headers)
    S.check_phase(H.PHASES.header_body_log)
    H.check_max("max_headers", max_headers)
    return S.headers_table(P.header_list(headers), max_headers or info.max_resp_headers)
  end

  function api.get_header(name)
    S.check_phase(H.PHASES.header_body_log)
    if type(name) ~= "string" then error("header name must be a string", 2) end
    return H.first(P.header_values(headers, name))
  end
end

return H
