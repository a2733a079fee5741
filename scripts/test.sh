#!/usr/bin/env bash
# The whole check, as CI runs it on a fresh Debian machine: install the
# tokens, then formatting, lints, the unit tests, and the integration suite
# once per token kind (SoftHSM2, kryoptic, NSS softokn), and the README and
# docs run as written (scripts/doc-test.sh). cargo audit runs
# when the advisory database can be reached (scripts/audit.sh).
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
cargo fmt --all --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo audit (scripts/audit.sh)" >&2
audit=0
scripts/audit.sh || audit=$?
case "$audit" in
0) audit_result="clean" ;;
3) audit_result="NOT RUN (advisory database unreachable; see above)" ;;
*) exit "$audit" ;;
esac
echo "== unit tests" >&2
cargo test --lib --bins
cargo test -p hsmkey-p11shim
echo "== README.md, docs/BYOK.md and docs/FORMAT.md run as written (scripts/doc-test.sh)" >&2
scripts/doc-test.sh
# The PKCS#11 pass-through (tools/p11shim) the fault-injection tests load.
cargo build -p hsmkey-p11shim
export HSMKEY_TEST_SHIM="${CARGO_TARGET_DIR:-$PWD/target}/debug/libhsmkey_p11shim.so"
for kind in $kinds; do
    echo "== integration tests on $kind" >&2
    HSMKEY_TEST_TOKEN="$kind" cargo test --tests
done
echo "== Piiano's TypeScript client against hsmkey serve (scripts/piiano-client.sh)" >&2
scripts/piiano-client.sh
echo "== Huawei's huaweicloudsdkkms (Python) against hsmkey serve with AK/SK (scripts/huawei-sdk-test.sh)" >&2
timeout 900 scripts/huawei-sdk-test.sh
if [ "$kinds" = "softhsm kryoptic nss" ]; then
    echo "== cross-token tests (backup on one kind, restore on another)" >&2
    HSMKEY_TEST_CROSS=1 cargo test --test cross_token
fi
# The benchmark is not a test (no timed assertions): CI only checks that it
# still runs end to end, on a small token.
if [ "${HSMKEY_SKIP_BENCH:-}" != "1" ]; then
    echo "== bench smoke run (scripts/bench.sh 50)" >&2
    HSMKEY_BENCH_LOOP_KEYS=3 HSMKEY_BENCH_NET_KEYS=50 scripts/bench.sh 50
fi
echo "== done; cargo audit: $audit_result" >&2
