#!/usr/bin/env bash
# Piiano's own TypeScript client (@piiano/vault-client, from npm) against
# `hsmkey serve`: installs it into a temporary folder, then runs the
# `piiano_typescript_client` test of tests/serve.rs with it, bounded in time.
# Skips, saying so, only when the npm registry cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "SKIPPED: node and npm are not installed (scripts/install-deps.sh installs them)" >&2
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp scripts/piiano-client/package.json scripts/piiano-client/export-key.js "$work/"
if ! timeout 30 npm ping >/dev/null 2>&1; then
    echo "SKIPPED: the npm registry cannot be reached; the Piiano client check did not run" >&2
    exit 0
fi
(cd "$work" && timeout 180 npm install --no-audit --no-fund --loglevel=error >/dev/null)
HSMKEY_TEST_PIIANO_CLIENT="$work" timeout 600 cargo test --test serve piiano_typescript_client -- --nocapture
