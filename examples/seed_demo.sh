#!/usr/bin/env bash
# The seed demo against a running kongish (twist kongish): prints "Hello Kong!".
set -euo pipefail
ADMIN=${ADMIN:-localhost:8001}
PROXY=${PROXY:-localhost:8000}
curl -sS -X POST "$ADMIN/services" --data name=plugin-testing --data url=http://dead.end.com
curl -sS -X POST "$ADMIN/services/plugin-testing/routes" --data 'paths[]=/test'
curl -sS -X POST "$ADMIN/services/plugin-testing/plugins" --data name=pre-function \
  --data "config.access[]=local qs=ngx.req.get_uri_args() if qs and qs.name then ngx.say('Hello '..qs.name..'!') else ngx.say('Hello Serverless Functions!') end ngx.exit(200)"
echo
curl -sS "$PROXY/test?name=Kong"
