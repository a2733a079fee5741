#!/usr/bin/env bash
# Long run of the property tests over every parser of outside input
# (tests/parsers.rs: bundle, blob, URI, import material and tokens, BYOK
# inputs, PEM/DER, PIN sources, ids, durations, passwords), in release mode.
# CI runs the same file with its short default.
#
#   scripts/fuzz.sh                 200,000 cases per property
#   PROPTEST_CASES=1000000 scripts/fuzz.sh
#   scripts/fuzz.sh uri_            only the properties whose name has uri_
#
# A failure is shrunk to a minimal input, printed, and saved by proptest in
# tests/parsers.proptest-regressions (commit it: it is replayed first).
set -euo pipefail
cd "$(dirname "$0")/.."

export PROPTEST_CASES="${PROPTEST_CASES:-200000}"
filter="${1:-}"
threads="${FUZZ_THREADS:-$(nproc 2>/dev/null || echo 2)}"

echo "building tests/parsers.rs (release)..."
cargo test --release --test parsers --no-run --quiet

# Properties are the tests other than the fixed samples and regressions.
mapfile -t props < <(cargo test --release --test parsers --quiet -- --list "$filter" 2>/dev/null |
    sed -n 's/: test$//p' | grep -v -e '^the_samples_are_valid$' -e '^regression_')
echo "${#props[@]} properties x ${PROPTEST_CASES} cases, ${threads} threads"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$(date +%s.%N)
status=0
cargo test --release --test parsers --quiet -- --test-threads "$threads" "$filter" 2>&1 | tee "$log" || status=$?
end=$(date +%s.%N)

secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
total=$((${#props[@]} * PROPTEST_CASES))
rate=$(awk -v n="$total" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }')
echo
echo "fuzz: ${#props[@]} properties, ${PROPTEST_CASES} cases each, ${total} cases in ${secs} s (${rate} cases/s)"
if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED; minimal inputs above:"
    grep -E 'minimal failing input|panicked at' "$log" | sort -u || true
    exit "$status"
fi
echo "fuzz: no failure"
