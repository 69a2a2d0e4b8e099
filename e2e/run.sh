#!/usr/bin/env bash
# Runs the browser tests against the built server (COURIER_BIN, default ../target/debug/courier).
# Needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
[ -d oidc/node_modules ] || npm ci --prefix oidc --no-audit --no-fund
exec node --test --test-concurrency=1
