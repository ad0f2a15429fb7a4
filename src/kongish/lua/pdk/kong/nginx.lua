-- kong.nginx (Kong 3.x PDK): kongish serves HTTP only.

return {get_subsystem = function() return "http" end}
