-- A webhook from the log phase: after the client has its response, tell another
-- service what was served. OpenResty cannot call out from the log phase (Kong users
-- start a 0-delay timer for it); in kongish the function may call directly.
-- Needs untrusted_lua_sandbox_requires = resty.http.
local http = require "resty.http"

local res, err = http.new():request_uri("http://127.0.0.1:9000/hook", {
  method = "POST",
  body = "served " .. kong.request.get_path() .. " with " .. kong.response.get_status(),
  headers = {["Content-Type"] = "text/plain"},
})
if not res then
  kong.log.err("webhook failed: ", err)
end
