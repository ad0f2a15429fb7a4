-- kong.plugin (Kong 3.x PDK): the running plugin instance.

local P = ...

return {get_id = function() return P.plugin()[2] end}
