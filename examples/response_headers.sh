#!/usr/bin/env bash
# A post-function that adds response headers to every answer of a service,
# proxied or short-circuited. Run after seed_demo.sh.
set -euo pipefail
ADMIN=${ADMIN:-localhost:8001}
PROXY=${PROXY:-localhost:8000}
curl -sS -X POST "$ADMIN/services/plugin-testing/plugins" --data name=post-function \
  --data-urlencode "config.header_filter[]=kong.response.set_header('X-Served-By', 'kongish')
kong.response.set_header('X-Request-Path', kong.request.get_path())"
echo
curl -sS -i "$PROXY/test?name=headers"
