#!/usr/bin/env bash
# The main job end to end on SoftHSM2 tokens this script creates under ./demo
# (or $HSMKEY_DEMO_DIR): initialize a token, probe what it can do, create a
# trusted KEK and keys with each backup policy, rotate one, then back them up
# (to another HSM's public key, with a password, under the trusted KEK, as a
# blob), verify, restore into a second token, and show a tampered bundle
# refused.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --quiet
hsmkey="${CARGO_TARGET_DIR:-$PWD/target}/debug/hsmkey"

demo="${HSMKEY_DEMO_DIR:-$PWD/demo}"
rm -rf "$demo"
mkdir -p "$demo/tokens"
chmod 700 "$demo"
sed "s|@TOKENDIR@|$demo/tokens|" softhsm/softhsm2.conf.template >"$demo/softhsm2.conf"
export SOFTHSM2_CONF="$demo/softhsm2.conf"
unset HSMKEY_MODULE HSMKEY_TOKEN HSMKEY_PIN HSMKEY_SO_PIN

# PINs live in 0600 files: never on the command line.
umask 077
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$demo/user.pin"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$demo/so.pin"
pins=(--pin-source "file:$demo/user.pin" --so-pin-source "file:$demo/so.pin")

step() { printf '\n== %s\n' "$*"; }

step "hsmkey token init --label demo"
"$hsmkey" "${pins[@]}" token init --label demo

step "hsmkey token mechanisms (what this token really does)"
"$hsmkey" "${pins[@]}" --token demo token mechanisms

step "a trusted KEK (needs the SO PIN), and an ordinary one"
"$hsmkey" "${pins[@]}" --token demo key generate --label backup-kek --kek --trusted
"$hsmkey" "${pins[@]}" --token demo key generate --label transfer-kek --kek

step "keys with each backup policy"
"$hsmkey" "${pins[@]}" --token demo key generate --label payments --type aes-256 --backup-policy trusted
"$hsmkey" "${pins[@]}" --token demo key generate --label sessions --type aes-128 --backup-policy any
"$hsmkey" "${pins[@]}" --token demo key generate --label signing --type ec-p256 --backup-policy trusted
"$hsmkey" "${pins[@]}" --token demo key generate --label root --type rsa-3072

step "hsmkey key rotate payments (version 2, same policy and id)"
"$hsmkey" "${pins[@]}" --token demo key rotate payments

step "hsmkey key list"
"$hsmkey" "${pins[@]}" --token demo key list

step "hsmkey key show payments@v2"
"$hsmkey" "${pins[@]}" --token demo key show payments@v2

step "key list --json: the same, for scripts"
"$hsmkey" "${pins[@]}" --token demo key list --json | head -n 12
echo "  ..."

# ---- backup and restore: the main job --------------------------------------
step "a second token, 'vault', to restore into"
"$hsmkey" "${pins[@]}" token init --label vault
"$hsmkey" "${pins[@]}" --token demo key generate --label api-signing --type ec-p256 --backup-policy any

step "HSM to HSM: vault makes a transport key pair and publishes its public key"
"$hsmkey" "${pins[@]}" --token vault key generate --label transport --type rsa-3072 --usage unwrap
"$hsmkey" "${pins[@]}" --token vault key public transport --out "$demo/transport.pem"

step "demo backs up two keys to vault's public key (RSA-OAEP + AES key wrap, in the token)"
"$hsmkey" "${pins[@]}" --token demo backup --recipient "$demo/transport.pem" sessions api-signing --out "$demo/transfer.bundle"

step "vault verifies, then restores (all-or-nothing, KCVs compared after unwrap)"
"$hsmkey" "${pins[@]}" --token vault verify "$demo/transfer.bundle" --recipient-key transport
"$hsmkey" "${pins[@]}" --token vault restore "$demo/transfer.bundle" --recipient-key transport

step "password-protected backup of everything that may leave (the storage-array style)"
printf 'Backup#%s\n' "$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$demo/backup.password"
"$hsmkey" "${pins[@]}" --token demo backup --password-file "$demo/backup.password" --all --out "$demo/all.bundle"
"$hsmkey" "${pins[@]}" --token vault restore "$demo/all.bundle" --password-file "$demo/backup.password" --on-conflict skip

step "trusted keys leave only under the SO's trusted KEK; check the bundle on the same token"
"$hsmkey" "${pins[@]}" --token demo backup --kek backup-kek payments --out "$demo/payments.bundle"
"$hsmkey" "${pins[@]}" --token demo verify "$demo/payments.bundle" --kek backup-kek

step "one key with all its versions as a single string (like a CSMS secret_blob)"
"$hsmkey" "${pins[@]}" --token demo backup --password-file "$demo/backup.password" --format blob sessions --out "$demo/sessions.blob"
cut -c 1-72 "$demo/sessions.blob"

step "a tampered bundle is refused before anything is created"
sed 's/"label":"sessions"/"label":"sessionz"/' "$demo/transfer.bundle" >"$demo/tampered.bundle"
if "$hsmkey" "${pins[@]}" --token vault restore "$demo/tampered.bundle" --recipient-key transport --dry-run; then
    echo "a tampered bundle was accepted" >&2
    exit 1
fi

step "the keys on vault: same KCVs as on demo"
"$hsmkey" "${pins[@]}" --token vault key list
"$hsmkey" "${pins[@]}" --token demo key list sessions

printf '\ndemo finished: token files in %s (SOFTHSM2_CONF=%s)\n' "$demo/tokens" "$SOFTHSM2_CONF"
