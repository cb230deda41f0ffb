#!/usr/bin/env bash
# The AsyncAPI document is generated from the code (a Rust test fails if docs/asyncapi.yaml is
# stale); this validates it against the AsyncAPI specification with the official parser.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@asyncapi/parser ] || npm install --silent --no-audit --no-fund --no-package-lock
node check.mjs "$(cd ../.. && pwd)/docs/asyncapi.yaml"
