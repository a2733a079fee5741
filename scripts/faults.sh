#!/usr/bin/env bash
# The full fault sweep: every command that moves or makes keys, run once per
# (PKCS#11 function, call index) with that call failing with
# CKR_DEVICE_ERROR through tools/p11shim (tests/faults.rs with
# HSMKEY_FAULT_SWEEP=full; CI runs a sample of the positions), then the
# concurrency and crash tests (tests/concurrency.rs). Prints, per command,
# the positions tried, the outcomes and the time.
#
#   scripts/faults.sh            # debug build
#   scripts/faults.sh --release  # release build (faster per run)
#
# HSMKEY_FAULT_THREADS sets the test threads (default: the number of CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=()
dir=debug
if [ "${1:-}" = "--release" ]; then
    profile=(--release)
    dir=release
fi

scripts/install-deps.sh
unset HSMKEY_MODULE HSMKEY_TOKEN HSMKEY_SESSIONS HSMKEY_SHIM_FAULT HSMKEY_SHIM_DELAY_US HSMKEY_SHIM_COUNTS
export HSMKEY_TEST_TOKEN=softhsm

cargo build "${profile[@]}" -p hsmkey-p11shim
export HSMKEY_TEST_SHIM="${CARGO_TARGET_DIR:-$PWD/target}/$dir/libhsmkey_p11shim.so"
threads=(--test-threads "${HSMKEY_FAULT_THREADS:-$(nproc)}")

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
start=$(date +%s)
HSMKEY_FAULT_SWEEP=full cargo test "${profile[@]}" --test faults -- --nocapture "${threads[@]}" \
    >"$log" 2>&1 || status=$?
sweep_end=$(date +%s)
cargo test "${profile[@]}" --test concurrency -- --nocapture "${threads[@]}" \
    >>"$log" 2>&1 || status=$?
end=$(date +%s)

echo "== fault sweep (HSMKEY_FAULT_SWEEP=full, $dir build): $((sweep_end - start)) s"
grep -E '^SWEEP ' "$log" | sed 's/^SWEEP /  /' || true
violations=$(grep -c '^  VIOLATION ' "$log" || true)
echo "  violations: $violations"
grep -E '^  VIOLATION ' "$log" | head -200 || true
echo "== concurrency and crash tests: $((end - sweep_end)) s"
grep -E '^CRASH |^test .* \.\.\. ' "$log" | grep -v 'sweep_' || true
grep -E '^test result:' "$log" || true
if [ "$status" -ne 0 ]; then
    echo "FAILED (exit $status); the whole output:" >&2
    grep -vE '^  VIOLATION ' "$log" | tail -200 >&2
fi
exit "$status"
