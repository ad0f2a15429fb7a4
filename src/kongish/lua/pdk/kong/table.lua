-- kong.table (Kong 3.x PDK).

local pairs = pairs

return {
  new = function() return {} end,
  clear = function(t)
    for key in pairs(t) do t[key] = nil end
  end,
}
