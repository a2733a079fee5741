#!/usr/bin/env bash
# Load figures for `hsmkey serve` (docs/SERVER.md, "Load"), from nothing: a
# release build, a SoftHSM2 token and the audit log on tmpfs (/dev/shm), then
# Piiano's export_key and StoredSafe's backup, each at 1 and 8 sessions, with
# CLIENTS keep-alive clients (default 16) for SECONDS each (default 8).
#
# Usage: scripts/serve-load.sh [CLIENTS] [SECONDS]
# Figures are only worth reporting from a machine doing nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-16}"
seconds="${2:-8}"

scripts/install-deps.sh >/dev/null
cargo build --quiet --release --bin hsmkey
hsmkey="${CARGO_TARGET_DIR:-$PWD/target}/release/hsmkey"
module=/usr/lib/softhsm/libsofthsm2.so

dir="$(mktemp -d /dev/shm/hsmkey-load.XXXXXX)"
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/tokens"
sed "s|@TOKENDIR@|$dir/tokens|" softhsm/softhsm2.conf.template >"$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
unset HSMKEY_TOKEN HSMKEY_PIN HSMKEY_SO_PIN
export HSMKEY_MODULE="$module" HSMKEY_AUDIT_LOG="$dir/audit.jsonl"
umask 077
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/user.pin"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/so.pin"
pins=(--pin-source "file:$dir/user.pin" --so-pin-source "file:$dir/so.pin")
"$hsmkey" "${pins[@]}" token init --label load >/dev/null
k() { "$hsmkey" "${pins[@]}" --token load key generate "$@" >/dev/null; }
k --label export-kek --kek
k --label storedsafe-kek --kek
k --label data-export-dek --type aes-256 --backup-policy any
k --label payments-dek --type aes-256 --backup-policy any

api_key="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
digest="$(printf %s "$api_key" | sha256sum | cut -d' ' -f1)"

# Start a server with SESSIONS sessions; sets $server and $url.
start() {
    cat >"$dir/serve.toml" <<EOF
listen = "127.0.0.1:0"
module = "$module"
token = "load"
pin_source = "file:$dir/user.pin"
project_id = "0123456789abcdef0123456789abcdef"
audit_log = "$dir/audit.jsonl"
sessions = $1

[piiano]
export_key = "data-export-dek"
export_kek = "export-kek"

[storedsafe]
vaults = ["179"]
kek = "storedsafe-kek"

[[clients]]
name = "load"
api_key_sha256 = "$digest"
capabilities = ["CapExportKeyReader", "CapKeyBackup"]
EOF
    : >"$dir/serve.out"
    "$hsmkey" serve --config "$dir/serve.toml" >"$dir/serve.out" 2>"$dir/serve.err" &
    server=$!
    for _ in $(seq 1 100); do
        url="$(sed -n 's/^hsmkey serve: listening on //p' "$dir/serve.out")"
        [ -n "$url" ] && return 0
        sleep 0.1
    done
    echo "serve-load: the server did not start:" >&2
    cat "$dir/serve.err" >&2
    exit 1
}

stop() {
    kill -TERM "$server"
    wait "$server"
    server=""
}

printf '%-20s %-9s %s\n' route sessions result
for sessions in 1 8; do
    start "$sessions"
    printf '%-20s %-9s ' "Piiano export_key" "$sessions"
    python3 scripts/serve-load.py "$url/api/pvlt/1.0/system/admin/export_key" \
        "Authorization:Bearer $api_key" "$clients" "$seconds"
    printf '%-20s %-9s ' "StoredSafe backup" "$sessions"
    python3 scripts/serve-load.py "$url/api/1.0/transparent/backup/179/payments-dek" \
        "X-Http-Token:$api_key" "$clients" "$seconds"
    stop
done
"$hsmkey" "${pins[@]}" --token load audit verify >/dev/null && echo "audit verify: the log of $(wc -l <"$dir/audit.jsonl") lines is whole"
