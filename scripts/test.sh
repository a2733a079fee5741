#!/usr/bin/env bash
# The whole check, as CI runs it on a fresh Debian machine: install the
# tokens, then formatting, lints, the unit tests, and the integration suite
# once per token kind (SoftHSM2, kryoptic, NSS softokn).
#
# HSMKEY_TEST_TOKENS="softhsm nss" limits the kinds (default: all three).
set -euo pipefail
cd "$(dirname "$0")/.."

kinds="${HSMKEY_TEST_TOKENS:-softhsm kryoptic nss}"

scripts/install-deps.sh
case " $kinds " in
*" kryoptic "*) scripts/install-kryoptic.sh ;;
esac

echo "== cargo fmt --check" >&2
cargo fmt --check
echo "== cargo clippy" >&2
cargo clippy --all-targets -- -D warnings
echo "== unit tests" >&2
cargo test --lib --bins
for kind in $kinds; do
    echo "== integration tests on $kind" >&2
    HSMKEY_TEST_TOKEN="$kind" cargo test --tests
done
if [ "$kinds" = "softhsm kryoptic nss" ]; then
    echo "== cross-token tests (backup on one kind, restore on another)" >&2
    HSMKEY_TEST_CROSS=1 cargo test --test cross_token
fi
