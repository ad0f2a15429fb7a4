#!/usr/bin/env bash
# The seed demo against a running kongish (twist kongish): prints "Hello Kong!".
# The same calls as README's demo, under names of its own (service and route
# "seed-demo", path /seed-demo) and with PUT, so that it can run again, and beside
# README's commands, without a 409 or a second route.
set -euo pipefail
ADMIN=${ADMIN:-localhost:8001}
PROXY=${PROXY:-localhost:8000}
PLUGIN_ID=5eed0000-0000-4000-8000-000000000001
curl -sS -X PUT "$ADMIN/services/seed-demo" --data url=http://dead.end.com
echo
curl -sS -X PUT "$ADMIN/services/seed-demo/routes/seed-demo" --data 'paths[]=/seed-demo'
echo
curl -sS -X PUT "$ADMIN/services/seed-demo/plugins/$PLUGIN_ID" --data name=pre-function \
  --data "config.access[]=local qs=ngx.req.get_uri_args() if qs and qs.name then ngx.say('Hello '..qs.name..'!') else ngx.say('Hello Serverless Functions!') end ngx.exit(200)"
echo
curl -sS "$PROXY/seed-demo?name=Kong"
