#!/usr/bin/env bash
# The web console in a real browser (tests/browser/console.test.mjs): installs what it needs when
# missing (Debian's Chromium; the pinned npm packages; GOV.UK Frontend), builds the binary, runs
# node's test runner. Screenshots: target/browser-artefacts/. EH_BIN names a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian's; Playwright cannot download its own here)"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
[ -f tools/console/node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.css ] || bash tools/console/install.sh
if [ -z "${EH_BIN:-}" ]; then
  cargo build -q --bin earlyhelp
  EH_BIN="${CARGO_TARGET_DIR:-target}/debug/earlyhelp"
fi
export EH_BIN="$(realpath "$EH_BIN")"
cd tests/browser
exec node --test --test-concurrency=1 console.test.mjs
