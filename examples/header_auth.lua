-- Refuse requests without the expected API key, before any upstream call.
local key = kong.request.get_header("X-Api-Key")
if key ~= "let-me-in" then
  return kong.response.exit(401, { message = "Unauthorized" }, { ["WWW-Authenticate"] = "ApiKey" })
end
