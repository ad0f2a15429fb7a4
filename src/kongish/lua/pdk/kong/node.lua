-- kong.node (Kong 3.x PDK): this node's id and host name.

local info = ...

return {
  get_id = function() return info.node_id end,
  get_hostname = function() return info.hostname end,
}
