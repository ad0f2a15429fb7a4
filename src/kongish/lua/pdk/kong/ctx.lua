-- kong.ctx (Kong 3.x PDK): tables that live as long as the request, shared by
-- all plugins (kong.ctx.shared) or private to one instance (kong.ctx.plugin).

local P, S = ...

local setmetatable = setmetatable

return setmetatable({}, {
  __index = function(_, name)
    if name == "shared" then return S.request_slot("kong_shared") end
    if name == "plugin" then
      local plugins = S.request_slot("kong_plugin")
      local key = P.plugin()[2]
      local ctx = plugins[key]
      if ctx == nil then
        ctx = {}
        plugins[key] = ctx
      end
      return ctx
    end
  end,
})
