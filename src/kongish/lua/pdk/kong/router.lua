-- kong.router (Kong 3.x PDK): the route and service the request matched.

local P, cjson = ...

local function decoded(field)
  local json = P.read(field)
  return json and cjson.decode(json)
end

return {
  get_route = function() return decoded("route_json") end,
  get_service = function() return decoded("service_json") end,
}
