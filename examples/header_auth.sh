#!/usr/bin/env bash
# A header-based check: requests to /private need "X-Api-Key: let-me-in",
# others get Kong's 401 JSON before any upstream call. Upload the Lua file with -F.
set -euo pipefail
ADMIN=${ADMIN:-localhost:8001}
PROXY=${PROXY:-localhost:8000}
HERE=$(cd "$(dirname "$0")" && pwd)
curl -sS -X POST "$ADMIN/services" --data name=private --data url=http://dead.end.com
curl -sS -X POST "$ADMIN/services/private/routes" --data 'paths[]=/private'
curl -sS -X POST "$ADMIN/services/private/plugins" -F name=pre-function \
  -F "config.access[1]=@$HERE/header_auth.lua" -F "config.access[2]=ngx.say('welcome') ngx.exit(200)"
echo
curl -sS -i "$PROXY/private"
curl -sS -i -H 'X-Api-Key: let-me-in' "$PROXY/private"
