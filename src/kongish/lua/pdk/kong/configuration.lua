-- kong.configuration (Kong 3.x PDK): the node's settings, read-only.

local info = ...

local error, setmetatable = error, setmetatable

return setmetatable({}, {
  __index = info.configuration,
  __newindex = function() error("cannot write to configuration", 2) end,
  __metatable = false,
})
