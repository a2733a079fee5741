#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit.
# The exceptions, each with its reason, are in .cargo/audit.toml.
#
# The database is a git repository on github.com. HSMKEY_ADVISORY_DB names a
# local clone of it (for machines that cannot reach GitHub); otherwise
# cargo-audit fetches it. When neither is possible the check is not run, and
# this script says so on stderr and in its exit code: 0 = audited and clean,
# 1 = advisories found, 3 = not run (database unreachable).
# HSMKEY_REQUIRE_AUDIT=1 turns "not run" into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# The exceptions' own conditions hold whether or not the database is here.
if [ -n "$(cargo tree --quiet -e normal,build -i rsa 2>/dev/null)" ]; then
    echo "audit: rsa is a dependency of hsmkey itself again: the RUSTSEC-2023-0071 exception in .cargo/audit.toml no longer holds" >&2
    exit 1
fi

db_args=()
if [ -n "${HSMKEY_ADVISORY_DB:-}" ]; then
    if [ ! -d "$HSMKEY_ADVISORY_DB/crates" ]; then
        echo "audit: HSMKEY_ADVISORY_DB=$HSMKEY_ADVISORY_DB is not a clone of the advisory database" >&2
        exit 1
    fi
    db_args=(--db "$HSMKEY_ADVISORY_DB" --no-fetch)
elif ! timeout 30 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
    echo "audit: NOT RUN: the advisory database (github.com/rustsec/advisory-db) cannot be reached from here; set HSMKEY_ADVISORY_DB to a local clone" >&2
    if [ "${HSMKEY_REQUIRE_AUDIT:-}" = "1" ]; then
        exit 1
    fi
    exit 3
fi

if ! command -v cargo-audit >/dev/null 2>&1; then
    echo "audit: installing cargo-audit from crates.io" >&2
    cargo install --locked cargo-audit
fi
cargo audit "${db_args[@]}" --deny warnings
