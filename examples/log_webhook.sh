#!/usr/bin/env bash
# A log-phase webhook with resty.http. Start the local services first
# (python examples/local_services.py: it prints each webhook) and the gateway with
# KONGISH_UNTRUSTED_LUA_SANDBOX_REQUIRES=resty.http.
set -euo pipefail
ADMIN=${ADMIN:-localhost:8001}
PROXY=${PROXY:-localhost:8000}
HERE=$(cd "$(dirname "$0")" && pwd)
curl -sS -X POST "$ADMIN/services" --data name=hooked --data url=http://dead.end.com
curl -sS -X POST "$ADMIN/services/hooked/routes" --data 'paths[]=/hooked'
curl -sS -X POST "$ADMIN/services/hooked/plugins" --data name=pre-function \
  --data "config.access[]=ngx.say('hello') ngx.exit(200)"
curl -sS -X POST "$ADMIN/services/hooked/plugins" -F name=post-function \
  -F "config.log[1]=@$HERE/log_webhook.lua"
echo
curl -sS -i "$PROXY/hooked"   # the services print: webhook: served /hooked with 200
