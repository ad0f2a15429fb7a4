-- kong.client (Kong 3.x PDK): who sent the request; kongish has no consumers.

local P = ...

return {
  get_ip = function() return P.read("realip_remote_addr") end,
  get_port = function() return P.read("remote_port") end,
  get_forwarded_ip = function() return P.read("remote_addr") end,
  get_forwarded_port = function() return P.read("remote_port") end,
  get_protocol = function() return P.read("scheme") end,
  get_consumer = function() return nil end,
  get_credential = function() return nil end,
  get_consumer_groups = function() return nil end,
}
