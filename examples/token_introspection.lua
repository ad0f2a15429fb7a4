-- Token introspection before proxying: the token in X-Token is checked with an
-- introspection service (RFC 7662 style, form-encoded). An active token's user goes
-- upstream in X-User; anything else gets Kong's 401 JSON before any upstream call.
-- Needs untrusted_lua_sandbox_requires = resty.http.
local http = require "resty.http"

local token = kong.request.get_header("x-token")
if not token then
  return kong.response.exit(401, {message = "Unauthorized"})
end

local httpc = http.new()
httpc:set_timeout(2000)
local res, err = httpc:request_uri("http://127.0.0.1:9000/introspect", {
  method = "POST",
  body = ngx.encode_args({token = token}),
  headers = {["Content-Type"] = "application/x-www-form-urlencoded"},
})
if not res then
  kong.log.err("introspection failed: ", err)
  return kong.response.exit(502, {message = "introspection failed: " .. err})
end
if res.status ~= 200 then
  return kong.response.exit(401, {message = "Unauthorized"})
end
kong.service.request.set_header("X-User", res.body)
