#!/usr/bin/env bash
# Huawei's own KMS client against `hsmkey serve`: the unchanged
# `huaweicloudsdkkms` Python SDK, with BasicCredentials(ak, sk, project_id)
# and the server's endpoint (plain HTTP on loopback), gets import
# parameters, wraps a fresh AES-256 key to the returned public key with the
# `cryptography` package (the client side), imports it, sees the same
# parameters refused the second time and a wrong SK refused with 401
# (scripts/huawei_kms_client.py). Then the key the token holds under the
# key id must have the KCV the client computed.
#
# Runs on a throwaway SoftHSM2 token, in a venv (cached in
# ${XDG_CACHE_HOME:-~/.cache}/hsmkey/huawei-sdk-venv), each step bounded in
# time. Skipped (exit 0, with a message) only when PyPI cannot be reached
# to install the SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cargo build --quiet --bin hsmkey
hsmkey="${CARGO_TARGET_DIR:-$root/target}/debug/hsmkey"

venv="${XDG_CACHE_HOME:-$HOME/.cache}/hsmkey/huawei-sdk-venv"
if ! "$venv/bin/python" -c 'import huaweicloudsdkkms, cryptography' 2>/dev/null; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    if ! timeout 600 "$venv/bin/pip" install --quiet huaweicloudsdkkms cryptography; then
        if ! timeout 60 "$venv/bin/pip" index versions huaweicloudsdkcore >/dev/null 2>&1; then
            echo "huawei-sdk-test: SKIPPED: PyPI cannot be reached to install huaweicloudsdkkms" >&2
            rm -rf "$venv"
            exit 0
        fi
        echo "huawei-sdk-test: pip could not install huaweicloudsdkkms and cryptography" >&2
        exit 1
    fi
fi

base="$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/hsmkey-hwsdk.XXXXXX")"
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$base"
}
trap cleanup EXIT

mkdir -p "$base/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$base" >"$base/softhsm2.conf"
export SOFTHSM2_CONF="$base/softhsm2.conf" HSMKEY_PIN=1234
softhsm2-util --init-token --free --label hwsdk --so-pin 5678 --pin 1234 >/dev/null
module="$(for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do [ -e "$m" ] && echo "$m" && break; done)"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
project=0123456789abcdef0123456789abcdef
export HK_AK=HSMKEYSDKTEST0000001 HK_SK="$(head -c 24 /dev/urandom | base64)"
api_key_sha256="$(head -c 24 /dev/urandom | base64 | tr -d '\n' | sha256sum | cut -d' ' -f1)"
cat >"$base/serve.toml" <<TOML
listen = "127.0.0.1:$port"
module = "$module"
token = "hwsdk"
pin_source = "env:HSMKEY_PIN"
project_id = "$project"
audit_log = "$base/audit.jsonl"

[[clients]]
name = "huawei-sdk"
api_key_sha256 = "$api_key_sha256"
access_key = "$HK_AK"
secret_key_source = "env:HK_SK"
capabilities = ["CapImport"]
TOML

"$hsmkey" serve --config "$base/serve.toml" 2>"$base/serve.log" &
server=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$base/serve.log" >&2; exit 1; }
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || {
    echo "huawei-sdk-test: the server did not come up" >&2
    cat "$base/serve.log" >&2
    exit 1
}

export HK_ENDPOINT="http://127.0.0.1:$port" HK_PROJECT_ID="$project"
export HK_KEY_ID="$(python3 -c 'import uuid; print(uuid.uuid4())')"
# SoftHSM 2.6.1 does RSA-OAEP with SHA-1 only (docs/TOKENS.md).
export HK_WRAPPING_ALGORITHM=RSAES_OAEP_SHA_1
result="$(timeout 120 "$venv/bin/python" scripts/huawei_kms_client.py)"
want_kcv="$(printf '%s' "$result" | python3 -c 'import json, sys; print(json.load(sys.stdin)["kcv"])')"

got_kcv="$("$hsmkey" --module "$module" --token hwsdk --pin-source env:HSMKEY_PIN --json key list |
    python3 -c 'import json, os, sys
keys = [k for k in json.load(sys.stdin)["keys"] if k["label"] == os.environ["HK_KEY_ID"]]
print(keys[0]["kcv"] if len(keys) == 1 else "missing")')"
if [ "$got_kcv" != "$want_kcv" ]; then
    echo "huawei-sdk-test: the token's key $HK_KEY_ID has KCV $got_kcv, the client wrapped $want_kcv" >&2
    exit 1
fi
# Every request is in the audit log with the client's name.
grep -q '"huawei-sdk"' "$base/audit.jsonl"
echo "huawei-sdk-test: huaweicloudsdkkms imported key $HK_KEY_ID through hsmkey serve; KCV $got_kcv matches" >&2
