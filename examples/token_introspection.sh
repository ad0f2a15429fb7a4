#!/usr/bin/env bash
# Token introspection with resty.http. Start the local services first
# (python examples/local_services.py) and the gateway with
# KONGISH_UNTRUSTED_LUA_SANDBOX_REQUIRES=resty.http.
set -euo pipefail
ADMIN=${ADMIN:-localhost:8001}
PROXY=${PROXY:-localhost:8000}
HERE=$(cd "$(dirname "$0")" && pwd)
curl -sS -X POST "$ADMIN/services" --data name=introspected --data url=http://127.0.0.1:9000/echo
curl -sS -X POST "$ADMIN/services/introspected/routes" --data 'paths[]=/introspected'
curl -sS -X POST "$ADMIN/services/introspected/plugins" -F name=pre-function \
  -F "config.access[1]=@$HERE/token_introspection.lua"
echo
curl -sS -i "$PROXY/introspected"                        # 401
curl -sS -i -H 'X-Token: good' "$PROXY/introspected"     # proxied with X-User: alice
