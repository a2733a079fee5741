#!/usr/bin/env bash
# The whole check, as CI runs it on a fresh Debian machine: install the
# tokens, then formatting, lints and every test against real SoftHSM2 tokens.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --check
echo "== cargo clippy" >&2
cargo clippy --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --all-targets
