#!/usr/bin/env bash
# A per-client rate limit shared by all worker processes. Start the gateway with the dict
# declared, as Kong's kong.conf declares one:
#   KONGISH_NGINX_HTTP_LUA_SHARED_DICT="rate_limit 1m" twist kongish
# (or nginx_http_lua_shared_dict = rate_limit 1m in kong.conf). Upload the Lua file with -F.
# PUT with fixed names and id, so that it can run again.
set -euo pipefail
ADMIN=${ADMIN:-localhost:8001}
PROXY=${PROXY:-localhost:8000}
HERE=$(cd "$(dirname "$0")" && pwd)
PLUGIN_ID=5eed0000-0000-4000-8000-00000000d1c7
curl -sS -X PUT "$ADMIN/services/limited" --data url=http://dead.end.com
echo
curl -sS -X PUT "$ADMIN/services/limited/routes/limited" --data 'paths[]=/limited'
echo
curl -sS -X PUT "$ADMIN/services/limited/plugins/$PLUGIN_ID" -F name=pre-function \
  -F "config.access[1]=@$HERE/rate_limit_shared_dict.lua" \
  -F "config.access[2]=ngx.say('hello') ngx.exit(200)"
echo
for _ in 1 2 3 4 5 6; do
  curl -sS -o /dev/null -w '%{http_code} ' "$PROXY/limited"   # 200 200 200 200 200 429
done
echo
