-- kong.ip (Kong 3.x PDK): whether an address is one of trusted_ips.

local P = ...

return {is_trusted = function(address) return P.is_trusted(address) end}
