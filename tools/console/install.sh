#!/usr/bin/env bash
# Installs GOV.UK Frontend (pinned by package.json and package-lock.json) from the npm registry
# for the web console: the gateway serves tools/console/node_modules/govuk-frontend/dist/govuk
# (gateway.console.assets_dir). Without it the console's pages work, unstyled.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "npm missing: apt-get install -y npm" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
test -f node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.css
echo "GOV.UK Frontend installed: $(pwd)/node_modules/govuk-frontend/dist/govuk"
