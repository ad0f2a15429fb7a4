-- A rate limit kept for the whole node: at most LIMIT requests per client address in
-- each WINDOW seconds, counted in ngx.shared.rate_limit, which every worker process
-- shares (declare it: nginx_http_lua_shared_dict = rate_limit 1m). incr is atomic across
-- the workers, so the limit holds however the connections spread. Past it: 429.
local LIMIT, WINDOW = 5, 60

local now = ngx.now()
local window = math.floor(now / WINDOW)
local key = kong.client.get_forwarded_ip() .. ":" .. window
-- a new window's count starts at 0 and is dropped once the window is over
local count, err = ngx.shared.rate_limit:incr(key, 1, 0, WINDOW)
if not count then
  kong.log.err("rate limit not counted, letting the request through: ", err)
  return
end
kong.response.set_header("X-RateLimit-Limit", LIMIT)
kong.response.set_header("X-RateLimit-Remaining", math.max(0, LIMIT - count))
if count > LIMIT then
  kong.response.set_header("Retry-After", math.ceil((window + 1) * WINDOW - now))
  return kong.response.exit(429, {message = "API rate limit exceeded"})
end
